"""Shared test wiring: run topology tests on both backends; fail a run that leaks a process.

`netns_backend` is overridden with both values. The Docker half skips when
no engine answers, except where Docker is required (CI, or
PYTEST_NETNS_REQUIRE_DOCKER=1): there a missing engine fails the run, so a
green CI always means the Docker-backed tests ran.

Every process the run starts (commands in namespace nodes and in the host,
helper tools, watchdogs, inner pytest runs and what they start) inherits
LEAK_MARK in its environment. After the session has torn everything down,
a process that still carries this run's mark has leaked: it is reported,
ended, and the run fails (under xdist each worker checks its own and the
controller reports them).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["pytester"]

LEAK_MARK = "PYTEST_NETNS_TEST_RUN"
_LEAKS: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Mark what this process starts from now on (an xdist worker marks its own)."""
    os.environ[LEAK_MARK] = str(os.getpid())


def _marked_processes() -> dict[int, str]:
    """{pid: command line} of the live processes that carry this process's mark."""
    mark = f"{LEAK_MARK}={os.getpid()}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
    return found


def _end_leaks() -> list[str]:
    """Report and end this run's processes that outlived it (each ours, by its mark)."""
    leaks = _marked_processes()
    for pid in leaks:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)
    return [f"pid {pid}: {cmd}" for pid, cmd in sorted(leaks.items())]


@pytest.hookimpl(trylast=True)  # after the session's fixtures (and its topologies) are gone
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports
        workeroutput["netns_leaks"] = _end_leaks()
        return
    if not config.pluginmanager.hasplugin("dsession"):  # no workers: check here
        _LEAKS.extend(_end_leaks())
    if _LEAKS:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _LEAKS.extend(getattr(node, "workeroutput", {}).get("netns_leaks", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _LEAKS:
        terminalreporter.section("processes of this run still running after it", red=True)
        for line in _LEAKS:
            terminalreporter.write_line(line)


def docker_required() -> bool:
    return bool(os.environ.get("PYTEST_NETNS_REQUIRE_DOCKER") or os.environ.get("CI"))


def need_docker() -> None:
    from pytest_netns.nodes.engine import engine_available

    if engine_available():
        return
    if docker_required():
        pytest.fail("Docker-backed test, but no Docker engine answers (required in CI)")
    pytest.skip("no Docker engine answers")


@pytest.fixture(scope="session", params=["namespace", "docker"])
def netns_backend(request: pytest.FixtureRequest) -> str:
    """Every topology test runs once per backend."""
    if request.param == "docker":
        need_docker()
    return str(request.param)


@pytest.fixture
def docker_only(netns_backend: str) -> None:
    """For tests that only make sense with containers (their namespace half is
    deselected at collection, see below, so a run shows no skips for them)."""
    if netns_backend != "docker":
        pytest.skip("needs containers")


@pytest.fixture
def namespace_only(netns_backend: str) -> None:
    """For tests that only run on bare namespaces (their Docker half is deselected)."""
    if netns_backend != "namespace":
        pytest.skip("runs on the namespace backend only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the backend halves that a test declares it has no use for.

    A skipped Docker test means "Docker was missing" in CI, where that is a
    failure; a half that never applies is not a skip, so it is not collected.
    """
    unwanted = {"docker_only": "namespace", "namespace_only": "docker"}
    keep, drop = [], []
    for item in items:
        backend = getattr(getattr(item, "callspec", None), "params", {}).get("netns_backend")
        names = getattr(item, "fixturenames", ())
        if any(fx in names and backend == other for fx, other in unwanted.items()):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def user_container(netns_image: str, docker_only: None) -> Iterator[Any]:
    """A container started outside pytest-netns, as a user would (to attach)."""
    from pytest_netns.nodes.engine import docker_client, remove_container
    from pytest_netns.nodes.images import DEFAULT_COMMAND

    ctr = docker_client().containers.run(
        netns_image, DEFAULT_COMMAND, detach=True, network_mode="none", init=True,
        labels={"test": "pytest-netns-user-container"},
    )
    ctr.reload()
    yield ctr
    remove_container(ctr)


@pytest.fixture
def stable_host_firewall() -> Iterator[None]:
    """For tests that compare the host's firewall before and after (shared lock)."""
    from netcheck import host_firewall_lock

    with host_firewall_lock():
        yield


@pytest.fixture
def changes_host_firewall() -> Iterator[None]:
    """For tests that change the host's firewall for a while (exclusive lock)."""
    from netcheck import host_firewall_lock

    with host_firewall_lock(exclusive=True):
        yield
