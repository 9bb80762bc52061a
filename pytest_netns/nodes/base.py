"""The Node contract: what every node is and does, whichever backend made it.

A node owns one network namespace. The layers above use only this contract:

- tests: `name`, `ip`, `ip6`, `container`, `netns`, `exec`, `spawn`, `processes`;
- the topology layer: `netlink` (the kernel operations inside the node),
  `interfaces` and `routes` (what a topology put there), `owned`;
- probes and captures: `call` (run a function inside the namespace, where
  sockets must be opened), `egress_ifnames` (the interfaces a probe may
  leave through), `address_for` (which of its addresses another node
  should use), `on_release` (close what pins the namespace), and
  `check_open` (a node of a closed topology refuses at once);
- names: `update_names` (edit the hosts file the node's processes read).

A node holds no thread and, for a namespace node, no descriptor: its
`handle` (`kernel.netns.Netns`) names the namespace, and a pooled worker
enters it for each piece of work. Nothing registers hooks at import.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import NetnsError, NodeClosedError
from ..kernel.netlink import Netlink
from ..kernel.netns import Netns

if TYPE_CHECKING:
    from docker.models.containers import Container

    from .command import Command
    from .process import ExecResult, Executor, Process

T = TypeVar("T")


@dataclass(frozen=True)
class Interface:
    """One interface a topology put in a node."""

    ifname: str
    ip: str | None
    prefixlen: int
    segment: str  # the switch, link or guest-only NIC it belongs to, by its topology's name
    kind: str = "veth"
    network: str = ""  # one id per broadcast domain, unique across topologies
    ip6: str | None = None
    prefixlen6: int | None = None

    def address(self, family: int = 4) -> str | None:
        """Its IPv4 (family 4) or IPv6 (family 6) address."""
        return self.ip6 if family == 6 else self.ip


class Node(ABC):
    """Common behaviour of every node: a namespace, a handle to work in it, and its netlink."""

    container: Container | None = None
    #: created by pytest-netns (and so removed by it); an attached container is not
    owned: bool = True

    def __init__(self, name: str, netns: str, handle: Netns) -> None:
        self.name = name
        self.netns = netns
        #: how work enters the namespace (links are created through it)
        self.handle = handle
        self.netlink = Netlink(handle)
        self.interfaces: list[Interface] = []
        self.routes: list[tuple[str, str | None]] = []
        self.released = False
        self._closed_by: str | None = None
        self._release_callbacks: list[Callable[[], None]] = []
        self._executor: Executor | None = None

    # -- what it is -------------------------------------------------------

    @property
    def ip(self) -> str | None:
        """Its address on the topology that made it (the first one assigned)."""
        return self.first_address(4)

    @property
    def ip6(self) -> str | None:
        """Its IPv6 address on the topology that made it (the first one; None without IPv6)."""
        return self.first_address(6)

    def first_address(self, family: int = 4) -> str | None:
        for iface in self.interfaces:
            address = iface.address(family)
            if address:
                return address
        return None

    @property
    def kind(self) -> str:
        """"container", "namespace" or "host"."""
        return "namespace"

    def interface(self, ifname: str) -> Interface:
        for iface in self.interfaces:
            if iface.ifname == ifname:
                return iface
        raise KeyError(ifname)

    def address_for(self, other: Node | None, family: int = 4) -> str | None:
        """The address (IPv4, or IPv6 with `family=6`) `other` should use to reach this node.

        A node on several segments has several addresses; the one on a
        segment both nodes share is the one that works without a router.
        With no shared segment (a routed path), the first address.
        """
        if other is not None:
            mine = {i.network: i.address(family) for i in self.interfaces
                    if i.address(family) and i.network}
            for iface in other.interfaces:
                if iface.network in mine:
                    return mine[iface.network]
        return self.first_address(family)

    def egress_ifnames(self) -> frozenset[str]:
        """Interfaces a probe from this node may leave through: lo and what topologies made."""
        return frozenset({"lo", *(i.ifname for i in self.interfaces)})

    # -- working inside it --------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` inside the node's network namespace and return its result.

        Sockets opened by `fn` belong to the namespace for their whole life
        and may then be used from any thread.
        """
        self.check_open("work in")
        return self.handle.call(fn, *args, **kwargs)

    def run_tool(self, argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
        """Run a host program (nft, iptables) inside the node's network namespace.

        Unlike `exec`, this runs the host's binary on the host's filesystem,
        whatever the node's image holds: it is how pytest-netns configures a
        node's firewall. Returns the exit status and the combined output.
        """
        self.check_open("configure")
        return self.handle.run(argv, stdin)

    # -- running commands (the same rules on both backends) ------------------

    def exec(
        self,
        command: Command,
        timeout: float | None = 30.0,
        *,
        check: bool = False,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | int | None = None,
        input: bytes | str | None = None,
    ) -> ExecResult:
        """Run a command inside the node and wait for it; an `ExecResult`.

        The result unpacks as `(exit_code, output)`, stdout and stderr
        combined (on Docker the order between the two streams is not kept).

        - `command`: a list is the argv, verbatim. A string is split into
          words like a shell would (quotes work) but never run by one, and
          a string with shell operators (`| & ; < > ( ) $` and backticks)
          raises `InvalidCommandError`: pass `["sh", "-c", "..."]` for a shell.
        - Namespace nodes run the host's programs, container nodes the image's.
        - It returns when the command's main process exits. Processes it
          left in the background keep running until the node goes away.
        - `timeout` (seconds, None for no limit): past it, the command and
          every process it started are killed and `ExecTimeoutError` is raised.
        - Exit codes are the command's; killed by signal N reports 128+N.
        - A command that cannot start raises `CommandStartError`
          (`CommandNotFoundError` for a missing or non-executable program),
          never an exit code 126/127 or an OSError.
        - `check=True` raises `CommandFailedError` for an exit code other than 0.
        - `env` is added to the environment, `cwd` is a directory in the
          node, `user` is `"name"`, `"uid"`, `"uid:gid"` or an int, `input`
          (bytes or str) is written to its stdin (else stdin is empty).
        """
        self.check_open("run a command in")
        return self.executor.exec(command, timeout, check=check, env=env, cwd=cwd, user=user,
                                  input=input)

    def spawn(
        self,
        command: Command,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | int | None = None,
        log_path: str | None = None,
    ) -> Process:
        """Start a command in the background inside the node (a server, say); a `Process`.

        Same rules for `command`, `env`, `cwd`, `user` and "cannot start" as
        `exec`. Its output is read all the time, so it never blocks on a
        full pipe: the last MiB is `Process.output()` (and in the failure
        report), all of it goes to `log_path` when given. `Process.stop()`
        ends it and every process it started; whatever is still running
        when the node goes away is stopped then.
        """
        self.check_open("start a process in")
        return self.executor.spawn(command, env=env, cwd=cwd, user=user, log_path=log_path)

    @property
    def processes(self) -> list[Process]:
        """The processes `spawn` started in this node, stopped ones included."""
        return [] if self._executor is None else self._executor.processes

    @property
    def executor(self) -> Executor:
        """What runs commands in the node, made on first use."""
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    @abstractmethod
    def _make_executor(self) -> Executor:
        """The backend's executor for this node."""

    def close_executor(self) -> None:
        """End every process started through the node (idempotent)."""
        if self._executor is not None:
            self._executor.close()

    @property
    def running(self) -> bool:
        """False once what the node stands for is gone (a container that was removed)."""
        return True

    def update_names(self, edit: Callable[[str | None], str]) -> None:
        """Apply `edit` (current hosts text, None when there is none -> new text) to the
        hosts file the node's processes read. Nodes that resolve no names ignore it."""
        return None

    # -- end of life ----------------------------------------------------------

    def failure_cause(self) -> NetnsError | None:
        """The real reason a build step failed in this node, if the node knows one.

        A container whose own command exited a moment after it started makes
        whatever the build does next fail with an unrelated message; the
        builder asks every node and reports this instead.
        """
        return None

    def check_open(self, action: str = "use") -> None:
        """NodeClosedError if the node's topology was closed."""
        if self._closed_by is not None or self.released:
            raise NodeClosedError(
                f"cannot {action} node {self.name!r}: {self._closed_by or 'it was released'}; "
                "use a node of a topology that is still up"
            )

    @abstractmethod
    def remove(self, defer: Callable[[Callable[[], None]], None],
               unpin: Callable[[str], None] | None = None) -> None:
        """Take the node away at its topology's close; `defer` queues slow work.

        Each kind knows what that means: a namespace ends its processes and is
        unpinned at once (by `unpin` when given: the topology unpins all of
        its namespaces together, see `netns.remove_named_netns_all`); a
        started container is removed later (about 40 ms of engine time); an
        attached container is only let go of.
        """

    def mark_closed(self, why: str) -> None:
        """Refuse every further use at once (its removal may still be under way)."""
        self._closed_by = why

    def on_release(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the node is released (before its namespace is let go).

        Layers that keep sockets inside the namespace (probes, captures)
        close them here: an open socket would keep the namespace alive after
        its topology is gone.
        """
        self._release_callbacks.append(callback)

    def release(self) -> None:
        """Drop every handle on the namespace held by this process."""
        if self.released:
            return
        self.released = True
        callbacks, self._release_callbacks = self._release_callbacks, []
        for callback in callbacks:
            callback()
        self.close_executor()
        self.handle.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ip={self.ip} netns={self.netns}>"
