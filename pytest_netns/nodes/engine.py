"""The Docker engine: one shared client, whether an engine answers, removing containers.

Nothing here imports the docker SDK until an engine is actually used, so a
run on bare namespaces never pays for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import DockerUnavailableError
from ..ownership import STATE_DIR

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)


def connect(timeout: int) -> docker.DockerClient:
    """A client of the engine that DOCKER_HOST (or the default socket) names.

    Its requests never consult the environment again (proxies, netrc): the
    client is used from background threads (container removal), and reading
    `os.environ` there races with pytest, which adds and removes
    PYTEST_CURRENT_TEST around every test phase (seen: a KeyError in a
    removal).
    """
    import docker

    client = docker.from_env(timeout=timeout)
    client.api.trust_env = False
    return client


@functools.lru_cache(maxsize=1)
def _client() -> docker.DockerClient:
    return connect(timeout=60)


def docker_client() -> docker.DockerClient:
    """The shared Docker client; DockerUnavailableError when no engine answers."""
    if not engine_available():
        raise DockerUnavailableError(
            "no Docker engine answers (checked DOCKER_HOST or /var/run/docker.sock): start "
            "dockerd, or use --netns-backend=namespace to run on bare network namespaces"
        )
    return _client()


@functools.lru_cache(maxsize=1)
def engine_available() -> bool:
    """True when a Docker engine answers a ping (checked once per process)."""
    try:
        probe = connect(timeout=3)
        probe.ping()
        probe.close()
        return True
    except Exception:  # any failure means "no usable engine"
        return False


TEARDOWN_LOCK = os.path.join(STATE_DIR, "docker-teardown.lock")


@contextlib.contextmanager
def teardown_lock() -> Iterator[None]:
    """Serialise container teardown across every process on this host.

    Docker 20.10 (Debian 12's docker.io) can deadlock its whole daemon when two
    containers' network endpoints are torn down at the same time: libnetwork's
    getSvcRecords (container exit) and processEndpointDelete (endpoint removal)
    take the network and controller locks in opposite orders (moby/moby#46661,
    fixed only after 20.10.24). Every container has an endpoint, even with
    `network_mode="none"`. One teardown at a time, machine-wide, closes that
    window; removals run on the janitor thread, so tests do not wait for it.
    """
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(TEARDOWN_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_container(container: Any) -> None:
    """Force-remove a container under the teardown lock; "already gone" is fine."""
    import docker.errors

    log.debug("removing container %s", getattr(container, "name", container))
    with teardown_lock(), contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)
