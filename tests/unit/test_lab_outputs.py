"""What the lab commands print and write, checked without root.

The declared-lab diagram (`graph` of a lab that is not up), the one-line
frame descriptions (`capture` to a terminal), the pcap stream (`capture` to
a pipe), the README's complete lab file, and the command line's handling of
a bad file: one paragraph, exit status 2, no traceback.
"""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from test_labfile import DEMO, FULL

from pytest_netns.labs import labfile
from pytest_netns.report.diagram import from_lab, render_dot, render_mermaid
from pytest_netns.report.frames import describe
from pytest_netns.report.pcap import MAGIC, PcapWriter

README = Path(__file__).resolve().parents[2] / "README.md"


def test_a_declared_lab_is_drawn_with_what_the_file_says() -> None:
    picture = from_lab(labfile.parse(FULL))
    mermaid = render_mermaid(picture)
    assert mermaid.startswith("flowchart LR")
    assert '"lbfull (not up)"' in mermaid
    for text in ("client (namespace)", "r1 (router)", "lan<br/>switch<br/>10.220.1.0/24",
                 "dmz<br/>switch<br/>subnet auto", "10.220.3.0/30", "<br/>10.220.3.1",
                 "NAT upstream<br/>10.220.9.0/30", "host (root netns)", "guest-only veth"):
        assert text in mermaid, (text, mermaid)
    # one edge per link (the guest-only NIC's is dotted), one for the NAT upstream
    assert len(re.findall(r"^  n_\S+ (---|-\.-)", mermaid, re.M)) == len(
        labfile.parse(FULL).links) + 1
    dot = render_dot(picture)
    assert dot.startswith("digraph network") and '"t0:r1"' in dot and "octagon" in dot


def test_frames_are_described_in_one_line() -> None:
    mac = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")
    ip = bytes([0x45, 0, 0, 84, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 3])
    echo = mac + b"\x08\x00" + ip + bytes([8, 0, 0, 0]) + b"\x00" * 60
    assert describe(0, 5, echo, 98).endswith(
        ".000005 10.0.0.2 > 10.0.0.3: ICMP echo request, length 98")
    tcp = mac + b"\x08\x00" + ip[:9] + b"\x06" + ip[10:] + struct.pack("!HHIIBB", 40000, 80, 0,
                                                                        0, 0x50, 0x12)
    assert "10.0.0.2.40000 > 10.0.0.3.80: TCP [SA]" in describe(0, 0, tcp, 54)
    arp = mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac[6:] + \
        bytes([10, 0, 0, 2]) + b"\x00" * 6 + bytes([10, 0, 0, 3])
    assert "ARP who-has 10.0.0.3 tell 10.0.0.2" in describe(0, 0, arp, 42)
    assert "truncated frame" in describe(0, 0, b"\x00" * 5, 5)


def test_a_pcap_stream_is_flushed_frame_by_frame_and_left_open() -> None:
    stream = io.BytesIO()
    writer = PcapWriter(stream, flush=True)
    writer.write(1, 2, b"\xaa" * 60, 60)
    writer.close()
    assert not stream.closed  # its owner (stdout) closes it
    data = stream.getvalue()
    assert struct.unpack_from("<I", data)[0] == MAGIC
    assert struct.unpack_from("<IIII", data, 24) == (1, 2, 60, 60) and len(data) == 24 + 16 + 60


def test_the_readmes_complete_lab_file_is_valid() -> None:
    text = README.read_text()
    section = text[text.index("## Lab files"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    spec = labfile.parse(block.group(1), "README.md")
    assert spec.ipv6 and spec.nodes["r1"].nat is not None and spec.expect
    assert any(link.impair for link in spec.links)
    assert any(n.attach for n in spec.nodes.values())


@pytest.mark.parametrize("command", ["up", "check", "graph", "inspect", "exec"])
def test_a_bad_file_is_one_paragraph_and_exit_status_2(tmp_path: Path, command: str) -> None:
    """No root needed: the file is refused before anything else is looked at."""
    (tmp_path / "lab.yaml").write_text(DEMO.replace("[server, dmz]", "[server, nowhere]"))
    argv = [sys.executable, "-m", "pytest_netns.cli", command, "lab.yaml"]
    done = subprocess.run(argv + (["client"] if command == "exec" else []), cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert done.stderr == (f"pytest-netns {command}: LabFileError: lab.yaml:13: "
                           "links[3].endpoints[1]: no node or switch named 'nowhere'; known: "
                           "client, lan, r1, dmz, server\n")
    assert done.stdout == ""
