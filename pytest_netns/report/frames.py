"""One line per Ethernet frame, as `pytest-netns capture` prints a link to a terminal.

Enough to follow a conversation (addresses, protocol, ports, ICMP type, TCP
flags, length) without scapy, whose import alone takes over a second; for
anything deeper, write a pcap (`-w`) and open it in tcpdump or Wireshark.
"""

from __future__ import annotations

import ipaddress
import struct
import time

_ICMP = {0: "echo reply", 3: "unreachable", 8: "echo request", 11: "time exceeded"}
_ICMP6 = {1: "unreachable", 3: "time exceeded", 128: "echo request", 129: "echo reply",
          133: "router solicitation", 134: "router advertisement",
          135: "neighbor solicitation", 136: "neighbor advertisement"}
_TCP_FLAGS = "FSRPAUEC"


def describe(sec: int, usec: int, frame: bytes | memoryview, length: int) -> str:
    """`12:00:01.000123 10.0.0.2 > 10.0.0.3: ICMP echo request, length 98`."""
    stamp = time.strftime("%H:%M:%S", time.localtime(sec)) + f".{usec:06d}"
    data = bytes(frame[:128])
    return f"{stamp} {_ethernet(data)}, length {length}"


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ethernet(data: bytes) -> str:
    if len(data) < 14:
        return "truncated frame"
    (ethertype,) = struct.unpack_from("!H", data, 12)
    payload = data[14:]
    if ethertype == 0x0800 and len(payload) >= 20:
        header = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = ipaddress.IPv4Address(payload[12:16]), ipaddress.IPv4Address(payload[16:20])
        return _transport(str(src), str(dst), proto, payload[header:], _ICMP)
    if ethertype == 0x86DD and len(payload) >= 40:
        src6, dst6 = ipaddress.IPv6Address(payload[8:24]), ipaddress.IPv6Address(payload[24:40])
        return _transport(str(src6), str(dst6), payload[6], payload[40:], _ICMP6)
    if ethertype == 0x0806 and len(payload) >= 28:
        (op,) = struct.unpack_from("!H", payload, 6)
        sender, target = ipaddress.IPv4Address(payload[14:18]), \
            ipaddress.IPv4Address(payload[24:28])
        if op == 1:
            return f"ARP who-has {target} tell {sender}"
        return f"ARP {sender} is-at {_mac(payload[8:14])}"
    return f"{_mac(data[6:12])} > {_mac(data[0:6])} ethertype 0x{ethertype:04x}"


def _transport(src: str, dst: str, proto: int, body: bytes, icmp: dict[int, str]) -> str:
    if proto in (6, 17) and len(body) >= 4:
        sport, dport = struct.unpack_from("!HH", body)
        text = f"{src}.{sport} > {dst}.{dport}: {'TCP' if proto == 6 else 'UDP'}"
        if proto == 6 and len(body) >= 14:
            flags = "".join(f for i, f in enumerate(_TCP_FLAGS) if body[13] & (1 << i))
            text += f" [{flags or '.'}]"
        return text
    if proto in (1, 58) and body:
        kind = icmp.get(body[0], f"type {body[0]}")
        return f"{src} > {dst}: {'ICMP' if proto == 1 else 'ICMP6'} {kind}"
    return f"{src} > {dst}: protocol {proto}"
