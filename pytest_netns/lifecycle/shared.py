"""Topologies shared by many tests: what the session-scoped `netns_factory` fixture is.

A container topology costs a few hundred milliseconds to build; a suite of
many tests against one network should pay that once. `NetnsFactory` is the
session object (the pytest-httpserver pattern): a user's own module- or
session-scoped fixture calls it, and what it builds lives until it is closed
(`with ... as net: yield net` closes it at the end of that fixture's scope)
or the session ends. It uses the same backend, image and session as the
function-scoped fixtures, so the crash watchdog covers what it builds and
the terminal summary counts it.

The per-test view is the plugin's: while a test runs, every shared topology
that is up belongs to that test's record too (`attach_view`), so a failing
test's report describes it and its captures cover that test's time window.

>>> @pytest.fixture(scope="module")
... def db_net(netns_factory):
...     with netns_factory.bridged_pair(ipv6=True) as net:
...         yield net
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ..ownership import Session
from ..topology import recipes
from ..topology.builder import TopologyBuilder
from ..topology.recipes import BridgedPair, HostOnlyLink, IsolatedContainer, NatUplink
from ..topology.topology import Topology


class RunningTest(Protocol):
    """What a running test offers the shared topologies (the plugin's per-test record)."""

    def building(self) -> AbstractContextManager[None]: ...

    def share(self, topology: Topology) -> None:
        """A shared topology is up while this test runs."""
        ...


class NetnsFactory:
    """Builds topologies that outlive one test; the session closes whatever is left.

    Each method takes what the matching `make_*` fixture takes (`ipv6=`,
    `subnet=`, `container=`, ...) and returns the same object.
    """

    def __init__(self, backend: str, image: str | None, session: Session,
                 command: list[str] | str | None = None) -> None:
        self.backend = backend
        self.image = image
        self.command = command
        self.session = session
        self._built: list[Topology] = []
        self._view: RunningTest | None = None
        self._lock = threading.Lock()

    # -- building ---------------------------------------------------------------

    def topology(self, *, backend: str | None = None, image: str | None = None,
                 command: list[str] | str | None = None, verify: bool = True,
                 label: str = "topology", ipv6: bool = False) -> TopologyBuilder:
        """A builder whose topology is shared: it lives until closed or the session ends."""
        return TopologyBuilder(backend=backend or self.backend, image=image or self.image,
                               command=command or self.command, session=self.session,
                               verify=verify, label=label, listener=self, ipv6=ipv6)

    def _recipe(self, name: str, backend: str | None, image: str | None,
                command: list[str] | str | None, verify: bool, ipv6: bool, kw: Any) -> Any:
        builder = self.topology(backend=backend, image=image, command=command, verify=verify,
                                label=name, ipv6=ipv6)
        return getattr(recipes, name)(builder, **kw)

    def isolated_container(self, *, backend: str | None = None, image: str | None = None,
                           command: list[str] | str | None = None, verify: bool = True,
                           ipv6: bool = False, **kw: Any) -> IsolatedContainer:
        result: IsolatedContainer = self._recipe("isolated_container", backend, image, command,
                                                 verify, ipv6, kw)
        return result

    def host_only_link(self, *, backend: str | None = None, image: str | None = None,
                       command: list[str] | str | None = None, verify: bool = True,
                       ipv6: bool = False, **kw: Any) -> HostOnlyLink:
        result: HostOnlyLink = self._recipe("host_only_link", backend, image, command, verify,
                                            ipv6, kw)
        return result

    def bridged_pair(self, *, backend: str | None = None, image: str | None = None,
                     command: list[str] | str | None = None, verify: bool = True,
                     ipv6: bool = False, **kw: Any) -> BridgedPair:
        result: BridgedPair = self._recipe("bridged_pair", backend, image, command, verify,
                                           ipv6, kw)
        return result

    def nat_uplink(self, *, backend: str | None = None, image: str | None = None,
                   command: list[str] | str | None = None, verify: bool = True,
                   ipv6: bool = False, **kw: Any) -> NatUplink:
        result: NatUplink = self._recipe("nat_uplink", backend, image, command, verify, ipv6,
                                         kw)
        return result

    def lab(self, path: str | os.PathLike[str], **kw: Any) -> Topology:
        """The topology a lab file declares, shared like the others.

        Lab files are read by `pytest_netns.labs`; `build` is handed this
        factory's `topology` method as the builder to use, so a lab gets this
        factory's backend, image, session and sharing.
        """
        from ..labs.lab import build

        return build(os.fspath(path), self.topology, **kw)

    # -- the builder's listener -------------------------------------------------

    def building(self) -> AbstractContextManager[None]:
        """Probes that verify a new shared topology are not a running test's own."""
        view = self._view
        return view.building() if view is not None else _nothing()

    def built(self, topology: Topology) -> None:
        topology.scoped = True
        with self._lock:
            self._built.append(topology)
            view = self._view
        if view is not None:  # built by a fixture (or a test) while a test runs
            view.share(topology)

    # -- the per-test view ------------------------------------------------------

    def live(self) -> list[Topology]:
        """The shared topologies that are up now."""
        with self._lock:
            self._built = [t for t in self._built if not t.closed]
            return list(self._built)

    def attach_view(self, view: RunningTest | None) -> None:
        """The running test (None between tests): it gets every shared topology that is
        up, now and as they are built."""
        with self._lock:
            self._view = view
        if view is not None:
            for topology in self.live():
                view.share(topology)

    def close(self) -> None:
        """Close every shared topology still up (at the end of the session)."""
        errors = []
        for topology in self.live():
            try:
                topology.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@contextmanager
def _nothing() -> Iterator[None]:
    yield
