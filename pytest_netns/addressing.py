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
from .session import STATE_DIR

IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
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
            f"subnet {value!r} has room for {usable} host address(es), but this topology "
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
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        raise InterfaceNameError(
            f"invalid interface name {name!r}: use letters, digits, '-', '_' and '.' only "
            "(no spaces, '/' or ':')"
        )
    return name


def host_networks() -> list[Network]:
    """Every IPv4 prefix the host's root namespace routes or owns, default route excluded."""
    from pyroute2 import IPRoute  # pyroute2 is heavy-ish; only needed when allocating

    nets: list[Network] = []
    with IPRoute() as ip:
        for m in ip.route("dump", family=2):
            if m["dst_len"] == 0:
                continue
            dst = m.get_attr("RTA_DST")
            if dst:
                nets.append(ipaddress.IPv4Network(f"{dst}/{m['dst_len']}", strict=False))
        for a in ip.get_addr(family=2):
            nets.append(
                ipaddress.IPv4Network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False)
            )
    return nets


def check_clear_of_host(net: Network, host: Iterable[Network] | None = None) -> None:
    """SubnetOverlapError if `net` collides with one of the host's routes."""
    for other in host if host is not None else host_networks():
        if net.overlaps(other) and not other.is_loopback:
            raise SubnetOverlapError(
                f"subnet {net} overlaps the host's route {other}: pick a subnet the host does "
                "not use, or leave it out and pytest-netns will choose a free one"
            )


@contextmanager
def _locked_reservations() -> Iterator[dict[str, dict[str, object]]]:
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
            table = {k: v for k, v in table.items() if _alive(int(str(v.get("pid", 0))))}
            yield table
            tmp = RESERVATIONS + f".{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(table, f)
            os.replace(tmp, RESERVATIONS)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reserve(
    count: int,
    owner: str,
    prefixlen: int = 24,
    explicit: Iterable[Network] = (),
    pool: Network = DEFAULT_POOL,
) -> list[Network]:
    """Reserve `count` free subnets (plus the `explicit` ones) for `owner`.

    An explicit subnet that another live topology holds raises
    SubnetOverlapError; the automatic ones skip every reserved subnet and
    every host route.
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
            blocked = taken + host + explicit
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


def release(nets: Iterable[Network]) -> None:
    """Give reserved subnets back to the pool."""
    nets = [str(n) for n in nets]
    if not nets:
        return
    with _locked_reservations() as table:
        for key in nets:
            table.pop(key, None)
