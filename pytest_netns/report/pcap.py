"""Writing classic libpcap files (the format tcpdump, Wireshark and scapy all read).

The classic format (magic 0xa1b2c3d4, version 2.4, microsecond timestamps)
rather than pcapng, because every tool that reads captures reads it, and a
writer is twenty lines with no dependency. Frames are Ethernet
(LINKTYPE_ETHERNET = 1): every link a topology builds is a veth or a bridge
port, and a packet socket on those hands over whole Ethernet frames.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

MAGIC = 0xA1B2C3D4
VERSION = (2, 4)
LINKTYPE_ETHERNET = 1
# large enough for a GSO super-frame, which veths hand to packet sockets unsplit
SNAPLEN = 262144

_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Appends Ethernet frames with their capture time to one pcap file.

    `path` may also be an open binary stream (a pipe to `tcpdump -r -` or
    Wireshark); with `flush`, each frame is handed on as soon as it is written.
    """

    def __init__(self, path: str | BinaryIO, snaplen: int = SNAPLEN, flush: bool = False) -> None:
        self.path = path if isinstance(path, str) else str(getattr(path, "name", "<stream>"))
        self.snaplen = snaplen
        self.frames = 0
        self._owned = isinstance(path, str)
        self._flush = flush
        self._file: BinaryIO | None = (
            open(path, "wb") if isinstance(path, str) else path)  # noqa: SIM115 (close())
        self._file.write(_HEADER.pack(MAGIC, *VERSION, 0, 0, snaplen, LINKTYPE_ETHERNET))
        if flush:
            self._file.flush()

    def write(self, sec: int, usec: int, frame: bytes | memoryview, orig_len: int = 0) -> None:
        """One record; `orig_len` is the frame's length on the wire when it was cut short."""
        if self._file is None:
            return
        caplen = min(len(frame), self.snaplen)
        self._file.write(_RECORD.pack(sec, usec, caplen, max(orig_len, len(frame))))
        self._file.write(frame[:caplen])
        self.frames += 1
        if self._flush:
            self._file.flush()

    def close(self) -> None:
        """Close the file (a stream handed in is only flushed: its owner closes it)."""
        if self._file is not None:
            if self._owned:
                self._file.close()
            else:
                self._file.flush()
            self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None
