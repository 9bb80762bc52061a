"""Validating addresses, subnets and interface names, before anything is created.

Every check raises an `InvalidArgumentError` subclass whose message names
the bad value and what would be valid, so bad input changes nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from ..errors import (
    InterfaceNameError,
    InvalidAddressError,
    SubnetOverlapError,
    SubnetTooSmallError,
)
from .spec import Network

IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
# Names the kernel refuses, or that exist in every namespace already.
_RESERVED_IFNAMES = {
    "lo": "it is the loopback interface every namespace already has",
    "all": "the kernel reserves it (/proc/sys/net/ipv4/conf/all)",
    "default": "the kernel reserves it (/proc/sys/net/ipv4/conf/default)",
}


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
    from ..kernel.rtnl import host_prefixes

    return [ipaddress.IPv4Network(f"{addr}/{plen}", strict=False)
            for addr, plen in host_prefixes()]


def check_clear_of_host(net: Network, host: Iterable[Network] | None = None) -> None:
    """SubnetOverlapError if `net` collides with one of the host's routes."""
    for other in host if host is not None else host_networks():
        if net.overlaps(other) and not other.is_loopback:
            raise SubnetOverlapError(
                f"subnet {net} overlaps the host's route {other}: pick a subnet the host does "
                "not use, or leave it out and pytest-netns will choose a free one"
            )
