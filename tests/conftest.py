"""Shared test wiring: run topology tests on both backends.

`netns_backend` is overridden with both values. The Docker half skips when
no engine answers, except where Docker is required (CI, or
PYTEST_NETNS_REQUIRE_DOCKER=1): there a missing engine fails the run, so a
green CI always means the Docker-backed tests ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = ["pytester"]


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
