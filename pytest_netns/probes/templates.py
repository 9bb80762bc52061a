"""Probe packets: built by scapy once, then copied and patched for each probe.

scapy takes about 0.45 ms to build an echo request and 0.2 ms to parse its
reply, more than the rest of a probe together (the kernel's round trip over
a veth and a bridge is about 0.1 ms). The packets of a probe differ only in
a few fields, so scapy builds each kind once (the template), and a probe
copies it and patches its identifier, sequence number, ports and checksum
with `struct`. An echo reply is checked against the same template (type,
identifier, sequence, payload); ICMP errors quoting our IPv4 probes are
still dissected by scapy. For IPv6 the kernel computes the checksums (an
ICMPv6 raw socket always does, a TCP one with IPV6_CHECKSUM), so the IPv6
templates are patched without one.

Importing scapy's inet layers takes 0.3-0.7 s, which would be the whole
cost of a short test's first probe. So the templates scapy built are kept
in the state directory, keyed by the scapy files that built them, and a
new process reads them from there (about 0.1 ms); scapy is imported only
when a packet needs parsing by it, or to build the templates on a machine
that has none yet (or after scapy changed).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import struct
import threading
from dataclasses import dataclass

from ..ownership import STATE_DIR
from .result import PAYLOAD

CACHE = os.path.join(STATE_DIR, "probe-templates.json")
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
_HEADER = struct.Struct("!BBHHH")  # ICMP echo: type, code, checksum, id, seq
_TCP_PORTS_SEQ = struct.Struct("!HHI")
_TCP_ACK_FLAGS = struct.Struct("!IxB")  # from the acknowledgement number to the flags


@dataclass(frozen=True)
class Templates:
    """The packets scapy built, zeroed: echo requests (both families), a TCP SYN header."""

    echo: bytes  # ICMP echo request: id 0, seq 0, checksum 0, then PAYLOAD
    syn: bytes  # TCP header: ports 0, seq 0, checksum 0, SYN, window 64240
    echo6: bytes  # ICMPv6 echo request: id 0, seq 0, checksum 0, then PAYLOAD

    @classmethod
    def build(cls) -> Templates:
        """Build them with scapy (imports its inet and inet6 layers)."""
        from scapy.layers.inet import ICMP, TCP
        from scapy.layers.inet6 import ICMPv6EchoRequest
        from scapy.packet import Raw

        echo = bytearray(bytes(ICMP(type=ICMP_ECHO_REQUEST, id=0, seq=0) / Raw(PAYLOAD)))
        echo[2:4] = b"\0\0"
        syn = bytes(TCP(sport=0, dport=0, flags="S", seq=0, window=64240, chksum=0))
        echo6 = bytes(ICMPv6EchoRequest(id=0, seq=0, cksum=0) / Raw(PAYLOAD))
        return cls(bytes(echo), syn, echo6)


def checksum(data: bytes | bytearray) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    """An ICMP echo request (the template) with this identifier and sequence number."""
    packet = bytearray(templates().echo)
    _HEADER.pack_into(packet, 0, ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    struct.pack_into("!H", packet, 2, checksum(packet))
    return bytes(packet)


def echo_request6(ident: int, seq: int) -> bytes:
    """An ICMPv6 echo request (the template) with this identifier and sequence number
    (checksum 0: the kernel fills it in)."""
    packet = bytearray(templates().echo6)
    _HEADER.pack_into(packet, 0, ICMP6_ECHO_REQUEST, 0, 0, ident, seq)
    return bytes(packet)


def echo_reply6(icmp6: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an ICMPv6 message (as an IPv6 raw socket hands it over)
    that replies to one of our echo requests; None for anything else (the kernel has
    checked the checksum)."""
    echo6 = templates().echo6
    if (len(icmp6) != len(echo6) or icmp6[0] != ICMP6_ECHO_REPLY or icmp6[1] != 0
            or icmp6[8:] != echo6[8:]):
        return None
    _, _, _, ident, seq = _HEADER.unpack_from(icmp6)
    return ident, seq


def echo_reply(packet: bytes, ihl: int) -> tuple[int, int] | None:
    """(identifier, sequence) of an IPv4 packet holding a reply to one of our echo
    requests (the template's payload, checksum right); None for anything else."""
    icmp = packet[ihl:]
    echo = templates().echo
    if (len(icmp) != len(echo) or icmp[0] != ICMP_ECHO_REPLY or icmp[1] != 0
            or icmp[8:] != echo[8:] or checksum(icmp) != 0):
        return None
    _, _, _, ident, seq = _HEADER.unpack_from(icmp)
    return ident, seq


def tcp_syn(src: str, dst: str, sport: int, dport: int, seq: int) -> bytes:
    """A TCP SYN segment (the template) with these ports and sequence number, its
    checksum over the IPv4 pseudo-header of src and dst."""
    import socket

    segment = bytearray(templates().syn)
    _TCP_PORTS_SEQ.pack_into(segment, 0, sport, dport, seq)
    struct.pack_into("!H", segment, 16, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(
        "!BBH", 0, socket.IPPROTO_TCP, len(segment))
    struct.pack_into("!H", segment, 16, checksum(pseudo + segment))
    return bytes(segment)


def tcp_syn6(sport: int, dport: int, seq: int) -> bytes:
    """A TCP SYN segment (the template) for an IPv6 raw socket: checksum 0, the kernel
    computes it (IPV6_CHECKSUM)."""
    segment = bytearray(templates().syn)
    _TCP_PORTS_SEQ.pack_into(segment, 0, sport, dport, seq)
    return bytes(segment)


def syn_answer(packet: bytes, ihl: int) -> tuple[int, int]:
    """(acknowledgement number, flags) of the TCP segment in an IPv4 packet."""
    ack, flags = _TCP_ACK_FLAGS.unpack_from(packet, ihl + 8)
    return ack, flags


# -- where they come from ---------------------------------------------------

_lock = threading.Lock()
_templates: Templates | None = None


def templates() -> Templates:
    """The templates: in memory, else from the cache, else built by scapy (and cached)."""
    global _templates
    if _templates is None:
        with _lock:
            if _templates is None:
                key = _scapy_key()
                _templates = _read(key) or _write(key, Templates.build())
    return _templates


def _scapy_key() -> str:
    """What built the templates: scapy's files, by path, size and modification time."""
    spec = importlib.util.find_spec("scapy")
    if spec is None or not spec.submodule_search_locations:
        return ""
    root = next(iter(spec.submodule_search_locations))
    parts = []
    for name in ("packet.py", "fields.py", os.path.join("layers", "inet.py"),
                 os.path.join("layers", "inet6.py")):
        try:
            st = os.stat(os.path.join(root, name))
        except OSError:
            return ""
        parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return f"{root} " + " ".join(parts)


def _read(key: str) -> Templates | None:
    if not key:
        return None
    try:
        with open(CACHE) as f:
            found = json.load(f)
        if found.get("scapy") == key:
            return Templates(bytes.fromhex(found["echo"]), bytes.fromhex(found["syn"]),
                             bytes.fromhex(found["echo6"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write(key: str, built: Templates) -> Templates:
    if key:
        tmp = f"{CACHE}.{os.getpid()}"
        with contextlib.suppress(OSError):
            os.makedirs(STATE_DIR, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"scapy": key, "echo": built.echo.hex(), "syn": built.syn.hex(),
                           "echo6": built.echo6.hex()}, f)
            os.replace(tmp, CACHE)
    return built
