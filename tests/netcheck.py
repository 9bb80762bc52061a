"""Independent views of a node's network, for checking what the fixtures built.

Every check here goes through tools that are not pytest-netns: busybox's
`ip`, `ping`, `nc` and `wget` run inside the node (in the container for a
container node, in the namespace for a namespace node), and iproute2 on the
host, entering the namespace with `nsenter`. A bug in the library's netlink
code cannot hide behind itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

from pytest_netns.nodes.base import Node


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout


def iproute_json(netns: str | None, *args: str) -> list[dict[str, Any]]:
    """`ip -j ...` from iproute2, entered into `netns` with nsenter (None: the host)."""
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    out = run([*prefix, "ip", "-j", *args])
    return json.loads(out) if out.strip() else []


def busybox(node: Node, *argv: str) -> tuple[int, str]:
    """Run a busybox applet inside the node (the node's own busybox for containers)."""
    binary = "/bin/busybox" if node.container is not None else "busybox"
    return node.exec([binary, *argv])


def links_seen_inside(node: Node) -> dict[str, list[str]]:
    """{ifname: [addr/prefix, ...]} as busybox `ip -o addr` reports it from inside."""
    code, out = busybox(node, "ip", "-o", "-4", "addr")
    assert code == 0, out
    code2, links = busybox(node, "ip", "-o", "link")
    assert code2 == 0, links
    seen: dict[str, list[str]] = {}
    for line in links.splitlines():
        m = re.match(r"\d+: ([^:@]+)", line)
        if m:
            seen.setdefault(m.group(1), [])
    for line in out.splitlines():
        m = re.match(r"\d+: (\S+)\s+inet (\S+)", line)
        if m:
            seen.setdefault(m.group(1), []).append(m.group(2))
    return seen


def routes_seen_inside(node: Node, family: int = 4) -> list[str]:
    code, out = busybox(node, "ip", f"-{family}", "route")
    assert code == 0, out
    return [line.strip() for line in out.splitlines() if line.strip()]


def addresses6_seen_inside(node: Node) -> dict[str, list[str]]:
    """{ifname: ["addr/prefix flags...", ...]} of IPv6 addresses as busybox `ip` shows them."""
    code, out = busybox(node, "ip", "-o", "-6", "addr")
    assert code == 0, out
    seen: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"\d+: (\S+)\s+inet6 (\S+) (.*)", line)
        if m:
            seen.setdefault(m.group(1), []).append(f"{m.group(2)} {m.group(3).strip()}")
    return seen


def sysctl_inside(node: Node, name: str) -> str:
    """A sysctl of the node's network namespace, read by busybox inside the node."""
    code, out = busybox(node, "cat", "/proc/sys/" + name.replace(".", "/"))
    assert code == 0, out
    return out.strip()


def pings(node: Node, ip: str) -> bool:
    """busybox ping inside the node (an IPv6 address or `-6` name gets ICMPv6)."""
    code, _ = busybox(node, "ping", *(["-6"] if ":" in ip else []), "-c", "1", "-W", "2", ip)
    return code == 0


def host_pings(ip: str) -> bool:
    done = subprocess.run(["busybox", "ping", *(["-6"] if ":" in ip else []), "-c", "1",
                           "-W", "2", ip], capture_output=True, timeout=10, check=False)
    return done.returncode == 0


HOST_FIREWALL_LOCK = "/run/pytest-netns/test-host-firewall.lock"


@contextlib.contextmanager
def host_firewall_lock(exclusive: bool = False) -> Iterator[None]:
    """Order tests that compare the host's firewall against those that change it.

    Under xdist, a test that opts into the real uplink (and so adds host rules
    for a while) must not overlap one that checks the host is left alone:
    comparers share the lock, changers take it alone.
    """
    os.makedirs(os.path.dirname(HOST_FIREWALL_LOCK), exist_ok=True)
    with open(HOST_FIREWALL_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def host_firewall() -> str:
    """The host's rulesets, counters stripped, to compare before and after."""
    out = ""
    for argv in (["iptables-save"], ["nft", "list", "ruleset"]):
        try:
            out += run(argv)
        except (OSError, subprocess.CalledProcessError):
            continue
    out = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
    out = re.sub(r"\[\d+:\d+\]", "", out)
    return re.sub(r"counter packets \d+ bytes \d+", "counter", out)


def forwarding_sysctls() -> dict[str, str]:
    values = {}
    for name in ("net/ipv4/ip_forward", "net/ipv4/conf/all/forwarding"):
        with open("/proc/sys/" + name) as f:
            values[name] = f.read().strip()
    return values


def netns_identity(netns: str) -> tuple[int, int]:
    """(st_dev, st_ino) of a namespace file: it still names the namespace after its
    /run/netns entry is gone, for as long as any process keeps it alive."""
    st = os.stat(netns)
    return st.st_dev, st.st_ino


def processes_in(netns: str | tuple[int, int]) -> dict[int, str]:
    """{pid: command line} of every process whose network namespace is `netns`
    (a namespace file, or its `netns_identity`).

    Read straight from /proc (the namespace's inode against each process's
    /proc/PID/ns/net), not through the library's process tracking.
    """
    wanted = netns_identity(netns) if isinstance(netns, str) else netns
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
            if (st.st_dev, st.st_ino) != wanted:
                continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError):  # gone, or hidden from us (EACCES on /proc/1)
            continue
    return found


def running(netns: str | tuple[int, int], command: str) -> list[int]:
    """Processes in the namespace whose command line is exactly `command`.

    Exact, so that the shell that started a command (whose -c argument
    contains it) is not mistaken for the command itself.
    """
    return [pid for pid, line in processes_in(netns).items() if line == command]
