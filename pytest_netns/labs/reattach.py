"""A built topology written down, and taken up again by another process.

`pytest-netns up` builds a lab and exits; every later command (`exec`,
`inspect`, `check`, `capture`, `impair`, ...) is a new process. What a
topology is made of outlives the process that built it: namespaces pinned
under /run/netns, containers, and links with the names and addresses the
build gave them. What does not outlive it (the thread inside each
namespace, its netlink socket, open descriptors) is made again.
`snapshot` writes the first kind down as plain JSON data; `restore`
builds a `Topology` over it again, with the same nodes, segments and link
objects, so probes, captures, reports and faults work on it unchanged.

A restored topology is kept: the process that restored it never tears it
down (its owner removes it with a sweep of the lab's session).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from ..errors import ContainerError, LabStateError, NetnsError
from ..kernel.netns import Netns
from ..nodes.base import Interface, Node
from ..nodes.hosts import LOCALHOST
from ..ownership import Session
from ..topology.links import End, GuestNic, HostLink, Link, NatUplink, NodeLink, SwitchPort
from ..topology.segments import Member, Segment
from ..topology.spec import Role, SegmentKind
from ..topology.topology import Topology

_LINK_CLASSES: dict[str, type[Link]] = {
    cls.__name__: cls for cls in (NodeLink, SwitchPort, HostLink, NatUplink, GuestNic)
}
_ADDRESSES = (ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Address,
              ipaddress.IPv6Address)


def plain(value: Any) -> Any:
    """Dataclasses, named tuples, enums and addresses as JSON data."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, _ADDRESSES):
        return str(value)
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def _jsonable(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def snapshot(topo: Topology) -> dict[str, Any]:
    """What another process needs to take `topo` up again, as JSON data."""
    nodes = []
    for name, node in topo.nodes.items():
        nodes.append({
            "name": name, "role": topo.roles[name].value, "kind": node.kind,
            "netns": node.netns, "owned": node.owned,
            "container": node.container.id if node.container is not None else None,
            "interfaces": plain(node.interfaces), "routes": plain(node.routes),
            "environment": dict(getattr(node, "environment", {})),
        })
    links = []
    for link in topo.links:
        state = {k: v for k, v in vars(link).items() if k != "ends" and _jsonable(v)}
        links.append({"class": type(link).__name__, "ends": plain(link.ends), "state": state})
    return {
        "label": topo.label, "session": topo.session.id, "uid": topo.uid,
        "build_seconds": topo.build_seconds, "nodes": nodes,
        "segments": [plain(seg) for seg in topo.segments.values()], "links": links,
        "host_interfaces": plain(topo.host_interfaces),
    }


def restore(data: dict[str, Any]) -> Topology:
    """A kept `Topology` over what `snapshot` wrote down; LabStateError if part is gone."""
    topo = Topology(data["label"], Session(data["session"]), reserved=())
    topo.kept = True
    topo.build_seconds = float(data.get("build_seconds") or 0.0)
    try:
        for record in data["nodes"]:
            node = _node(record, data["label"])
            node.interfaces = [Interface(**i) for i in record["interfaces"]]
            node.routes = [(str(dst), via) for dst, via in record["routes"]]
            topo.add_node(node, Role(record["role"]))
    except BaseException:
        for node in topo.nodes.values():
            node.release()
        raise
    for seg in data["segments"]:
        topo.segments[seg["name"]] = _segment(seg)
    for record in data["links"]:
        topo.add_link(_link(record))
    for iface in data["host_interfaces"]:
        topo.add_host_interface(Interface(**iface))
    return topo


def _node(record: dict[str, Any], label: str) -> Node:
    name = record["name"]
    if record["container"] is not None:
        return _container(name, record["container"], bool(record["owned"]), label)
    from ..nodes.namespace import NamespaceNode

    try:
        handle = Netns.entering(record["netns"], f"{label}/{name}")
    except NetnsError:
        raise LabStateError(
            f"node {name!r} of {label} is gone: its namespace {record['netns']} no longer "
            "exists (removed by hand, or by a reboot); `pytest-netns down` removes the rest"
        ) from None
    node = NamespaceNode(name, handle, owned=bool(record["owned"]),
                         environment=record.get("environment"))
    node.update_names(_as_it_is)  # its hosts file stays as the build wrote it
    return node


def _as_it_is(current: str | None) -> str:
    return current or LOCALHOST


def _container(name: str, ident: str, owned: bool, label: str) -> Node:
    import docker.errors

    from ..nodes.container import ContainerNode
    from ..nodes.engine import docker_client

    try:
        ctr = docker_client().containers.get(ident)
    except docker.errors.NotFound:
        raise LabStateError(
            f"node {name!r} of {label} is gone: container {ident[:12]} no longer exists; "
            "`pytest-netns down` removes the rest"
        ) from None
    if ctr.status != "running":
        raise ContainerError(
            f"node {name!r} of {label} is container {ctr.name} ({ident[:12]}), which is "
            f"{ctr.status}: start it again (docker start {ctr.name}), or take the lab down"
        )
    return ContainerNode(name, ctr, owned)


def _segment(data: dict[str, Any]) -> Segment:
    values: dict[str, Any] = {}
    for f in fields(Segment):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "kind":
            value = SegmentKind(value)
        elif f.name.startswith("subnet") and value is not None:
            value = ipaddress.ip_network(value)
        elif f.name == "members":
            value = tuple(Member(**m) for m in value)
        values[f.name] = value
    return Segment(**values)


def _link(record: dict[str, Any]) -> Link:
    cls = _LINK_CLASSES[record["class"]]
    state = record["state"]
    ends = tuple(End(**e) for e in record["ends"])
    segment, prefixlen = state["segment"], state["prefixlen"]
    link: Link
    if cls is SwitchPort:
        link = SwitchPort(segment, prefixlen, ends[0], ends[1], state["bridge"])
    elif cls is NatUplink:
        link = NatUplink(segment, prefixlen, ends, state["subnet"], state["real_uplink"])
    elif cls is GuestNic:
        link = GuestNic(segment, prefixlen, ends[0], state["wanted"])
    else:
        link = cls(segment, prefixlen, ends)
    for key, value in state.items():  # what the build learned (chosen kind, NAT tool, ...)
        setattr(link, key, value)
    return link
