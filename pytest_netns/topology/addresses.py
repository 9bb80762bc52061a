"""Validating addresses and names, and allocating subnets nobody else uses.

Subnets are reserved in a file shared by every pytest-netns process on the
host (xdist workers included) under an exclusive lock, and each reservation
is checked against the host's routes at allocation time, so two topologies
never collide with each other or with the host's own networks.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .errors import (
    InterfaceNameError,
    InvalidAddressError,
    SubnetExhaustedError,
    SubnetOverlapError,
    SubnetTooSmallError,
)
from .session import STATE_DIR, process_alive

IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
# Names the kernel refuses, or that exist in every namespace already.
_RESERVED_IFNAMES = {
    "lo": "it is the loopback interface every namespace already has",
    "all": "the kernel reserves it (/proc/sys/net/ipv4/conf/all)",
    "default": "the kernel reserves it (/proc/sys/net/ipv4/conf/default)",
}
RESERVATIONS = os.path.join(STATE_DIR, "subnets.json")
# Pool for automatic subnets: 10.64.0.0/10 is far from Docker's defaults
# (172.17-31/16, 192.168/16) and from typical VPN and cloud ranges.
DEFAULT_POOL = ipaddress.IPv4Network("10.64.0.0/10")

Network = ipaddress.IPv4Network


def parse_ip(value: object, what: str = "address") -> ipaddress.IPv4Address:
    """An IPv4 address, or InvalidAddressError naming the value."""
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except (ipaddress.AddressValueError, ValueError):
        raise InvalidAddressError(
            f"invalid {what} {value!r}: expected a dotted-quad IPv4 address such as '10.0.0.2'"
        ) from None


def parse_subnet(value: object, hosts_needed: int = 2) -> Network:
    """An IPv4 subnet with room for `hosts_needed` hosts, or a clear error."""
    text = str(value).strip()
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        raise InvalidAddressError(
            f"invalid subnet {value!r}: expected CIDR notation such as '10.0.0.0/24' "
            "(an IPv4 address, '/', and a prefix length from 0 to 30)"
        ) from None
    if "/" not in text:
        raise InvalidAddressError(
            f"invalid subnet {value!r}: a prefix length is missing; write e.g. '{text}/24'"
        )
    usable = max(net.num_addresses - 2, 0)
    if usable < hosts_needed:
        longest = 32 - max((hosts_needed + 1).bit_length(), 2)
        raise SubnetTooSmallError(
            f"subnet {text!r} has room for {usable} host address(es), but this topology "
            f"needs {hosts_needed}: use a prefix length of /{longest} or shorter"
        )
    return net


def parse_prefixlen(value: object) -> int:
    try:
        n = int(str(value))
    except ValueError:
        n = -1
    if not 0 < n <= 32:
        raise InvalidAddressError(f"invalid prefix length {value!r}: expected 1 to 32")
    return n


def check_ifname(name: object) -> str:
    """A name the kernel accepts for a link, or InterfaceNameError."""
    if not isinstance(name, str) or not name:
        raise InterfaceNameError(f"invalid interface name {name!r}: expected a non-empty string")
    if len(name) > IFNAMSIZ:
        raise InterfaceNameError(
            f"interface name {name!r} is {len(name)} characters long; the kernel allows "
            f"at most {IFNAMSIZ}"
        )
    if not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise InterfaceNameError(
            f"invalid interface name {name!r}: use letters, digits, '-', '_' and '.' only "
            "(no spaces, '/' or ':')"
        )
    if name in _RESERVED_IFNAMES:
        raise InterfaceNameError(
            f"interface name {name!r} cannot be created: {_RESERVED_IFNAMES[name]}; "
            "pick another name, such as 'eth1'"
        )
    return name


# Special-purpose IPv4 space that cannot be put on an interface and used.
_NOT_UNICAST = tuple(
    ipaddress.IPv4Network(n)
    for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")
)


def check_assignable(addr: ipaddress.IPv4Address, what: str = "address") -> None:
    """InvalidAddressError unless `addr` is a unicast address an interface can use."""
    for special in _NOT_UNICAST:
        if addr in special:
            raise InvalidAddressError(
                f"{what} {addr} is in {special} ({_special_name(special)}), which cannot be "
                "assigned to an interface: use a unicast address such as '10.0.0.2'"
            )


def check_segment_subnet(net: Network, touches_host: bool) -> None:
    """InvalidAddressError for a link or switch subnet nobody can use safely.

    Every segment subnet must stay clear of special-purpose space. One with
    an end in the host's root namespace also becomes a route there, so it
    must be non-public space: a public subnet would divert the host's own
    traffic to those addresses into the topology.
    """
    for special in _NOT_UNICAST:
        if net.overlaps(special):
            raise InvalidAddressError(
                f"subnet {net} overlaps {special} ({_special_name(special)}): pick a unicast "
                "subnet such as '10.0.0.0/24'"
            )
    if touches_host and net.is_global:
        raise InvalidAddressError(
            f"subnet {net} is public address space, and a link to the host would route the "
            "host's traffic for it into the topology: use private space (10.0.0.0/8, "
            "172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10), or leave it out and pytest-netns "
            "will choose a free one"
        )


def _special_name(net: Network) -> str:
    return {
        "0.0.0.0/8": "'this network'",
        "127.0.0.0/8": "loopback",
        "224.0.0.0/4": "multicast",
        "240.0.0.0/4": "reserved",
    }[str(net)]


def host_networks() -> list[Network]:
    """Every IPv4 prefix the host's root namespace routes or owns, default route excluded."""
    from .rtnl import ipv4_prefixes  # a raw dump: every build pays for this

    return [ipaddress.IPv4Network(f"{addr}/{plen}", strict=False) for addr, plen in ipv4_prefixes()]


