"""Docker containers as nodes: starting them, attaching existing ones.

Containers are started with `network_mode="none"` (only `lo`), `init=True`
(so removal does not wait for a PID 1 that ignores SIGTERM) and the session
label (so a sweep can find them). Several are started concurrently: each
start is mostly waiting on the engine.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .errors import ContainerError, DockerUnavailableError, NetnsError
from .images import DEFAULT_COMMAND, ensure_image
from .nodes import ContainerNode
from .session import Session

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container


@functools.lru_cache(maxsize=1)
def _client() -> docker.DockerClient:
    import docker

    return docker.from_env(timeout=60)


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
        import docker

        probe = docker.from_env(timeout=3)
        probe.ping()
        probe.close()
        return True
    except Exception:  # any failure means "no usable engine"
        return False


def start_containers(
    session: Session,
    names: list[str],
    image: str,
    command: list[str] | str | None = None,
    **run_kwargs: Any,
) -> list[ContainerNode]:
    """Start one container per name, concurrently, and return them as nodes.

    If any start fails, the ones that did start are removed before the error
    propagates.
    """
    client = docker_client()
    ensure_image(client, image)
    cmd = command if command is not None else DEFAULT_COMMAND

    def start(name: str) -> ContainerNode:
        ctr = client.containers.run(
            image,
            cmd,
            detach=True,
            name=session.container_name(name),
            network_mode="none",
            init=True,
            labels=session.labels,
            **run_kwargs,
        )
        try:
            ctr.reload()
            if ctr.status != "running":
                logs = ctr.logs(tail=5).decode(errors="replace").strip()
                raise ContainerError(
                    f"container for node {name!r} ({image}, command {cmd!r}) exited at once "
                    f"with status {ctr.attrs['State'].get('ExitCode')}: {logs or 'no output'}; "
                    "give it a command that keeps running"
                )
            return ContainerNode(name, ctr, owned=True)
        except BaseException:
            ctr.remove(force=True)
            raise

    if len(names) == 1:
        return [start(names[0])]
    with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
        futures = [pool.submit(start, n) for n in names]
        nodes, errors = [], []
        for fut in futures:
            try:
                nodes.append(fut.result())
            except BaseException as exc:
                errors.append(exc)
    if errors:
        remove_nodes(nodes)
        raise errors[0]
    return nodes


def remove_nodes(nodes: list[ContainerNode]) -> None:
    """Release and remove owned containers, concurrently; the kernel reaps their links."""
    import docker.errors

    def remove(node: ContainerNode) -> None:
        node.release()
        if node.owned and node.container is not None:
            try:
                node.container.remove(force=True)
            except docker.errors.NotFound:
                pass

    if len(nodes) <= 1:
        for n in nodes:
            remove(n)
        return
    with ThreadPoolExecutor(max_workers=min(len(nodes), 16)) as pool:
        list(pool.map(remove, nodes))


def resolve_container(obj: object) -> Container:
    """A docker SDK Container from a Container, an id or name, or a testcontainers container."""
    import docker.errors
    from docker.models.containers import Container

    if isinstance(obj, Container):
        ctr = obj
    elif hasattr(obj, "get_wrapped_container"):  # testcontainers DockerContainer
        wrapped = obj.get_wrapped_container()
        if wrapped is None:
            raise ContainerError(
                f"testcontainers container {obj!r} has not been started: call .start() "
                "(or use it in a `with` block) before attaching it"
            )
        ctr = wrapped
    elif isinstance(obj, str):
        try:
            ctr = docker_client().containers.get(obj)
        except docker.errors.NotFound:
            raise ContainerError(
                f"no container named or with id {obj!r}: pass a running container's name, "
                "id, docker SDK Container, or started testcontainers container"
            ) from None
    else:
        raise NetnsError(
            f"cannot attach {obj!r}: expected a docker SDK Container, a container id or name, "
            "or a started testcontainers DockerContainer"
        )
    ctr.reload()
    if ctr.status != "running" or not ctr.attrs["State"].get("Pid"):
        raise ContainerError(
            f"container {ctr.name!r} is {ctr.status}, not running: start it before attaching"
        )
    return ctr


def attach_container(obj: object, name: str | None = None) -> ContainerNode:
    """Make an already running container a node; it is never removed by us."""
    ctr = resolve_container(obj)
    return ContainerNode(name or str(ctr.name), ctr, owned=False)
