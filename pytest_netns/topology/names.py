"""Names: inside every node, the other nodes of its topology resolve by name.

Apps connect to `db:5432`, not to `10.64.0.2`. Each visible node (not
switches or parked stub peers) gets a hosts file that maps every node of
its topology, itself included, to the address it should use for it: the
address on a segment the two share, else the node's first one (a routed
path), for IPv4 and, on an IPv6 topology, IPv6. Extra names (`aliases=`)
resolve to the same addresses. How the file reaches the node is the node's
business (`Node.publish_names`): containers get it written into their own
/etc/hosts, namespace nodes a private file bind-mounted over /etc/hosts for
every process they start.

The lines sit between two markers that name the topology and its session,
so a container attached to several topologies, or attached again later,
keeps what it had outside them, a topology's lines are taken out again
when it closes, and a sweep can take out those of a session that died.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import InvalidTopologyError
from ..nodes.hosts import LOCALHOST, Edit
from .spec import NodeSpec

if TYPE_CHECKING:
    from ..nodes.base import Node
    from .topology import Topology


def check_names(nodes: Mapping[str, NodeSpec]) -> None:
    """InvalidTopologyError for a name or alias that two nodes would share.

    Host names are compared without regard to case, as resolvers do.
    """
    seen: dict[str, str] = {}
    for spec in nodes.values():
        if not spec.role.visible:
            continue
        for name in (spec.name, *spec.aliases):
            owner = seen.get(name.lower())
            if owner is not None:
                what = "name" if name == spec.name else "alias"
                raise InvalidTopologyError(
                    f"{what} {name!r} of node {spec.name!r} is already a name of node "
                    f"{owner!r} in this topology: every name and alias must resolve to one "
                    "node; pick another"
                )
            seen[name.lower()] = spec.name


def entries(topo: Topology, node: Node) -> list[tuple[str, str]]:
    """(address, names) for every visible node of `topo`, as `node` should reach them."""
    out = []
    for name in topo.members():
        other = topo.nodes[name]
        names = " ".join((name, *topo.aliases_of(name)))
        for family in (4, 6):
            address = other.address_for(node, family)
            if address:
                out.append((address, names))
    return out


def marker(topo: Topology, end: bool = False) -> str:
    """A block's first (or last) line: the session's alias names its owner for sweeps."""
    return f"# {topo.session.alias} {topo.uid} {'end' if end else 'begin'} ({topo.label})"


def block(topo: Topology, node: Node) -> str:
    """The lines `node`'s hosts file gets for `topo`, between their markers."""
    lines = [marker(topo), *(f"{address}\t{names}" for address, names in entries(topo, node)),
             marker(topo, end=True)]
    return "\n".join(lines) + "\n"


def merged(current: str, topo: Topology, new_block: str | None) -> str:
    """`current` hosts text with `topo`'s block replaced by `new_block` (None: removed)."""
    begin, end = marker(topo), marker(topo, end=True)
    kept: list[str] = []
    inside = False
    for line in current.splitlines():
        if line == begin:
            inside = True
        elif line == end:
            inside = False
        elif not inside:
            kept.append(line)
    text = "\n".join(kept).rstrip("\n")
    text = f"{text}\n" if text else ""
    return text + (new_block or "")


def edit_for(topo: Topology, node: Node) -> Edit:
    """The edit that gives `node`'s hosts file `topo`'s names (computed when applied:
    a namespace node's file is written only once the node starts a process)."""
    return lambda current: merged(LOCALHOST if current is None else current, topo,
                                  block(topo, node))


def edit_removing(topo: Topology) -> Edit:
    """The edit that takes `topo`'s names out of a hosts file again."""
    return lambda current: merged(current or "", topo, None)
