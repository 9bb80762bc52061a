"""Docker containers as nodes: starting them, attaching existing ones.

Containers are started with `network_mode="none"` (only `lo`), `init=True`
(so removal does not wait for a PID 1 that ignores SIGTERM) and the session
label (so a sweep can find them). Several are started concurrently: each
start is mostly waiting on the engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ContainerError, NetnsError
from ..kernel.netns import Netns
from ..kernel.proctree import netns_id
from ..ownership import Session, current_session
from . import prefetch
from .base import Node
from .engine import docker_client, remove_container
from .exec_docker import DockerExecutor
from .hosts import Edit, edit_container_hosts
from .images import container_command, ensure_image
from .ledger import ledger_for

if TYPE_CHECKING:
    from docker.models.containers import Container

log = logging.getLogger(__name__)



class ContainerNode(Node):
    """A running Docker container, entered through its init process's namespace.

    The namespace stays pinned while the node lives, so a container removed
    behind our back (`docker rm -f`) would go on answering probes at its old
    address; a pidfd on its init process tells at once that it is gone, and
    every use of the node then says so.
    """

    def __init__(self, name: str, container: Container, owned: bool,
                 session: Session | None = None) -> None:
        pid = int(container.attrs["State"]["Pid"])
        path = f"/proc/{pid}/ns/net"
        # pinned: once the container's init is gone, its pid may name another process
        pinned = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._init = os.pidfd_open(pid)
        except ProcessLookupError:
            self._init = -1
        super().__init__(name, path, Netns(f"container {name}", path, pinned, owns_fd=True))
        self.container = container
        self.owned = owned
        self.pid = pid
        self._session = session

    @property
    def kind(self) -> str:
        return "container"

    @property
    def running(self) -> bool:
        """False once the container's init process has exited (stopped or removed)."""
        if self._init < 0:
            return False
        return not select.select([self._init], [], [], 0)[0]

    def check_open(self, action: str = "use") -> None:
        """Also ContainerError when the container stopped or was removed behind our back."""
        super().check_open(action)
        if not self.running:
            raise ContainerError(
                f"cannot {action} node {self.name!r}: its container "
                f"{getattr(self.container, 'name', '?')!r} is gone (its init process {self.pid} "
                "exited: stopped or removed outside pytest-netns); its address no longer "
                "belongs to a running container"
            )

    def failure_cause(self) -> NetnsError | None:
        """Why a build that used this container failed, if the container itself stopped."""
        if self.running or self.container is None:
            return None
        return exited_error(self.container, self.name)

    def update_names(self, edit: Edit) -> None:
        """Rewrite the container's own /etc/hosts from the host, following no symlink."""
        try:
            edit_container_hosts(self.pid, edit)
        except (OSError, NetnsError) as exc:
            raise ContainerError(
                f"cannot write /etc/hosts of container {self.name!r}: {exc}; names of the "
                "other nodes will not resolve in it"
            ) from exc

    def _make_executor(self) -> DockerExecutor:
        """A container we did not start: every command is tracked and written down, since
        no removal of ours will end what it leaves running."""
        assert self.container is not None
        ledger = None
        if not self.owned:
            ledger = ledger_for(self._session or current_session(), netns_id(self.netns))
        return DockerExecutor(docker_client().api, str(self.container.id), self.name,
                              init_pid=self.pid, owned=self.owned, ledger=ledger)

    def remove(self, defer: Callable[[Callable[[], None]], None],
               unpin: Callable[[str], None] | None = None) -> None:
        """A started container is removed later, one at a time; an attached one is let go of.

        What was started through the node ends now, either way: a server
        must not keep its port after its topology closed.
        """
        self.close_executor()
        if self.owned:
            defer(lambda: remove_nodes([self]))
        else:
            defer(self.release)

    def release(self) -> None:
        super().release()  # closes the pinned namespace with the handle
        if self._init >= 0:
            os.close(self._init)
            self._init = -1


def exited_error(ctr: Container, name: str) -> ContainerError:
    """The error for a node whose container stopped by itself, with its last output."""
    with contextlib.suppress(Exception):  # the engine may already be removing it
        ctr.reload()
    config = ctr.attrs.get("Config") or {}
    image = config.get("Image", "?")
    logs = ctr.logs(tail=5).decode(errors="replace").strip()
    cmd = config.get("Cmd")
    own = f"command {cmd!r}" if cmd else "its image's own command"
    return ContainerError(
        f"container for node {name!r} ({image}, {own}) exited at once with status "
        f"{(ctr.attrs.get('State') or {}).get('ExitCode')}: {logs or 'no output'}; a node's "
        "container must keep running: pass command=[...] that does (the image's "
        "ENTRYPOINT, if any, gets it as arguments)"
    )


