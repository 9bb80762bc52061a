"""One builder for every topology: describe it as data, then build it.

Mininet's lesson: a topology is a description (nodes, switches, links,
routers, NAT) and building it is a separate step. Here the description is
validated completely, and its subnets reserved, before the first kernel
object exists; the build then either finishes or removes everything it made
before the error propagates. The four fixtures are short recipes on this
class, so there is one code path to trust, not five.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from ..choices import NODE_BACKENDS as BACKENDS
from ..errors import (
    InvalidAddressError,
    InvalidImpairmentError,
    InvalidTopologyError,
    UnsupportedKindError,
)
from ..kernel.privileges import require_privileges
from ..nodes.command import to_argv
from ..ownership import Session, current_session
from .addresses import (
    check_assignable,
    check_assignable6,
    check_hostname,
    check_ifname,
    parse_ip,
    parse_ip6,
    parse_subnet,
    parse_subnet6,
)
from .construct import Constructor, impair
from .plan import Plan, make_plan
from .spec import (
    HOST,
    EndpointSpec,
    Expectation,
    ImpairmentSpec,
    Network,
    Network6,
    NodeSpec,
    Role,
    RouteSpec,
    SegmentKind,
    SegmentSpec,
)
from .topology import Topology


class BuildListener(Protocol):
    """Who wants to know about a build (the pytest plugin: the test's record and stack)."""

    def building(self) -> AbstractContextManager[None]:
        """Entered around the build: probes sent meanwhile verify it, not the test."""
        ...

    def built(self, topology: Topology) -> None:
        """A topology was built and handed to the caller."""
        ...


@contextmanager
def _nothing() -> Iterator[None]:
    yield


class TopologyBuilder:
    """Describe nodes, switches, links, routers and NAT, then `build()`.

    >>> t = make_topology()
    >>> a, b = t.node("a"), t.node("b")
    >>> sw = t.switch("lan")
    >>> t.connect(a, sw); t.connect(b, sw)
    >>> net = t.build()
    >>> net["a"].ip

    With `ipv6=True` every segment also gets an IPv6 subnet (the `subnet6=`
    given, or a free unique-local /64) and every end an IPv6 address
    (`ip6=`, or the next free one); routers forward IPv6 too. Inside each
    node, every node of the topology resolves by its name (and `aliases=`).
    """

    HOST = HOST

    def __init__(
        self,
        backend: str = "namespace",
        image: str | None = None,
        command: list[str] | str | None = None,
        session: Session | None = None,
        verify: bool = True,
        label: str = "topology",
        listener: BuildListener | None = None,
        ipv6: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise InvalidTopologyError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
        self.backend = backend
        self.image = image
        self.command = command
        self._session = session
        self.verify = verify
        self.label = label
        self.listener = listener
        if not isinstance(ipv6, bool):
            raise InvalidTopologyError(f"invalid ipv6 {ipv6!r}: expected True or False")
        self.ipv6 = ipv6
        self._nodes: dict[str, NodeSpec] = {}
        self._segments: dict[str, SegmentSpec] = {}
        self._routes: list[RouteSpec] = []
        self._expect: list[Expectation] = []
        self._impairments: list[ImpairmentSpec] = []
        self._built = False

    @property
    def session(self) -> Session:
        """Who owns what this builds (the process's session unless one was given)."""
        if self._session is None:
            self._session = current_session()
        return self._session

    # -- description ------------------------------------------------------

    def _add_node(self, spec: NodeSpec) -> str:
        check_node_name(spec.name)
        if spec.name in self._nodes or spec.name in self._segments:
            raise InvalidTopologyError(f"name {spec.name!r} is used twice in this topology")
        spec.aliases = _aliases(spec.name, spec.aliases)
        self._nodes[spec.name] = spec
        return spec.name

    def node(
        self,
        name: str,
        *,
        image: str | None = None,
        command: list[str] | str | None = None,
        backend: str | None = None,
        aliases: list[str] | tuple[str, ...] = (),
        **run_kwargs: Any,
    ) -> str:
        """A node: a container on the Docker backend, a bare namespace otherwise.

        Every node of the topology resolves `name`, and each of `aliases`, to it.
        """
        chosen = backend or self.backend
        if chosen not in BACKENDS:
            raise InvalidTopologyError(f"unknown backend {chosen!r}: expected one of {BACKENDS}")
        cmd = command if command is not None else self.command
        return self._add_node(
            NodeSpec(name, Role.NODE, chosen, image or self.image,
                     to_argv(cmd) if cmd is not None else None, run_kwargs=run_kwargs,
                     aliases=_alias_tuple(aliases))
        )

    def attach(self, container: Any, name: str | None = None,
               aliases: list[str] | tuple[str, ...] = ()) -> str:
        """An already running container: a docker SDK `Container`, an id or name, or a
        started testcontainers `DockerContainer`.

        It is never stopped or removed; only the interfaces put into it are
        (and the names written into its /etc/hosts, taken out again at close).
        """
        from ..nodes.container import resolve_container

        ctr = resolve_container(container)
        return self._add_node(NodeSpec(name or str(ctr.name), Role.NODE, "docker", attach=ctr,
                                       aliases=_alias_tuple(aliases)))

    def router(self, name: str, aliases: list[str] | tuple[str, ...] = ()) -> str:
        """A namespace that forwards between the segments it is connected to."""
        return self._add_node(NodeSpec(name, Role.ROUTER, "namespace",
                                       aliases=_alias_tuple(aliases)))

    def switch(self, name: str | None = None, subnet: str | Network | None = None,
               subnet6: str | Network6 | None = None) -> str:
        """A learning bridge in a namespace of its own (clear of the host's firewall)."""
        name = name or f"sw{len(self._segments)}"
        check_node_name(name, "switch name")
        if name in self._nodes or name in self._segments:
            raise InvalidTopologyError(f"name {name!r} is used twice in this topology")
        net = parse_subnet(subnet, hosts_needed=1) if subnet is not None else None
        net6 = parse_subnet6(subnet6, hosts_needed=1) if subnet6 is not None else None
        self._segments[name] = SegmentSpec(name, SegmentKind.SWITCH, net, subnet6=net6)
        self._nodes[name] = NodeSpec(name, Role.SWITCH, "namespace")
        return name

    def connect(
        self,
        a: str,
        b: str,
        *,
        subnet: str | Network | None = None,
        ip: str | None = None,
        peer_ip: str | None = None,
        iface: str | None = None,
        peer_iface: str | None = None,
        subnet6: str | Network6 | None = None,
        ip6: str | None = None,
        peer_ip6: str | None = None,
        impair: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """Connect node `a` to a switch, another node, or `HOST`; return the segment name.

        `ip`/`ip6`/`iface` are `a`'s end; `peer_ip`/`peer_ip6`/`peer_iface` the
        other end's (not for a switch, whose ports carry no address). `subnet6`,
        `ip6` and `peer_ip6` need a topology made with `ipv6=True`. `impair`
        takes `Link.impair`'s keywords (`{"delay": "20ms", "loss": 1}`, with an
        optional "direction"), or a list of them for different directions;
        they are applied once the topology is built and verified.
        """
        if a == HOST:
            a, b, ip, peer_ip, iface, peer_iface = b, a, peer_ip, ip, peer_iface, iface
            ip6, peer_ip6 = peer_ip6, ip6
        self._need_node(a, "connect")
        if b != HOST and b not in self._nodes:
            self._need_node(b, "connect")
        impairments = _impairments(a, b, impair) if impair is not None else []
        end_a = EndpointSpec(a, _ifname_or_none(iface), _ip_or_none(ip), _ip6_or_none(ip6))
        if b in self._segments and self._segments[b].kind == SegmentKind.SWITCH:
            if peer_ip or peer_iface or peer_ip6:
                raise InvalidTopologyError(
                    f"a switch port carries no address or name: drop peer_ip/peer_ip6/"
                    f"peer_iface when connecting {a!r} to switch {b!r}"
                )
            seg = self._segments[b]
            if subnet is not None:
                net = parse_subnet(subnet, hosts_needed=1)
                if seg.subnet is not None and seg.subnet != net:
                    raise InvalidAddressError(
                        f"switch {b!r} already has subnet {seg.subnet}, not {net}"
                    )
                seg.subnet = net
            if subnet6 is not None:
                net6 = parse_subnet6(subnet6, hosts_needed=1)
                if seg.subnet6 is not None and seg.subnet6 != net6:
                    raise InvalidAddressError(
                        f"switch {b!r} already has IPv6 subnet {seg.subnet6}, not {net6}"
                    )
                seg.subnet6 = net6
            seg.endpoints.append(end_a)
            self._impairments += impairments
            return b
        if b != HOST:
            self._need_node(b, "connect")
        if a == b:
            raise InvalidTopologyError(f"cannot connect node {a!r} to itself")
        name = f"link{len(self._segments)}"
        link_net = parse_subnet(subnet) if subnet is not None else None
        link_net6 = parse_subnet6(subnet6) if subnet6 is not None else None
        end_b = EndpointSpec(b, _ifname_or_none(peer_iface), _ip_or_none(peer_ip),
                             _ip6_or_none(peer_ip6))
        self._segments[name] = SegmentSpec(name, SegmentKind.LINK, link_net, [end_a, end_b],
                                           subnet6=link_net6)
        self._impairments += impairments
        return name

    def stub(
        self,
        node: str,
        *,
        ip: str = "172.16.0.10",
        prefixlen: int = 24,
        iface: str = "eth1",
        kind: str | None = None,
        ip6: str | None = None,
        prefixlen6: int = 64,
    ) -> str:
        """A guest-only NIC in `node`: an address, and nothing at the other end.

        `kind` is "dummy" (the article's), "ifb", "veth" (peer parked in a private
        namespace) or None for the best this kernel has. On an IPv6 topology it
        also gets `ip6`/`prefixlen6`, or an address of a free /64.
        """
        self._need_node(node, "stub")
        if kind not in (None, "dummy", "ifb", "veth"):
            raise UnsupportedKindError(
                f"unknown guest-only interface kind {kind!r}: expected 'dummy', 'ifb', 'veth' "
                "or None (the best this kernel supports)"
            )
        addr = parse_ip(ip)
        check_assignable(addr)
        if type(prefixlen) is not int or not 1 <= prefixlen <= 32:
            raise InvalidAddressError(f"invalid prefix length {prefixlen!r}: expected 1 to 32")
        net = ipaddress.IPv4Network(f"{addr}/{prefixlen}", strict=False)
        if prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
            raise InvalidAddressError(
                f"address {addr} is the {'network' if addr == net.network_address else 'broadcast'}"
                f" address of {net}: pick a host address in {net[1]}-{net[-2]}"
            )
        net6 = None
        addr6 = _ip6_or_none(ip6)
        if addr6 is not None:
            if type(prefixlen6) is not int or not 1 <= prefixlen6 <= 128:
                raise InvalidAddressError(
                    f"invalid IPv6 prefix length {prefixlen6!r}: expected 1 to 128 (64 is usual)"
                )
            net6 = ipaddress.IPv6Network(f"{addr6}/{prefixlen6}", strict=False)
        name = f"stub{len(self._segments)}"
        self._segments[name] = SegmentSpec(
            name, SegmentKind.STUB, net, [EndpointSpec(node, check_ifname(iface), addr, addr6)],
            stub_kind=kind, subnet6=net6,
        )
        return name

    def nat(
        self,
        router: str,
        *,
        upstream_subnet: str | Network | None = None,
        real_uplink: bool = False,
        upstream_subnet6: str | Network6 | None = None,
    ) -> str:
        """Masquerade what `router` forwards towards a new upstream link to the host.

        The upstream side is a veth in the root namespace that this topology
        creates, so the test process can bind the upstream address and serve
        on it. The router gets no route off the machine unless `real_uplink`
        is set: that explicit opt-in changes the host as `kernel/uplink.py` documents
        and restores it when the topology closes (for IPv4 only). On an IPv6
        topology the router masquerades IPv6 as well (nftables `ip6` NAT).
        """
        self._need_node(router, "nat")
        if self._nodes[router].role != Role.ROUTER:
            raise InvalidTopologyError(f"NAT needs a router, and {router!r} is not one")
        seg_name = self.connect(router, HOST, subnet=upstream_subnet, subnet6=upstream_subnet6)
        self._segments[seg_name].nat_router = router
        self._segments[seg_name].real_uplink = bool(real_uplink)
        return seg_name

    def route(self, node: str, dst: str, via: str) -> None:
        """An extra static route in `node` (a default one is added automatically).

        `dst` is a CIDR or "default"; an IPv6 `via` (on an IPv6 topology) makes
        it an IPv6 route.
        """
        self._need_node(node, "route")
        if ":" in str(via):
            gateway6 = parse_ip6(via, "gateway")
            check_assignable6(gateway6, "gateway")
            net6 = parse_subnet6(dst, hosts_needed=0) if dst != "default" else None
            self._routes.append(RouteSpec(node, str(net6) if net6 else "::/0", str(gateway6)))
            return
        net = parse_subnet(dst, hosts_needed=0) if dst != "default" else None
        check_assignable(parse_ip(via, "gateway"), "gateway")
        self._routes.append(RouteSpec(node, str(net) if net else "0.0.0.0/0", via))

    def expect(self, src: str, dst: str, segment: str) -> None:
        """After building, prove that `src` reaches `dst`'s address on `segment`.

        Every segment is proved anyway when `verify` is on (see
        `topology/verify.py`); this adds paths the defaults do not take, such as
        one through a router or NAT.
        """
        self._expect.append(Expectation(src, dst, segment))

    def _need_node(self, name: str, what: str) -> None:
        if name not in self._nodes or self._nodes[name].role == Role.SWITCH:
            known = sorted(n for n, s in self._nodes.items() if s.role != Role.SWITCH)
            raise InvalidTopologyError(
                f"{what}: unknown node {name!r}; this topology has nodes {known}"
            )

    # -- building ---------------------------------------------------------

    def plan(self) -> Plan:
        """Check the description, reserve its subnets and assign every address.

        Nothing is created; `build()` does this first. The reservation lasts
        until the plan's topology closes, or `Plan.release()`.
        """
        require_privileges()  # one clear error before any file or namespace is made
        routes6 = [r for r in self._routes if ":" in r.via]
        if not self.ipv6 and routes6:
            raise InvalidTopologyError(
                f"route {routes6[0].dst} via {routes6[0].via} is an IPv6 route, on a topology "
                "made without IPv6: pass ipv6=True"
            )
        return make_plan(self.label, f"{self.session.id}:{self.label}", self._nodes,
                         list(self._segments.values()), self._routes, self._expect, self.ipv6,
                         self._impairments)

    def build(self) -> Topology:
        """Create everything; on any failure remove what was made, then re-raise."""
        if self._built:
            raise InvalidTopologyError("this builder was already built; make a new one")
        self._built = True
        with self.listener.building() if self.listener else _nothing():
            started = time.perf_counter()
            from ..probes import preload

            preload.start()  # the probe machinery loads while this builds
            plan = self.plan()
            topo = Topology(self.label, self.session, plan.reserved)
            try:
                Constructor(plan, topo).build()
                topo.build_seconds = time.perf_counter() - started
                if self.verify:
                    Constructor.verify(plan, topo)
                impair(plan, topo)
            except BaseException as exc:
                cause = next((c for node in topo.nodes.values()
                              if (c := node.failure_cause()) is not None), None)
                topo.close()
                if cause is not None and isinstance(exc, Exception):
                    raise cause from exc
                raise
        if self.listener is not None:
            self.listener.built(topo)
        return topo


def check_node_name(name: object, what: str = "node name") -> None:
    """InvalidTopologyError (a HostnameError) unless every backend accepts `name`.

    One rule for nodes, routers and switches on both backends, checked
    before anything is built: a host name other nodes can resolve
    (`check_hostname`), which is also a name Docker accepts in a container's
    name (it refuses spaces and anything outside letters, digits, `_`, `.`
    and `-`); and not "host", which means the host in every call.
    """
    if name == HOST:
        raise InvalidTopologyError(
            f"invalid {what} 'host': it stands for the host's namespace in every call; "
            "pick another name"
        )
    check_hostname(name, what)


def _ip_or_none(value: str | None) -> ipaddress.IPv4Address | None:
    if value is None:
        return None
    text = str(value).strip()
    if "/" in text:  # "10.0.0.2/24" is fine; the segment's subnet decides the prefix
        try:
            ipaddress.IPv4Interface(text)
        except ValueError:
            raise InvalidAddressError(
                f"invalid address {value!r}: expected an IPv4 address such as '10.0.0.2', "
                "optionally with a prefix length such as '10.0.0.2/24'"
            ) from None
    addr = parse_ip(text.split("/")[0])
    check_assignable(addr)
    return addr


def _ip6_or_none(value: str | None) -> ipaddress.IPv6Address | None:
    if value is None:
        return None
    addr = parse_ip6(value)
    check_assignable6(addr)
    return addr


def _ifname_or_none(value: str | None) -> str | None:
    return None if value is None else check_ifname(value)


def _alias_tuple(aliases: object) -> tuple[str, ...]:
    if isinstance(aliases, str):  # aliases="db" would otherwise be ('d', 'b')
        return (aliases,)
    if not isinstance(aliases, list | tuple | set | frozenset):
        raise InvalidTopologyError(f"invalid aliases {aliases!r}: expected a list of names")
    return tuple(aliases)


def _aliases(name: str, aliases: tuple[str, ...]) -> tuple[str, ...]:
    """The node's aliases, each a valid host name other than its name and "host"."""
    seen = {name.lower()}
    for alias in aliases:
        check_hostname(alias, f"alias of node {name!r}")
        if alias == HOST:
            raise InvalidTopologyError(
                f"alias 'host' of node {name!r} would hide the host: pick another name"
            )
        if alias.lower() in seen:
            raise InvalidTopologyError(
                f"alias {alias!r} of node {name!r} is given twice (or is its name): give "
                "each name once"
            )
        seen.add(alias.lower())
    return aliases


_IMPAIR_KEYS = ("delay", "jitter", "loss", "rate", "duplicate", "corrupt", "reorder",
                "distribution", "direction")


def _impairments(a: str, b: str, given: object) -> list[ImpairmentSpec]:
    """`connect(..., impair=...)` checked now, so a bad value fails before anything exists."""
    from ..kernel.impairment import Impairment
    from .faults import parse_direction

    specs = [given] if isinstance(given, Mapping) else given
    if not isinstance(specs, Sequence) or isinstance(specs, str) or not all(
            isinstance(s, Mapping) for s in specs):
        raise InvalidImpairmentError(
            f"impair={given!r} for {a}<->{b}: give Link.impair's keywords as a dict, e.g. "
            "{'delay': '20ms', 'loss': 1}, or a list of such dicts (one per direction)")
    out = []
    for spec in specs:
        unknown = sorted(set(spec) - set(_IMPAIR_KEYS))
        if unknown:
            raise InvalidImpairmentError(
                f"impair={dict(spec)!r} for {a}<->{b}: unknown keys {unknown}; valid: "
                f"{', '.join(_IMPAIR_KEYS)}")
        values = dict(spec)
        parse_direction(values.get("direction", "both"), (a, b))
        Impairment.parse(**{k: v for k, v in values.items() if k != "direction"})
        out.append(ImpairmentSpec(a, b, values))
    return out
