"""pytest wiring only: options, fixtures and hooks over the library modules.

Settings are fixtures (`netns_image`, `netns_backend`) that a conftest can
override, with the command line supplying their defaults. Heavy imports
(docker, scapy, even the library itself) happen inside fixtures, never when
the plugin loads, so a test run that uses no topology pays nothing for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import TYPE_CHECKING, Any

import pytest

from .choices import BACKEND_CHOICES, CAPTURE_MODES

if TYPE_CHECKING:
    from .lifecycle.shared import NetnsFactory
    from .ownership import Session
    from .report.record import TestRecord
    from .topology.builder import TopologyBuilder
    from .topology.factories import (
        BridgedPairFactory,
        HostOnlyLinkFactory,
        IsolatedContainerFactory,
        LabFactory,
        NatUplinkFactory,
        TopologyFactory,
    )
    from .topology.recipes import BridgedPair, HostOnlyLink, IsolatedContainer, NatUplink
    from .topology.topology import Topology


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("netns", "pytest-netns network topologies")
    group.addoption(
        "--netns-image", default=None, metavar="IMAGE",
        help="image for the containers the fixtures start (default: the local busybox "
        "image, built on first use)",
    )
    group.addoption(
        "--netns-backend", default="auto", choices=BACKEND_CHOICES,
        help="auto (default): Docker when an engine answers, bare namespaces otherwise",
    )
    group.addoption(
        "--netns-capture", default="off", choices=CAPTURE_MODES,
        help="capture packets on every link of the test's topologies",
    )
    group.addoption(
        "--netns-artifacts", default=".netns-artifacts", metavar="DIR",
        help="where captures, diagrams and reports of failed tests go",
    )
    group.addoption(
        "--netns-prefetch", type=int, default=2, metavar="N",
        help="containers of the default image and command kept started ahead, so the next "
        "test's topology finds them running (default 2; 0 turns it off)",
    )
    group.addoption(
        "--netns-keep", action="store_true", default=False,
        help="leave the topologies of a failed test up for debugging (prints how to enter "
        "each node; `pytest-netns cleanup` removes them later)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns_docker: the test needs the Docker backend (skipped without an engine)"
    )


class _TestNetworks:
    """The topologies one test builds: recorded for its report, closed at its end."""

    def __init__(self, record: TestRecord) -> None:
        self.record = record
        self.stack = ExitStack()

    def building(self) -> AbstractContextManager[None]:
        # probes that verify a new topology are not the test's own
        return self.record.building()

    def built(self, topology: Topology) -> None:
        self.record.add_topology(topology)
        self.stack.callback(topology.close)

    def share(self, topology: Topology) -> None:
        """A topology of `netns_factory` is up while this test runs: report it, capture
        it for this test's time window, but leave it up at the end."""
        self.record.add_topology(topology)


@pytest.fixture(scope="session")
def netns_image(pytestconfig: pytest.Config, netns_backend: str) -> str:
    """Image for containers the fixtures start; override to use your own.

    On the Docker backend it is guaranteed to exist locally (the built-in one
    is built on first use), so tests may start their own containers from it.
    """
    from .nodes.images import DEFAULT_IMAGE

    image = str(pytestconfig.getoption("--netns-image") or DEFAULT_IMAGE)
    if netns_backend == "docker":
        from .nodes.engine import docker_client
        from .nodes.images import ensure_image

        ensure_image(docker_client(), image)
    return image


@pytest.fixture(autouse=True)
def _netns_docker_marker(request: pytest.FixtureRequest) -> None:
    """Tests marked `netns_docker` need containers: skip them on bare namespaces."""
    if request.node.get_closest_marker("netns_docker") is None:
        return
    if request.getfixturevalue("netns_backend") != "docker":
        pytest.skip("needs the Docker backend (--netns-backend=docker or a running engine)")


@pytest.fixture(scope="session")
def netns_backend(pytestconfig: pytest.Config) -> str:
    """'docker' or 'namespace', resolved from --netns-backend (auto by default)."""
    from .lifecycle.backend import resolve_backend

    return resolve_backend(str(pytestconfig.getoption("--netns-backend")))