def run_container(session: Session, name: str, image: str, command: list[str] | None,
                  run_kwargs: dict[str, Any], labels: dict[str, str] | None = None) -> Container:
    """Start one container for node `name`: running, or ContainerError (nothing left)."""
    import docker.errors

    client = docker_client()
    cname = session.container_name(name)
    try:
        ctr = client.containers.run(
            image,
            command,
            detach=True,
            name=cname,
            network_mode="none",
            init=True,
            labels={**session.labels, **(labels or {})},
            **run_kwargs,
        )
    except (docker.errors.DockerException, TypeError) as exc:
        # run() is create + start: a refused start leaves a created container
        with contextlib.suppress(docker.errors.NotFound):
            remove_container(client.containers.get(cname))
        explanation = getattr(exc, "explanation", None) or exc
        raise ContainerError(
            f"the engine would not start node {name!r} ({image}, command {command!r}, "
            f"options {run_kwargs!r}): {explanation}; options are docker's containers.run() "
            "keywords, and network_mode, init, labels and name are set by pytest-netns"
        ) from None
    try:
        ctr.reload()
        if ctr.status != "running":
            raise exited_error(ctr, name)
    except BaseException:
        remove_container(ctr)
        raise
    log.debug("started container %s (%s) for node %s", cname, image, name)
    return ctr


def start_containers(
    session: Session,
    names: list[str],
    image: str,
    command: list[str] | str | None = None,
    **run_kwargs: Any,
) -> list[ContainerNode]:
    """Start one container per name, concurrently, and return them as nodes.

    With prefetching on (`prefetch.enable`), containers of the image's own
    command come from those started ahead. If any start fails, the ones that
    did start are removed before the error propagates.
    """
    cmd = container_command(ensure_image(docker_client(), image), command)
    ahead = prefetch.current()
    prefetched = ahead is not None and command is None and not run_kwargs
    if ahead is not None and prefetched:
        futures = ahead.take(f"{session.id} {image}", len(names), lambda: run_container(
            session, "prefetched", image, cmd, {}, {prefetch.PREFETCH_LABEL: "1"}))
    else:
        with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
            futures = [pool.submit(run_container, session, n, image, cmd, run_kwargs)
                       for n in names]
    nodes, errors = [], []
    for name, future in zip(names, futures, strict=True):
        try:
            nodes.append(_node(name, future, prefetched, session, image, cmd))
        except BaseException as exc:
            errors.append(exc)
    if errors:
        remove_nodes(nodes)
        raise errors[0]
    return nodes


def _node(name: str, future: Future[Container], prefetched: bool, session: Session,
          image: str, command: list[str] | None) -> ContainerNode:
    """The node for the future's container; one started ahead that failed or died is
    replaced by a fresh start for `name` (whose error, if it fails too, names the node)."""
    try:
        ctr = future.result()
    except ContainerError:
        if not prefetched:
            raise
        ctr, prefetched = run_container(session, name, image, command, {}), False
    if prefetched and not _known_running(ctr):  # it died while it waited
        remove_container(ctr)
        ctr = run_container(session, name, image, command, {})
    try:
        return ContainerNode(name, ctr, owned=True)
    except (FileNotFoundError, ProcessLookupError):  # it exited since it was started
        error = exited_error(ctr, name)
        remove_container(ctr)
        raise error from None


def remove_nodes(nodes: list[ContainerNode]) -> None:
    """Release and remove owned containers, one at a time; the kernel reaps their links."""
    for node in nodes:
        node.release()
        if node.owned and node.container is not None:
            remove_container(node.container)


def resolve_container(obj: object) -> Container:
    """A docker SDK Container from a Container, an id or name, or a testcontainers container."""
    import docker.errors
    from docker.models.containers import Container

    if isinstance(obj, Container):
        ctr = obj
    elif hasattr(obj, "get_wrapped_container"):  # testcontainers DockerContainer
        # its `_container` is None until started; get_wrapped_container() then raises
        wrapped = getattr(obj, "_container", None)
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
    if not _known_running(ctr):
        ctr.reload()
    if ctr.status != "running" or not ctr.attrs["State"].get("Pid"):
        raise ContainerError(
            f"container {ctr.name!r} is {ctr.status}, not running: start it before attaching"
        )
    return ctr


def _known_running(ctr: Container) -> bool:
    """True when the container's cached state is provably current, so no reload is needed.

    An inspect through the engine costs ~4 ms. When the cached state says
    running with init PID p, and /proc/p is in a cgroup named after the
    container's id, that process is still this container's init. Anything
    else (stale or missing state, another cgroup layout) answers False and
    the caller asks the engine.
    """
    state = ctr.attrs.get("State") or {}
    pid = state.get("Pid")
    if not state.get("Running") or not pid or not ctr.id:
        return False
    try:
        with open(f"/proc/{int(pid)}/cgroup") as f:
            return ctr.id in f.read()
    except (OSError, ValueError):
        return False


def attach_container(obj: object, name: str | None = None,
                     session: Session | None = None) -> ContainerNode:
    """Make an already running container a node; it is never removed by us.

    `session` is whose processes commands run in it count as (for sweeps).
    """
    ctr = resolve_container(obj)
    return ContainerNode(name or str(ctr.name), ctr, owned=False, session=session)
