"""Per-namespace sysctls (net.ipv4.ip_forward, net.ipv6.conf.all.disable_ipv6, ...).

/proc/sys/net resolves against the network namespace of the thread that
opens it, so calling these on a namespace's thread reads and changes only
that namespace, never the host's.
"""

from __future__ import annotations


def path_of(name: str) -> str:
    """The /proc/sys file of a sysctl named with dots, or with slashes (needed where a
    part, such as an interface name, may contain a dot: "net/ipv6/conf/eth0.5/accept_ra")."""
    return "/proc/sys/" + (name if "/" in name else name.replace(".", "/"))


def read(name: str) -> str:
    with open(path_of(name)) as f:
        return f.read().strip()


def write(name: str, value: str) -> None:
    with open(path_of(name), "w") as f:
        f.write(value)