@pytest.fixture(scope="session")
def netns_session(pytestconfig: pytest.Config) -> Iterator[Session]:
    """The process's ownership session; its leftovers are drained at the end."""
    from .kernel.privileges import require_privileges
    from .lifecycle.hooks import finish_session, start_session

    require_privileges()  # a clear NotPermittedError, not an EACCES from /run/pytest-netns
    session = start_session(prefetch=int(pytestconfig.getoption("--netns-prefetch")))
    yield session
    finish_session(session)


_RECORD = pytest.StashKey["TestRecord"]()
_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def _netns_networks(request: pytest.FixtureRequest,
                    netns_session: Session) -> Iterator[_TestNetworks]:
    from .report.record import TestRecord

    config = request.config
    record = TestRecord(
        request.node.nodeid,
        capture=str(config.getoption("--netns-capture")),
        artifacts=str(config.invocation_params.dir / str(config.getoption("--netns-artifacts"))),
    )
    request.node.stash[_RECORD] = record
    networks = _TestNetworks(record)
    record.subscribe()
    try:
        yield networks
    finally:
        record.unsubscribe()
    failed = request.node.stash.get(_FAILED, False)
    if failed and config.getoption("--netns-keep"):
        networks.stack.pop_all()
        record.keep(netns_session)
        return
    try:
        networks.stack.close()
    finally:
        record.finish(failed)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failed setup or call, add the network's state to the report."""
    report = yield
    if report.when == "teardown" or not report.failed:
        return report
    item.stash[_FAILED] = True
    record = item.stash.get(_RECORD, None)
    if record is None or not record.topologies:
        return report
    keep = bool(item.config.getoption("--netns-keep"))
    try:
        section = record.failure_section(keep)
    except Exception as exc:  # a broken report must not hide the test's own failure
        section = f"(could not describe the network: {type(exc).__name__}: {exc})\n"
    report.sections.append(("pytest-netns: the network at failure", section))
    svg = record.svg_base64()
    if svg and item.config.pluginmanager.hasplugin("html"):
        from pytest_html import extras

        setattr(report, "extras", [*getattr(report, "extras", []), extras.svg(svg, "network")])  # noqa: B010
    return report


def _own_summary() -> list[str]:
    """This process's summary lines, or none if it never built a topology."""
    import sys

    if "pytest_netns.topology.registry" not in sys.modules:
        return []
    from .report.summary import summary_lines

    return summary_lines()


