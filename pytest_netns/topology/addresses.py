"""Validating addresses, subnets and interface names, before anything is created.

Every check raises an `InvalidArgumentError` subclass whose message names
the bad value and what would be valid, so bad input changes nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable

from ..errors import (
    HostnameError,
    InterfaceNameError,
    InvalidAddressError,
    IPv6UnavailableError,
    SubnetOverlapError,
    SubnetTooSmallError,
)
from .spec import AnyNetwork, Network, Network6

IFNAMSIZ = 15
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
# Names the kernel refuses, or that exist in every namespace already.
_RESERVED_IFNAMES = {
    "lo": "it is the loopback interface every namespace already has",
    "all": "the kernel reserves it (/proc/sys/net/ipv4/conf/all)",
    "default": "the kernel reserves it (/proc/sys/net/ipv4/conf/default)",
}


_WRONG_FAMILY = {
    4: "is an IPv6 address where an IPv4 one is expected: give IPv6 addresses and subnets "
       "with the *6 keywords (ip6=, subnet6=, ...) on a topology made with ipv6=True",
    6: "is an IPv4 address where an IPv6 one is expected: give IPv4 addresses with the "
       "keywords without 6 (ip=, subnet=, ...), and an IPv6 one such as 'fd00:1::2' here",
}


def _other_family(text: str, version: int) -> bool:
    """True when `text` parses as an address or subnet of the other IP version."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False).version != version
    except ValueError:
        return False


def parse_ip(value: object, what: str = "address") -> ipaddress.IPv4Address:
    """An IPv4 address, or InvalidAddressError naming the value."""
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except (ipaddress.AddressValueError, ValueError):
        if _other_family(str(value), 4):
            raise InvalidAddressError(f"{what} {value!r} {_WRONG_FAMILY[4]}") from None
        raise InvalidAddressError(
            f"invalid {what} {value!r}: expected a dotted-quad IPv4 address such as '10.0.0.2'"
        ) from None


def parse_ip6(value: object, what: str = "IPv6 address") -> ipaddress.IPv6Address:
    """An IPv6 address, or InvalidAddressError naming the value."""
    text = str(value).strip()
    try:
        return ipaddress.IPv6Address(text.split("/")[0] if "/" in text else text)
    except (ipaddress.AddressValueError, ValueError):
        if _other_family(text, 6):
            raise InvalidAddressError(f"{what} {value!r} {_WRONG_FAMILY[6]}") from None
        raise InvalidAddressError(
            f"invalid {what} {value!r}: expected an IPv6 address such as 'fd00:1::2'"
        ) from None


def parse_subnet(value: object, hosts_needed: int = 2) -> Network:
    """An IPv4 subnet with room for `hosts_needed` hosts, or a clear error."""
    text = str(value).strip()
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        if _other_family(text, 4):
            raise InvalidAddressError(f"subnet {value!r} {_WRONG_FAMILY[4]}") from None
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


def usable_hosts6(net: Network6) -> int:
    """Addresses an IPv6 subnet can give its members: all but the Subnet-Router anycast
    address (the all-zeros one), except on /127 and /128 (RFC 6164)."""
    return net.num_addresses - 1 if net.prefixlen < 127 else net.num_addresses


