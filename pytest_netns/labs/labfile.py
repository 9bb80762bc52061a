"""Lab files: a network declared in YAML (or JSON), read and checked before anything exists.

A lab file declares nodes, switches, links (with pinned addresses,
interface names and impairments), routes, NAT and the reachability the lab
must give (`expect:`). Reading one produces a `LabSpec`, a checked value
that `labs.py` turns into a `TopologyBuilder`. Everything that can be wrong
with the file alone is found here, purely (no kernel, no engine, no root):
first its structure, against the JSON Schema shipped for editors
(`lab.schema.json`, so the editor and the command line agree), then what a
schema cannot say (names that must exist, addresses inside their subnets,
subnets that must not overlap, directions of the link they impair). Each
problem is a `LabFileError` naming the file, the place in it
(`links[3].endpoints[1]`, and its line for YAML) and what would be valid.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import InvalidArgumentError, LabFileError
from ..topology.addresses import (
    check_assignable,
    check_assignable6,
    check_clear_of_host,
    check_ifname,
    check_segment_subnet,
    check_segment_subnet6,
    parse_ip,
    parse_ip6,
    parse_prefixlen,
    parse_subnet,
    parse_subnet6,
)
from ..topology.spec import HOST
from .schema import Path, Schema, Violation, format_path, show

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab.schema.json")
IMPAIRMENT_KEYS = ("delay", "jitter", "loss", "rate", "duplicate", "corrupt", "reorder")

AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_EMPTY: Mapping[str, str] = MappingProxyType({})


# The lab's model is NamedTuples: frozen values, and about 0.1 ms each to define
# against 0.7 ms for a frozen dataclass, which `pytest-netns up` pays at every start.


class Route(NamedTuple):
    """An extra static route in a node: `dst` (a CIDR or "default") via `via`."""

    dst: str
    via: str


class Nat(NamedTuple):
    """A masquerading upstream link from a router to the host."""

    subnet: str | None = None
    subnet6: str | None = None
    real_uplink: bool = False


class NodeDecl(NamedTuple):
    """A node of the file: a container or namespace (kind "node") or a router."""

    name: str
    kind: str = "node"
    image: str | None = None
    command: str | tuple[str, ...] | None = None
    env: Mapping[str, str] = _EMPTY
    aliases: tuple[str, ...] = ()
    backend: str | None = None
    attach: str | None = None
    routes: tuple[Route, ...] = ()
    nat: Nat | None = None


class SwitchDecl(NamedTuple):
    name: str
    subnet: str | None = None
    subnet6: str | None = None


class LinkDecl(NamedTuple):
    """`links[entry]`: one or two endpoints and what is pinned on each."""

    entry: int
    endpoints: tuple[str, ...]
    subnet: str | None = None
    subnet6: str | None = None
    ip: Mapping[str, str] = _EMPTY
    ip6: Mapping[str, str] = _EMPTY
    iface: Mapping[str, str] = _EMPTY
    kind: str | None = None
    impair: tuple[Mapping[str, Any], ...] = ()

    @property
    def place(self) -> str:
        return f"links[{self.entry}]"


class Expect(NamedTuple):
    """One expected cell: `src` must (or must not) reach `dst`; `entry` is its place in `expect`."""

    entry: int
    src: str
    dst: str
    reach: bool = True
    proto: str = "icmp"
    port: int | None = None
    family: int = 4

    @property
    def service(self) -> str:
        return self.proto if self.port is None else f"{self.proto}/{self.port}"

    @property
    def place(self) -> str:
        return f"expect[{self.entry}]"


class LabSpec(NamedTuple):
    """A checked lab file: what to build, and what it must then carry."""

    name: str
    file: str | None
    nodes: Mapping[str, NodeDecl]
    switches: Mapping[str, SwitchDecl] = MappingProxyType({})
    links: tuple[LinkDecl, ...] = ()
    expect: tuple[Expect, ...] = ()
    backend: str | None = None
    image: str | None = None
    ipv6: bool = False

    def members(self) -> list[str]:
        """The nodes and routers, in the file's order (not switches)."""
        return list(self.nodes)

    def host_links(self) -> list[LinkDecl]:
        return [link for link in self.links if HOST in link.endpoints]


# -- reading ------------------------------------------------------------------------