_WORKER_SUMMARIES: list[tuple[str, list[str]]] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand the summary to the controller, which prints it."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["netns_summary"] = _own_summary()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller: collect each worker's summary lines."""
    lines = getattr(node, "workeroutput", {}).get("netns_summary")
    if lines:
        _WORKER_SUMMARIES.append((str(node.gateway.id), list(lines)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Topologies built, probes sent, time spent; artifacts and kept topologies."""
    lines = _own_summary()
    for worker, worker_lines in sorted(_WORKER_SUMMARIES):
        lines += [f"[{worker}] {line}" for line in worker_lines]
    if lines:
        terminalreporter.section("pytest-netns")
        for line in lines:
            terminalreporter.write_line(line)


_SHARED: list[NetnsFactory] = []  # the live netns_factory objects (one per backend in use)


@pytest.fixture(scope="session")
def netns_factory(netns_backend: str, netns_image: str,
                  netns_session: Session) -> Iterator[NetnsFactory]:
    """Session-scoped: topologies shared by many tests, for your own scoped fixtures.

    `netns_factory.bridged_pair(...)`, `.nat_uplink(...)`, `.host_only_link(...)`,
    `.isolated_container(...)` and `.topology(...)` (a TopologyBuilder) take
    what the `make_*` fixtures take, with the same backend and image. What
    they build lives until it is closed (a `with` block in a module-scoped
    fixture closes it at the end of the module) or the session ends; every
    test that runs meanwhile has it in its failure report and captures.
    """
    from .lifecycle.shared import NetnsFactory

    factory = NetnsFactory(netns_backend, netns_image, netns_session)
    _SHARED.append(factory)
    try:
        yield factory
    finally:
        _SHARED.remove(factory)
        factory.close()


@pytest.fixture(autouse=True)
def _netns_shared_view(request: pytest.FixtureRequest) -> Iterator[None]:
    """While a test runs, the shared topologies belong to its record too (nothing
    happens, and nothing is loaded, in a run that never used netns_factory)."""
    if not _SHARED:
        yield
        return
    networks: _TestNetworks = request.getfixturevalue("_netns_networks")
    factories = list(_SHARED)
    for factory in factories:
        factory.attach_view(networks)
    try:
        yield
    finally:
        for factory in factories:
            factory.attach_view(None)


@pytest.fixture
def make_topology(
    _netns_networks: _TestNetworks, netns_backend: str, netns_image: str, netns_session: Session
) -> TopologyFactory:
    """Factory for custom topologies: `make_topology()` returns a TopologyBuilder.

    Whatever it builds is torn down when the test ends. `ipv6=True` makes it
    dual stack.
    """
    from .topology.builder import TopologyBuilder

    def factory(*, backend: str | None = None, image: str | None = None,
                command: list[str] | str | None = None, verify: bool = True,
                label: str = "topology", ipv6: bool = False) -> TopologyBuilder:
        return TopologyBuilder(backend=backend or netns_backend, image=image or netns_image,
                               command=command, session=netns_session, verify=verify,
                               label=label, listener=_netns_networks, ipv6=ipv6)

    return factory


@pytest.fixture
def make_lab(make_topology: TopologyFactory, pytestconfig: pytest.Config) -> LabFactory:
    """Factory: `make_lab(path)` builds the lab file at `path` and returns its Topology.

    The file's `expect:` is proved right after the build; a difference fails
    the test with the usual report. The backend is, first to last: `backend=`,
    --netns-backend when given, the file's `backend:`, then `netns_backend`.
    Closed when the test ends.
    """
    from .labs.lab import build

    option = str(pytestconfig.getoption("--netns-backend"))

    def factory(path: str | os.PathLike[str], *, backend: str | None = None,
                image: str | None = None, verify: bool = True, check: bool = True) -> Topology:
        __tracebackhide__ = True
        chosen = backend or (option if option != "auto" else None)
        return build(path, make_topology, backend=chosen, image=image, verify=verify,
                     check_expect=check)

    return factory


def _recipe_factory(recipe_name: str) -> Any:
    def fixture(make_topology: TopologyFactory) -> Callable[..., Any]:
        from .topology import recipes

        recipe = getattr(recipes, recipe_name)

        def factory(*, image: str | None = None, command: list[str] | str | None = None,
                    backend: str | None = None, verify: bool = True, ipv6: bool = False,
                    **kw: Any) -> Any:
            builder = make_topology(backend=backend, image=image, command=command,
                                    verify=verify, label=recipe_name, ipv6=ipv6)
            return recipe(builder, **kw)

        return factory

    fixture.__name__ = f"make_{recipe_name}"
    fixture.__doc__ = f"Factory: each call builds a new {recipe_name} topology."
    return pytest.fixture(name=f"make_{recipe_name}")(fixture)


make_isolated_container = _recipe_factory("isolated_container")
make_host_only_link = _recipe_factory("host_only_link")
make_bridged_pair = _recipe_factory("bridged_pair")
make_nat_uplink = _recipe_factory("nat_uplink")


@pytest.fixture
def isolated_container(make_isolated_container: IsolatedContainerFactory) -> IsolatedContainer:
    """A container whose only NIC besides lo is a guest-only eth1 (172.16.0.10/24)."""
    return make_isolated_container()


@pytest.fixture
def host_only_link(make_host_only_link: HostOnlyLinkFactory) -> HostOnlyLink:
    """A container joined to the host's root namespace by a private veth."""
    return make_host_only_link()


@pytest.fixture
def bridged_pair(make_bridged_pair: BridgedPairFactory) -> BridgedPair:
    """Two containers on a bridge of their own, in a switch namespace."""
    return make_bridged_pair()


@pytest.fixture
def nat_uplink(make_nat_uplink: NatUplinkFactory) -> NatUplink:
    """A container behind a masquerading router, with an upstream the test can serve on."""
    return make_nat_uplink()
