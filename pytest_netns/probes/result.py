"""What one probe observed, kept apart by kind so a verdict never lies.

"No answer" and "told no" are different facts: a RST means something is
listening for the address and refuses the port, an ICMP error names the
router that gave up, silence may be a firewall or a lost packet, and "no
route" was decided in the source before anything was sent. Each has its own
state, and `detail` says who answered and how.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOS = ("icmp", "tcp", "udp")
#: what echo requests and UDP probes carry, and what an echo reply must carry back
PAYLOAD = b"pytest-netns"

# the states each protocol can end in; the first one is the positive verdict
STATES = {
    "icmp": ("reply", "no-route", "unreachable", "timeout"),
    "tcp": ("open", "closed", "filtered", "no-route", "unreachable"),
    "udp": ("open", "closed", "open|filtered", "no-route", "unreachable"),
}
# what silence until the timeout is called, per protocol
SILENT = {"icmp": "timeout", "tcp": "filtered", "udp": "open|filtered"}
OK_STATES = frozenset({"reply", "open"})


@dataclass(frozen=True)
class ProbeResult:
    """One probe's outcome: from where, to what, and what came back."""

    src: str  # node name, or "host"
    dst: str  # destination address
    proto: str  # "icmp" | "tcp" | "udp"
    port: int | None
    state: str
    rtt_ms: float | None
    detail: str
    sent: int = 0  # packets sent (resends included); 0 when decided before sending
    dst_name: str = ""  # the destination node's name, when a node was given
    sent_at: float | None = None  # time.perf_counter() of the first packet, if any was sent

    @property
    def ok(self) -> bool:
        """True for an echo reply or an open port."""
        return self.state in OK_STATES

    @property
    def silent(self) -> bool:
        """True when nothing answered within the window (timeout, filtered, open|filtered)."""
        return self.state == SILENT[self.proto]

    @property
    def target(self) -> str:
        """The destination as a reader wants it: `b (10.64.0.3)` or the bare address."""
        return f"{self.dst_name} ({self.dst})" if self.dst_name else self.dst

    @property
    def service(self) -> str:
        """`icmp`, or `tcp/80`."""
        return self.proto if self.port is None else f"{self.proto}/{self.port}"

    def __str__(self) -> str:
        rtt = f" in {self.rtt_ms:.2f} ms" if self.rtt_ms is not None else ""
        return f"{self.src} -> {self.target} {self.service}: {self.state}{rtt} ({self.detail})"
