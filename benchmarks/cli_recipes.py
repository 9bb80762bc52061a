"""The manual recipes of the article ("Advanced Docker networking"), as a user scripts them.

These are the "theirs" side of the comparisons: `ip link add ... type veth`,
`ip link set ... netns`, then `ip netns exec` to rename, address and bring
up the inside end, and `ip link del` / `ip netns del` to tear down. Every
name carries the benchmark's tag, so only our own objects are ever removed.
"""

from __future__ import annotations

import os
import subprocess

NETNS_DIR = "/run/netns"


def ip(*args: str) -> None:
    """One `ip` command; a failure raises with its stderr."""
    subprocess.run(["ip", *args], check=True, capture_output=True)


def host_only_link(tag: str, pid: int, n: int, subnet: str) -> None:
    """The article's host-only recipe against the running container whose init is `pid`.

    Like the article, the container's namespace is named for `ip netns` with a
    /run/netns symlink to /proc/<pid>/ns/net; the symlink is removed again.
    Setup and teardown are both part of the call.
    """
    ns = f"{tag}-c{n}"
    host_ip, node_ip, plen = _two_hosts(subnet)
    host_if, peer = f"{tag}h{n}", f"{tag}p{n}"
    link = os.path.join(NETNS_DIR, ns)
    os.makedirs(NETNS_DIR, exist_ok=True)
    os.symlink(f"/proc/{pid}/ns/net", link)
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", ns)
        ip("netns", "exec", ns, "ip", "link", "set", peer, "name", "eth1")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{node_ip}/{plen}", "dev", "eth1")
        ip("netns", "exec", ns, "ip", "link", "set", "eth1", "up")
        ip("addr", "add", f"{host_ip}/{plen}", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("link", "del", host_if)
    finally:
        os.unlink(link)


def namespace_pair(tag: str, n: int, subnet: str) -> None:
    """Two `ip netns add` namespaces on a bridge, set up and torn down.

    The article put its bridge in the root namespace; on a host running Docker
    (FORWARD DROP with br_netfilter) that pair cannot talk, so this working
    variant keeps the bridge in a third namespace, as pytest-netns does.
    """
    sw, a, b = f"{tag}-s{n}", f"{tag}-a{n}", f"{tag}-b{n}"
    names = [sw, a, b]
    ips = _two_hosts(subnet)
    try:
        for ns in names:
            ip("netns", "add", ns)
        ip("netns", "exec", sw, "ip", "link", "add", "br0", "type", "bridge")
        ip("netns", "exec", sw, "ip", "link", "set", "br0", "up")
        for i, ns in enumerate((a, b)):
            port, inner = f"{tag}s{i}", f"{tag}i{i}"
            ip("link", "add", port, "type", "veth", "peer", "name", inner)
            ip("link", "set", port, "netns", sw)
            ip("link", "set", inner, "netns", ns)
            ip("netns", "exec", sw, "ip", "link", "set", port, "master", "br0")
            ip("netns", "exec", sw, "ip", "link", "set", port, "up")
            ip("netns", "exec", ns, "ip", "link", "set", inner, "name", "eth1")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{ips[i]}/{ips[2]}", "dev", "eth1")
            ip("netns", "exec", ns, "ip", "link", "set", "eth1", "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _two_hosts(subnet: str) -> tuple[str, str, int]:
    """The first two host addresses of `subnet` (reserved by the caller) and its prefix."""
    import ipaddress

    net = ipaddress.IPv4Network(subnet)
    hosts = net.hosts()
    return str(next(hosts)), str(next(hosts)), net.prefixlen