@functools.cache
def schema() -> Schema:
    """The shipped JSON Schema, loaded once."""
    with open(SCHEMA_FILE) as f:
        return Schema(json.load(f))


def load(path: str | os.PathLike[str]) -> LabSpec:
    """Read and check the lab file at `path` (YAML, or JSON for a .json file)."""
    file = os.fspath(path)
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise LabFileError(f"cannot read the lab file: {exc.strerror or exc}",
                           file=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LabFileError(f"not UTF-8 text (byte {exc.start}): save the file as UTF-8",
                           file=file) from None
    return parse(text, file)


def parse(text: str, file: str | None = None) -> LabSpec:
    """Check a lab file's text (YAML, or JSON when `file` ends in .json)."""
    lines: dict[Path, int] = {}
    if file is not None and file.endswith(".json"):
        document = _read_json(text, file)
    else:
        document, lines = _read_yaml(text, file)
    return from_document(document, file, lines)


def from_document(document: object, file: str | None = None,
                  lines: Mapping[Path, int] | None = None) -> LabSpec:
    """Check an already parsed document (`lines` maps places to line numbers)."""
    checker = _Checker(file, lines or {})
    try:
        schema().check(document)
    except Violation as problem:
        checker.fail(problem.path, problem.message)
    assert isinstance(document, Mapping)
    return checker.spec(document)


def _read_json(text: str, file: str) -> object:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise LabFileError(f"key {key!r} is given twice in one object", file=file)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise LabFileError(f"not valid JSON: {exc.msg} (column {exc.colno})", file=file,
                           line=exc.lineno) from None


def _read_yaml(text: str, file: str | None) -> tuple[object, dict[Path, int]]:
    """The document, and the line of every place in it (for messages).

    The node tree is walked by hand rather than constructed by PyYAML, to
    learn each place's line and to refuse a key given twice, which PyYAML
    would silently let the last one win.
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise LabFileError(f"not valid YAML: {what}", file=file,
                           line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise LabFileError(f"not valid YAML: {exc}", file=file) from None
    lines: dict[Path, int] = {}
    constructor = yaml.constructor.SafeConstructor()

    def scalar(node: yaml.Node, path: Path) -> object:
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise LabFileError(f"cannot read this value: {exc}", format_path(path), file,
                               node.start_mark.line + 1) from None

    def convert(node: yaml.Node, path: Path) -> object:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in _merged(node):
                key = scalar(key_node, path)
                where = (*path, key) if isinstance(key, str) else path
                if not isinstance(key, str):
                    raise LabFileError(f"the key {show(key)} is not a name: write it in quotes",
                                       format_path(path), file, key_node.start_mark.line + 1)
                if key in out:
                    raise LabFileError(
                        f"key {key!r} is given twice here (line {lines[where]} and line "
                        f"{key_node.start_mark.line + 1}); YAML keeps only the last: merge them",
                        format_path(path), file, key_node.start_mark.line + 1)
                lines[where] = key_node.start_mark.line + 1
                out[key] = convert(value_node, where)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return scalar(node, path)

    if root is None:
        raise LabFileError("the file is empty: a lab needs at least `name:` and `nodes:`",
                           file=file)
    return convert(root, ()), lines


def _merged(node: Any) -> Iterator[tuple[Any, Any]]:
    """A mapping's pairs, with YAML merge keys (`<<: *defaults`) expanded in place."""
    import yaml

    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                else [value_node]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    yield from _merged(source)
        else:
            yield key_node, value_node


# -- checking what a schema cannot say ---------------------------------------------------


class _Segment(NamedTuple):
    """A switch, link or NAT upstream with an explicit subnet, for the overlap check."""

    path: Path
    net: AnyNetwork
    members: set[str]


class _Checker:
    """Turns a structurally valid document into a `LabSpec`, or fails at a place."""

    def __init__(self, file: str | None, lines: Mapping[Path, int]) -> None:
        self.file = file
        self.lines = lines

    def fail(self, path: Path, problem: str) -> None:
        """Raise the LabFileError for `path` (with the line of it, or of its nearest parent)."""
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line is not None:
                break
        raise LabFileError(problem, format_path(path) or "(the file)", self.file, line)

    @contextmanager
    def at(self, *path: str | int) -> Iterator[None]:
        """Any bad-input error raised inside becomes a LabFileError at `path`."""
        try:
            yield
        except LabFileError:
            raise
        except InvalidArgumentError as exc:
            self.fail(path, str(exc))

    # -- the whole file ---------------------------------------------------------------

    def spec(self, doc: Mapping[str, Any]) -> LabSpec:
        self.ipv6 = bool(doc.get("ipv6", False))
        nodes = {name: self.node(name, value or {}) for name, value in doc["nodes"].items()}
        switches = {}
        for name, value in (doc.get("switches") or {}).items():
            if name in nodes:
                self.fail(("switches", name), f"{name!r} is also a node: give the switch "
                          "another name")
            switches[name] = self.switch(name, value or {})
        for name in [*nodes, *switches]:
            if name == HOST:
                where = ("nodes" if name in nodes else "switches", name)
                self.fail(where, "'host' names the root namespace in links: give this "
                          "another name")
        self.nodes, self.switches = nodes, switches
        raw_links = doc.get("links") or []
        self.known = _known_names(raw_links, [*nodes, *switches])
        links = tuple(self.link(i, value) for i, value in enumerate(raw_links))
        self.check_names(nodes)
        self.check_membership(links)
        self.check_overlaps(links)
        self.check_addresses(links)
        self.check_interfaces(links)
        expect = self.expectations(doc.get("expect") or [], links)
        return LabSpec(doc["name"], self.file, nodes, switches, links, expect,
                       doc.get("backend"), doc.get("image"), self.ipv6)

    # -- nodes and switches -------------------------------------------------------------

    def node(self, name: str, value: Mapping[str, Any]) -> NodeDecl:
        kind = value.get("kind", "node")
        where = ("nodes", name)
        fixed = {"router": "a router is a namespace of pytest-netns's own, which runs no "
                           "image or command",
                 "attach": "an attached container keeps its own image, command, environment "
                           "and engine"}
        reason = "router" if kind == "router" else "attach" if "attach" in value else None
        if reason:
            for key in ("image", "command", "env", "backend", "attach"):
                if key in value and (key != "attach" or reason == "router"):
                    self.fail((*where, key), f"{fixed[reason]}: remove {key}")
        if value.get("nat") not in (None, False) and kind != "router":
            self.fail((*where, "nat"), "only a router masquerades: make this node "
                      "`kind: router`, or give the NAT to a router it is linked to")
        routes = tuple(self.route(name, i, r) for i, r in enumerate(value.get("routes") or []))
        command = value.get("command")
        return NodeDecl(
            name, kind, value.get("image"),
            tuple(command) if isinstance(command, list) else command,
            {k: str(v) for k, v in (value.get("env") or {}).items()},
            tuple(value.get("aliases") or ()), value.get("backend"), value.get("attach"),
            routes, self.nat(name, value.get("nat")),
        )

    def route(self, node: str, index: int, value: Mapping[str, str]) -> Route:
        where = ("nodes", node, "routes", index)
        dst, via = value["dst"].strip(), value["via"].strip()
        if ":" in via:
            self.need_ipv6((*where, "via"))
            with self.at(*where, "via"):
                check_assignable6(parse_ip6(via, "gateway"), "gateway")
            if dst != "default":
                with self.at(*where, "dst"):
                    parse_subnet6(dst, hosts_needed=0)
        else:
            with self.at(*where, "via"):
                check_assignable(parse_ip(via, "gateway"), "gateway")
            if dst != "default":
                with self.at(*where, "dst"):
                    parse_subnet(dst, hosts_needed=0)
        return Route(dst, via)

    def nat(self, router: str, value: object) -> Nat | None:
        if value in (None, False):
            return None
        if value is True:
            return Nat()
        assert isinstance(value, Mapping)
        where = ("nodes", router, "nat")
        if "subnet" in value:
            with self.at(*where, "subnet"):
                net = parse_subnet(value["subnet"], hosts_needed=2)
                check_segment_subnet(net, touches_host=True)
        if "subnet6" in value:
            self.need_ipv6((*where, "subnet6"))
            with self.at(*where, "subnet6"):
                check_segment_subnet6(parse_subnet6(value["subnet6"], hosts_needed=2), True)
        return Nat(value.get("subnet"), value.get("subnet6"), bool(value.get("real_uplink")))

    def switch(self, name: str, value: Mapping[str, Any]) -> SwitchDecl:
        if "subnet" in value:
            with self.at("switches", name, "subnet"):
                check_segment_subnet(parse_subnet(value["subnet"], hosts_needed=1), False)
        if "subnet6" in value:
            self.need_ipv6(("switches", name, "subnet6"))
            with self.at("switches", name, "subnet6"):
                check_segment_subnet6(parse_subnet6(value["subnet6"], hosts_needed=1), False)
        return SwitchDecl(name, value.get("subnet"), value.get("subnet6"))

    def need_ipv6(self, path: Path) -> None:
        if not self.ipv6:
            self.fail(path, "IPv6 needs `ipv6: true` at the top of the file")

    def check_names(self, nodes: Mapping[str, NodeDecl]) -> None:
        """Every name and alias resolves to one node (host names ignore case)."""
        seen: dict[str, tuple[str | int, ...]] = {n.lower(): ("nodes", n) for n in nodes}
        for name in self.switches:
            seen.setdefault(name.lower(), ("switches", name))
        for node in nodes.values():
            for i, alias in enumerate(node.aliases):
                where = ("nodes", node.name, "aliases", i)
                if alias.lower() == HOST:
                    self.fail(where, "'host' would hide the host: pick another alias")
                if alias.lower() in seen:
                    self.fail(where, f"{alias!r} is already the name or an alias at "
                              f"{format_path(seen[alias.lower()])}: give each name once")
                seen[alias.lower()] = where

    # -- links ----------------------------------------------------------------------

    def link(self, index: int, value: Mapping[str, Any]) -> LinkDecl:
        ends = tuple(value["endpoints"])
        where: Path = ("links", index)
        for i, name in enumerate(ends):
            if name != HOST and name not in self.nodes and name not in self.switches:
                self.fail((*where, "endpoints", i), f"no node or switch named {name!r}; "
                          f"known: {', '.join(self.known)}")
        if len(ends) == 2:
            self.check_pair(where, ends)
        elif ends[0] in self.switches or ends[0] == HOST:
            self.fail((*where, "endpoints"), "a link with one endpoint is a guest-only NIC, "
                      f"which belongs in a node; {ends[0]!r} is not one")
        if "kind" in value and len(ends) != 1:
            self.fail((*where, "kind"), "kind is the kind of a guest-only NIC: only a link "
                      "with one endpoint has one")
        switch = next((e for e in ends if e in self.switches), None)
        for key in ("subnet", "subnet6"):
            if key in value and switch is not None:
                self.fail((*where, key), f"the subnet of a switch is set on the switch: "
                          f"move it to switches.{switch}.{key}")
        if "subnet" in value:
            with self.at(*where, "subnet"):
                net = parse_subnet(value["subnet"], hosts_needed=2 if len(ends) == 2 else 1)
                check_segment_subnet(net, touches_host=HOST in ends)
        if "subnet6" in value:
            self.need_ipv6((*where, "subnet6"))
            with self.at(*where, "subnet6"):
                check_segment_subnet6(parse_subnet6(value["subnet6"], hosts_needed=len(ends)),
                                      touches_host=HOST in ends)
        for key in ("ip", "ip6", "iface"):
            for name in value.get(key) or {}:
                self.check_end_key(where, key, name, ends)
        if value.get("ip6"):
            self.need_ipv6((*where, "ip6"))
        impair = value.get("impair")
        impairs = () if impair is None else (impair,) if isinstance(impair, Mapping) \
            else tuple(impair)
        link = LinkDecl(index, ends, value.get("subnet"), value.get("subnet6"),
                        dict(value.get("ip") or {}), dict(value.get("ip6") or {}),
                        dict(value.get("iface") or {}), value.get("kind"),
                        tuple(dict(i) for i in impairs))
        self.check_impairments(link, isinstance(impair, Mapping))
        return link

    def check_pair(self, where: Path, ends: tuple[str, ...]) -> None:
        a, b = ends
        if a == b:
            self.fail((*where, "endpoints"), f"{a!r} is linked to itself")
        kinds = {("switch" if e in self.switches else HOST if e == HOST else "node")
                 for e in ends}
        if "node" not in kinds:
            self.fail((*where, "endpoints"), f"{a!r} and {b!r} cannot be linked: a link needs "
                      "a node (or router) at one end at least; switches and the host connect "
                      "to nodes only")

    def check_end_key(self, where: Path, key: str, name: str, ends: tuple[str, ...]) -> None:
        if name not in ends:
            self.fail((*where, key, name), f"{name!r} is not an endpoint of this link (its "
                      f"endpoints: {', '.join(ends)})")
        if name in self.switches:
            node = next(e for e in ends if e != name)
            what = "address" if key != "iface" else "name"
            self.fail((*where, key, name), f"a switch port carries no {what}: give the "
                      f"{what} of {node!r}, the node on this link")

    def check_impairments(self, link: LinkDecl, single: bool) -> None:
        """Valid values, and each direction impaired once."""
        if link.impair and len(link.endpoints) == 1:
            self.fail((*_path(link), "impair"), "a guest-only NIC has no other end to "
                      "impair traffic towards")
        taken: dict[str, Path] = {}
        for i, values in enumerate(link.impair):
            where: Path = (*_path(link), "impair") if single else (*_path(link), "impair", i)
            for key, value in values.items():  # one at a time, to name the wrong one
                if key != "direction":
                    with self.at(*where, key):
                        _check_impairment_value(key, value)
            with self.at(*where):
                _check_impairment(values)
            for direction in self.directions(link, values.get("direction", "both"), where):
                if direction in taken:
                    self.fail((*where, "direction"), f"{direction} is impaired twice (also at "
                              f"{format_path(taken[direction])}): one entry per direction")
                taken[direction] = where

    def directions(self, link: LinkDecl, direction: str, where: Path) -> list[str]:
        a, b = link.endpoints
        valid = [f"{a}->{b}", f"{b}->{a}"]
        if direction == "both":
            return valid
        parts = [p.strip() for p in direction.split("->")]
        if len(parts) != 2 or "->".join(parts) not in valid:
            self.fail((*where, "direction"), f"{direction!r} is not a direction of this "
                      f"link; valid: both, {valid[0]}, {valid[1]}")
        return ["->".join(parts)]

    def check_membership(self, links: Sequence[LinkDecl]) -> None:
        """Each switch has members; a node joins a switch once."""
        joined: dict[tuple[str, str], int] = {}
        for link in links:
            switch = next((e for e in link.endpoints if e in self.switches), None)
            if switch is None:
                continue
            node = next(e for e in link.endpoints if e != switch)
            if (node, switch) in joined:
                self.fail((*_path(link), "endpoints"), f"{node!r} is already on {switch!r} "
                          f"(links[{joined[(node, switch)]}])")
            joined[(node, switch)] = link.entry
        for name in self.switches:
            if not any(s == name for _, s in joined):
                self.fail(("switches", name), "no link connects anything to this switch: "
                          f"add one (- endpoints: [NODE, {name}]) or remove the switch")
            members = sum(1 for _, s in joined if s == name)
            subnet = self.switches[name].subnet
            if subnet is not None:
                with self.at("switches", name, "subnet"):
                    parse_subnet(subnet, hosts_needed=members)

    # -- addresses and names --------------------------------------------------------------

    def segment_subnet(self, link: LinkDecl, family: int) -> tuple[str | None, Path]:
        """The subnet a link's addresses come from, and where the file gives it."""
        key = "subnet" if family == 4 else "subnet6"
        switch = next((e for e in link.endpoints if e in self.switches), None)
        if switch is not None:
            return getattr(self.switches[switch], key), ("switches", switch, key)
        return getattr(link, key), (*_path(link), key)

    def check_addresses(self, links: Sequence[LinkDecl]) -> None:
        """Pinned addresses: in their subnet, host addresses, once per segment."""
        taken: dict[tuple[str, str], Path] = {}
        for link in links:
            for family, pins in ((4, link.ip), (6, link.ip6)):
                subnet, subnet_at = self.segment_subnet(link, family)
                switch = next((e for e in link.endpoints if e in self.switches), None)
                segment = switch or f"links[{link.entry}]"
                for name, text in pins.items():
                    where = (*_path(link), "ip" if family == 4 else "ip6", name)
                    address = self.pinned(where, text, subnet, subnet_at, family,
                                          stub=len(link.endpoints) == 1)
                    if (segment, address) in taken:
                        self.fail(where, f"{address} is also pinned at "
                                  f"{format_path(taken[(segment, address)])}, on the same "
                                  "segment: give each end its own address")
                    taken[(segment, address)] = where

    def pinned(self, where: Path, text: str, subnet: str | None, subnet_at: Path,
               family: int, stub: bool) -> str:
        address, _, prefix = text.strip().partition("/")
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address
        with self.at(*where):
            if family == 4:
                ip = parse_ip(address)
                check_assignable(ip)
            else:
                ip = parse_ip6(address)
                check_assignable6(ip)
        if stub:
            with self.at(*where):
                _check_stub_address(ip, prefix)
            return str(ip)
        if subnet is None:
            self.fail(where, f"{ip} is pinned, but {format_path(subnet_at)} is not given (it is "
                      "chosen automatically): give the subnet it belongs to there, or leave the "
                      "address out")
        assert subnet is not None
        net = _network(subnet)
        reserved = {net.network_address}  # IPv6: the Subnet-Router anycast address
        if net.version == 4 and net.prefixlen < 31:
            reserved.add(net.broadcast_address)
        if ip not in net or ip in reserved:
            last = net[-2] if net.version == 4 else net[-1]
            self.fail(where, f"{ip} is not a host address of {net} ({format_path(subnet_at)}):"
                      f" pick one in {net[1]}-{last}")
        if prefix and prefix != str(net.prefixlen):
            self.fail(where, f"/{prefix} does not match the subnet {net}: write {ip} alone, or "
                      f"{ip}/{net.prefixlen}")
        return str(ip)

    def check_interfaces(self, links: Sequence[LinkDecl]) -> None:
        """Interface names the kernel accepts, each given once per node."""
        taken: dict[tuple[str, str], Path] = {}
        for link in links:
            for name, ifname in link.iface.items():
                where = (*_path(link), "iface", name)
                with self.at(*where):
                    check_ifname(ifname)
                if (name, ifname) in taken:
                    self.fail(where, f"{name!r} already has an interface {ifname!r} (at "
                              f"{format_path(taken[(name, ifname)])}): give each its own name")
                taken[(name, ifname)] = where

    def check_overlaps(self, links: Sequence[LinkDecl]) -> None:
        """Explicit subnets that meet in one node (or the host) must not overlap: that
        node could not tell which interface an address is behind."""
        for family in (4, 6):
            key = "subnet" if family == 4 else "subnet6"
            segments: list[_Segment] = []
            for name, switch in self.switches.items():
                members = {e for link in links if name in link.endpoints
                           for e in link.endpoints if e != name}
                if getattr(switch, key):
                    segments.append(_Segment(("switches", name, key),
                                             _network(getattr(switch, key)), members))
            for link in links:
                if getattr(link, key) and len(link.endpoints) == 2:
                    segments.append(_Segment((*_path(link), key), _network(getattr(link, key)),
                                             set(link.endpoints)))
            for node in self.nodes.values():
                if node.nat is not None and getattr(node.nat, key):
                    segments.append(_Segment(("nodes", node.name, "nat", key),
                                             _network(getattr(node.nat, key)),
                                             {node.name, HOST}))
            for i, seg in enumerate(segments):
                for other in segments[:i]:
                    common = seg.members & other.members
                    if common and _overlap(seg.net, other.net):
                        self.fail(seg.path, f"{seg.net} overlaps {other.net} "
                                  f"({format_path(other.path)}), and both reach "
                                  f"{sorted(common)[0]!r}, which could not tell them apart: "
                                  "pick disjoint subnets, or leave one out")

    # -- expectations ---------------------------------------------------------------------

    def expectations(self, entries: Sequence[Mapping[str, Any]],
                     links: Sequence[LinkDecl]) -> tuple[Expect, ...]:
        out: list[Expect] = []
        decided: dict[tuple[str, str, str, int | None, int], Expect] = {}
        host_linked = any(HOST in link.endpoints for link in links) or any(
            n.nat is not None for n in self.nodes.values())
        for index, entry in enumerate(entries):
            where: Path = ("expect", index)
            ends = {}
            for side in ("from", "to"):
                names = entry[side] if isinstance(entry[side], list) else [entry[side]]
                for i, name in enumerate(names):
                    at = (*where, side, i) if isinstance(entry[side], list) else (*where, side)
                    if name == HOST and not host_linked:
                        self.fail(at, "the host has no link in this lab, so it has no "
                                  "address to probe or to probe from")
                    if name != HOST and name not in self.nodes:
                        what = f"{name!r} is a switch, which has no address;" \
                            if name in self.switches else f"no node named {name!r};"
                        self.fail(at, f"{what} known nodes: {', '.join(self.nodes)}"
                                  f"{', host' if host_linked else ''}")
                ends[side] = names
            family = int(entry.get("family", 4))
            if family == 6:
                self.need_ipv6((*where, "family"))
            proto = "tcp" if "tcp" in entry else "udp" if "udp" in entry else "icmp"
            port = entry.get(proto) if proto != "icmp" else None
            cells = [Expect(index, a, b, bool(entry.get("reach", True)), proto, port, family)
                     for a in ends["from"] for b in ends["to"] if a != b]
            if not cells:
                self.fail(where, "every pair here is a node with itself: nothing to probe")
            for cell in cells:
                pair = (cell.src, cell.dst, cell.proto, cell.port, cell.family)
                earlier = decided.get(pair)
                if earlier is not None and earlier.reach != cell.reach:
                    self.fail(where, f"{cell.src} -> {cell.dst} ({cell.service}) is expected "
                              f"{'reachable' if cell.reach else 'unreachable'} here but "
                              f"{'reachable' if earlier.reach else 'unreachable'} at "
                              f"{earlier.place}")
                if earlier is None:
                    decided[pair] = cell
                    out.append(cell)
        return tuple(out)


def _path(link: LinkDecl) -> Path:
    return ("links", link.entry)


def _known_names(links: Sequence[Any], declared: Sequence[str]) -> list[str]:
    """Declared names in the order the links first mention them, then the others."""
    mentioned: list[str] = []
    for link in links:
        for name in link.get("endpoints", []) if isinstance(link, Mapping) else []:
            if name in declared and name not in mentioned:
                mentioned.append(name)
    return mentioned + [n for n in declared if n not in mentioned]


def _network(text: str) -> AnyNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


def _overlap(a: AnyNetwork, b: AnyNetwork) -> bool:
    return a.version == b.version and a.overlaps(b)


def _check_stub_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: str) -> None:
    """A guest-only NIC's address and prefix (24, or 64 for IPv6, unless given)."""
    if ip.version == 6:
        if prefix and not (prefix.isdigit() and 1 <= int(prefix) <= 128):
            raise LabFileError(f"invalid IPv6 prefix length {prefix!r}: expected 1 to 128")
        return
    net = ipaddress.IPv4Network(f"{ip}/{parse_prefixlen(prefix or 24)}", strict=False)
    if net.prefixlen <= 30 and ip in (net.network_address, net.broadcast_address):
        raise LabFileError(f"{ip} is the {'network' if ip == net.network_address else 'broadcast'}"
                           f" address of {net}: pick a host address in {net[1]}-{net[-2]}")