def parse_subnet6(value: object, hosts_needed: int = 2) -> Network6:
    """An IPv6 subnet with room for `hosts_needed` hosts, or a clear error."""
    text = str(value).strip()
    try:
        net = ipaddress.IPv6Network(text, strict=False)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
        if _other_family(text, 6):
            raise InvalidAddressError(f"subnet6 {value!r} {_WRONG_FAMILY[6]}") from None
        raise InvalidAddressError(
            f"invalid IPv6 subnet {value!r}: expected CIDR notation such as 'fd00:1::/64' "
            "(an IPv6 address, '/', and a prefix length from 0 to 128)"
        ) from None
    if "/" not in text:
        raise InvalidAddressError(
            f"invalid IPv6 subnet {value!r}: a prefix length is missing; write e.g. '{text}/64'"
        )
    usable = usable_hosts6(net)
    if usable < hosts_needed:
        longest = 128 - max(hosts_needed.bit_length(), 1)
        raise SubnetTooSmallError(
            f"IPv6 subnet {text!r} has room for {usable} host address(es), but this topology "
            f"needs {hosts_needed}: use a prefix length of /{longest} or shorter (/64 is usual)"
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


# IPv6 space that cannot be a segment's subnet or an interface's global address.
_NOT_UNICAST6 = tuple(
    (ipaddress.IPv6Network(n), what)
    for n, what in (("::/128", "the unspecified address"), ("::1/128", "loopback"),
                    ("::ffff:0:0/96", "IPv4-mapped"), ("fe80::/10", "link-local"),
                    ("ff00::/8", "multicast"))
)


def check_assignable6(addr: ipaddress.IPv6Address, what: str = "IPv6 address") -> None:
    """InvalidAddressError unless `addr` is a global or unique-local unicast address."""
    for special, name in _NOT_UNICAST6:
        if addr in special:
            raise InvalidAddressError(
                f"{what} {addr} is in {special} ({name}), which cannot be given to an "
                "interface as its address: use a unique-local one such as 'fd00:1::2'"
            )


def check_segment_subnet6(net: Network6, touches_host: bool) -> None:
    """InvalidAddressError for an IPv6 link or switch subnet nobody can use safely (the
    IPv6 twin of `check_segment_subnet`)."""
    for special, name in _NOT_UNICAST6:
        if net.overlaps(special):
            raise InvalidAddressError(
                f"IPv6 subnet {net} overlaps {special} ({name}): pick a unique-local subnet "
                "such as 'fd00:1::/64', or leave it out and pytest-netns will choose one"
            )
    if touches_host and net.is_global:
        raise InvalidAddressError(
            f"IPv6 subnet {net} is public address space, and a link to the host would route "
            "the host's traffic for it into the topology: use unique-local space (fc00::/7), "
            "or leave it out and pytest-netns will choose a free /64"
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


def host_networks(ipv6: bool = False) -> list[AnyNetwork]:
    """Every IPv4 prefix (and with `ipv6` every IPv6 one too) that the host's root
    namespace routes or owns, default routes excluded (they overlap everything).

    Both families come from one dump of each kind, so IPv6 costs no extra round trip.
    """
    import socket

    from ..kernel.rtnl import host_prefixes

    family = socket.AF_UNSPEC if ipv6 else socket.AF_INET
    return [_network(addr, plen) for addr, plen in host_prefixes(family)]


@functools.lru_cache(maxsize=4096)
def _network(address: str, prefixlen: int) -> AnyNetwork:
    """A prefix the host routes, parsed once: the same few come back on every build."""
    return ipaddress.ip_network((address, prefixlen), strict=False)


def check_clear_of_host(net: AnyNetwork, host: Iterable[AnyNetwork] | None = None) -> None:
    """SubnetOverlapError if `net` collides with one of the host's routes."""
    for other in host if host is not None else host_networks(net.version == 6):
        if net.overlaps(other) and not other.is_loopback:
            raise SubnetOverlapError(
                f"subnet {net} overlaps the host's route {other}: pick a subnet the host does "
                "not use, or leave it out and pytest-netns will choose a free one"
            )


IPV6_SYSCTLS = "/proc/sys/net/ipv6"


def require_ipv6(sysctls: str = IPV6_SYSCTLS) -> None:
    """IPv6UnavailableError unless this kernel has IPv6 (its sysctl tree exists)."""
    import os

    if not os.path.isdir(sysctls):
        raise IPv6UnavailableError(
            f"ipv6=True was asked for, but this host's kernel has IPv6 disabled ({sysctls} "
            "does not exist: booted with ipv6.disable=1, or built without IPv6); enable it "
            "(remove ipv6.disable=1 from the kernel command line), or leave ipv6 off"
        )


# A label: letters, digits, '-' and '_' (Docker's generated container names
# use '_', and /etc/hosts lookups accept it), neither first nor last a '-'.
_LABEL_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def check_hostname(name: object, what: str = "node name") -> str:
    """A name other nodes can resolve through /etc/hosts, or HostnameError naming it.

    RFC 1123 host names (dot-separated labels of letters, digits and '-', at
    most 63 characters each, 253 in all), plus '_', which Docker puts in the
    names it generates for containers. An all-numeric name would read as an
    address, so it is refused too.
    """
    if not isinstance(name, str) or not name:
        raise HostnameError(f"invalid {what} {name!r}: expected a non-empty string")
    hint = ("use letters, digits, '-' and '_' in dot-separated labels of at most 63 "
            "characters, not starting or ending with '-', such as 'db' or 'web-1'")
    if len(name) > 253:
        raise HostnameError(f"{what} {name[:40]!r}... is {len(name)} characters long; a "
                            "host name has at most 253")
    if not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise HostnameError(f"{what} {name!r} is not a valid host name: {hint}")
    if name.replace(".", "").isdigit():
        raise HostnameError(f"{what} {name!r} is all digits, so it would read as an address: "
                            "use a name with a letter in it")
    return name
