"""pytest wiring only: options, fixtures and hooks over the library modules.

Settings are fixtures (`netns_image`, `netns_backend`) that a conftest can
override, with the command line supplying their defaults. Heavy imports
(docker, scapy) happen inside fixtures, never when the plugin loads, so a
test run that uses no topology pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

BACKEND_CHOICES = ("auto", "docker", "namespace")
CAPTURE_CHOICES = ("off", "on-failure", "always")


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
        "--netns-capture", default="off", choices=CAPTURE_CHOICES,
        help="capture packets on every link of the test's topologies",
    )
    group.addoption(
        "--netns-artifacts", default=".netns-artifacts", metavar="DIR",
        help="where captures, diagrams and reports of failed tests go",
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


class _Stack:
    """Topologies built during one test, closed in reverse order at its end."""

    def __init__(self, record: Any = None) -> None:
        self.items: list[Any] = []
        self.record = record  # report.TestRecord: report, captures, diagram

    def push(self, topo: Any) -> Any:
        self.items.append(topo)
        if self.record is not None:
            self.record.add_topology(topo)
        return topo

    def close_all(self) -> None:
        errors = []
        for topo in reversed(self.items):
            try:
                topo.close()
            except Exception as exc:
                errors.append(exc)
        self.items.clear()
        if errors:
            raise errors[0]


@pytest.fixture(scope="session")
def netns_image(pytestconfig: pytest.Config, netns_backend: str) -> str:
    """Image for containers the fixtures start; override to use your own.

    On the Docker backend it is guaranteed to exist locally (the built-in one
    is built on first use), so tests may start their own containers from it.
    """
    from .images import DEFAULT_IMAGE

    image = str(pytestconfig.getoption("--netns-image") or DEFAULT_IMAGE)
    if netns_backend == "docker":
        from .containers import docker_client
        from .images import ensure_image

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
    from .backend import resolve_backend

    return resolve_backend(str(pytestconfig.getoption("--netns-backend")))


@pytest.fixture(scope="session")
def netns_session() -> Iterator[Any]:
    """The process's ownership session; its leftovers are drained at the end."""
    from .lifecycle import finish_session, start_session
    from .namespaces import require_privileges

    require_privileges()  # a clear NotPermittedError, not an EACCES from /run/pytest-netns
    session = start_session()
    yield session
    finish_session(session)


_RECORD = pytest.StashKey[Any]()
_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def _netns_stack(request: pytest.FixtureRequest, netns_session: Any) -> Iterator[_Stack]:
    from .report import TestRecord

    config = request.config
    record = TestRecord(
        request.node.nodeid,
        capture=str(config.getoption("--netns-capture")),
        artifacts=str(config.invocation_params.dir / str(config.getoption("--netns-artifacts"))),
    )
    request.node.stash[_RECORD] = record
    stack = _Stack(record)
    record.subscribe()
    try:
        yield stack
    finally:
        record.unsubscribe()
    failed = request.node.stash.get(_FAILED, False)
    if failed and config.getoption("--netns-keep"):
        stack.items.clear()
        record.keep(netns_session)
        return
    try:
        stack.close_all()
    finally:
        record.finish(failed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """On a failed setup or call, add the network's state to the report."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when == "teardown" or not report.failed:
        return
    item.stash[_FAILED] = True
    record = item.stash.get(_RECORD, None)
    if record is None or not record.topologies:
        return
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


def _own_summary() -> list[str]:
    """This process's summary lines, or none if it never built a topology."""
    import sys

    if "pytest_netns.report" not in sys.modules and "pytest_netns.topology" not in sys.modules:
        return []
    from .report import summary_lines

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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Topologies built, probes sent, time spent; artifacts and kept topologies."""
    lines = _own_summary()
    for worker, worker_lines in sorted(_WORKER_SUMMARIES):
        lines += [f"[{worker}] {line}" for line in worker_lines]
    if lines:
        terminalreporter.section("pytest-netns")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def make_topology(
    _netns_stack: _Stack, netns_backend: str, netns_image: str, netns_session: Any
) -> Callable[..., Any]:
    """Factory for custom topologies: `make_topology()` returns a TopologyBuilder.

    Whatever it builds is torn down when the test ends.
    """
    from .builder import TopologyBuilder

    def factory(**kw: Any) -> TopologyBuilder:
        kw.setdefault("backend", netns_backend)
        kw.setdefault("image", netns_image)
        kw.setdefault("session", netns_session)
        builder = TopologyBuilder(**kw)
        original = builder.build

        def build() -> Any:
            # probes that verify the new topology are not the test's own
            with _netns_stack.record.building():
                topo = original()
            return _netns_stack.push(topo)

        builder.build = build  # type: ignore[method-assign]
        return builder

    return factory


def _recipe_factory(recipe_name: str) -> Callable[..., Any]:
    def fixture(make_topology: Callable[..., Any]) -> Callable[..., Any]:
        from . import recipes

        recipe = getattr(recipes, recipe_name)

        def factory(
            *,
            image: str | None = None,
            command: list[str] | str | None = None,
            backend: str | None = None,
            verify: bool = True,
            **kw: Any,
        ) -> Any:
            builder_kw: dict[str, Any] = {"verify": verify, "label": recipe_name}
            if image is not None:
                builder_kw["image"] = image
            if command is not None:
                builder_kw["command"] = command
            if backend is not None:
                builder_kw["backend"] = backend
            return recipe(make_topology(**builder_kw), **kw)

        return factory

    fixture.__name__ = f"make_{recipe_name}"
    fixture.__doc__ = f"Factory: each call builds a new {recipe_name} topology."
    return pytest.fixture(name=f"make_{recipe_name}")(fixture)


make_isolated_container = _recipe_factory("isolated_container")
make_host_only_link = _recipe_factory("host_only_link")
make_bridged_pair = _recipe_factory("bridged_pair")
make_nat_uplink = _recipe_factory("nat_uplink")


@pytest.fixture
def isolated_container(make_isolated_container: Callable[..., Any]) -> Any:
    """A container whose only NIC besides lo is a guest-only eth1 (172.16.0.10/24)."""
    return make_isolated_container()


@pytest.fixture
def host_only_link(make_host_only_link: Callable[..., Any]) -> Any:
    """A container joined to the host's root namespace by a private veth."""
    return make_host_only_link()


@pytest.fixture
def bridged_pair(make_bridged_pair: Callable[..., Any]) -> Any:
    """Two containers on a bridge of their own, in a switch namespace."""
    return make_bridged_pair()


@pytest.fixture
def nat_uplink(make_nat_uplink: Callable[..., Any]) -> Any:
    """A container behind a masquerading router, with an upstream the test can serve on."""
    return make_nat_uplink()