def _check_impairment_value(key: str, value: Any) -> None:
    """One value in its unit's range (the schema checked its shape)."""
    from .. import units

    if key in ("delay", "jitter"):
        units.parse_time(value, key)
    elif key == "rate":
        units.parse_rate(value, key)
    elif key != "distribution":
        units.parse_percent(value, key)


def _check_impairment(values: Mapping[str, Any]) -> None:
    """Values `Link.impair` accepts together (jitter needs a delay, ...)."""
    from ..kernel.impairment import Impairment

    Impairment.parse(**{k: v for k, v in values.items() if k != "direction"})


def check_clear_of_host_routes(spec: LabSpec) -> None:
    """Explicit subnets of links to the host must not collide with the host's routes
    (this reads the host's routing table, so it is not part of `parse`)."""
    from ..topology.addresses import host_networks

    places = [(f"links[{link.entry}].{key}", getattr(link, key)) for link in spec.host_links()
              for key in ("subnet", "subnet6") if getattr(link, key)]
    places += [(f"nodes.{n.name}.nat.{key}", getattr(n.nat, key)) for n in spec.nodes.values()
               if n.nat is not None for key in ("subnet", "subnet6") if getattr(n.nat, key)]
    if not places:
        return
    host = host_networks(ipv6=spec.ipv6)
    for place, subnet in places:
        try:
            check_clear_of_host(_network(subnet), host)
        except InvalidArgumentError as exc:
            raise LabFileError(str(exc), place, spec.file) from None