def check_clear_of_host(net: Network, host: Iterable[Network] | None = None) -> None:
    """SubnetOverlapError if `net` collides with one of the host's routes."""
    for other in host if host is not None else host_networks():
        if net.overlaps(other) and not other.is_loopback:
            raise SubnetOverlapError(
                f"subnet {net} overlaps the host's route {other}: pick a subnet the host does "
                "not use, or leave it out and pytest-netns will choose a free one"
            )


@contextmanager
def _locked_reservations(
    freed: list[str] | None = None,
) -> Iterator[dict[str, dict[str, object]]]:
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(RESERVATIONS + ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                with open(RESERVATIONS) as f:
                    table: dict[str, dict[str, object]] = json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                table = {}
            # a reservation of a process that is gone is free again
            live = {k: v for k, v in table.items() if _alive(int(str(v.get("pid", 0))))}
            if freed is not None:
                freed += [f"{k} ({v.get('owner')}, pid {v.get('pid')})"
                          for k, v in table.items() if k not in live]
            table = live
            yield table
            tmp = RESERVATIONS + f".{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(table, f)
            os.replace(tmp, RESERVATIONS)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    # a zombie (killed, not yet reaped) holds nothing any more
    return process_alive(pid)


def release_dead() -> list[str]:
    """Free every reservation whose process is gone; describe each one freed."""
    freed: list[str] = []
    with _locked_reservations(freed):
        pass
    return freed


def reserve(
    count: int,
    owner: str,
    prefixlen: int = 24,
    explicit: Iterable[Network] = (),
    pool: Network = DEFAULT_POOL,
    avoid: Iterable[Network] = (),
) -> list[Network]:
    """Reserve `count` free subnets (plus the `explicit` ones) for `owner`.

    An explicit subnet that another live topology holds raises
    SubnetOverlapError; the automatic ones skip every reserved subnet, every
    host route, and `avoid` (the topology's own explicit subnets that need
    no reservation because they never reach the host).
    """
    explicit = list(explicit)
    host = host_networks()
    with _locked_reservations() as table:
        taken = [ipaddress.IPv4Network(k) for k in table]
        for net in explicit:
            for other in taken:
                if net.overlaps(other):
                    raise SubnetOverlapError(
                        f"subnet {net} overlaps {other}, which another live topology "
                        f"({table[str(other)].get('owner')}) holds: pick another subnet"
                    )
        chosen: list[Network] = []
        if count:
            blocked = taken + host + explicit + list(avoid)
            for cand in pool.subnets(new_prefix=prefixlen):
                if any(cand.overlaps(b) for b in blocked):
                    continue
                chosen.append(cand)
                blocked.append(cand)
                if len(chosen) == count:
                    break
            else:
                raise SubnetExhaustedError(
                    f"no free /{prefixlen} subnet left in {pool} ({len(taken)} reserved): "
                    "close topologies you no longer need, or run `pytest-netns cleanup`"
                )
        for net in chosen + explicit:
            table[str(net)] = {"pid": os.getpid(), "owner": owner}
        return chosen


def live_reservations() -> dict[Network, str]:
    """Subnets that live pytest-netns processes hold, with their owners (read-only)."""
    try:
        with open(RESERVATIONS) as f:  # replaced atomically, so no lock is needed to read
            table: dict[str, dict[str, object]] = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {ipaddress.IPv4Network(k): str(v.get("owner")) for k, v in table.items()
            if _alive(int(str(v.get("pid", 0))))}


def free_subnet_count(prefixlen: int = 24, pool: Network = DEFAULT_POOL) -> tuple[int, int]:
    """(free, total): how many /prefixlen subnets of the pool an allocation could take now."""
    blocked = [n for n in [*host_networks(), *live_reservations()] if n.overlaps(pool)]
    total = 2 ** (prefixlen - pool.prefixlen)
    free = sum(1 for cand in pool.subnets(new_prefix=prefixlen)
               if not any(cand.overlaps(b) for b in blocked))
    return free, total


def release(nets: Iterable[Network]) -> None:
    """Give reserved subnets back to the pool."""
    keys = [str(n) for n in nets]
    if not keys:
        return
    with _locked_reservations() as table:
        for key in keys:
            table.pop(key, None)
