"""Faults on real links, on both backends, checked with tools that are not pytest-netns.

Delay is read from busybox `ping` inside the nodes; loss, duplicates,
corruption and reordering from datagrams counted by plain sockets opened in
the nodes' namespaces (and the kernel's own counters); rate from bytes a
TCP socket received; the kernel state (qdiscs, filters, links) from
iproute2's `tc` and `ip`, entered with nsenter. Bounds are physical, not
timings of this machine: a 20 ms delay each way cannot give an RTT under
40 ms, and a 30 % loss over 600 datagrams lands inside a binomial band
wide enough that it fails by chance less than once in a million runs.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from netcheck import busybox, host_firewall, host_pings, pings

from pytest_netns import (
    ImpairmentError,
    InvalidImpairmentError,
    InvalidTopologyError,
    NetnsError,
    NodeClosedError,
    ping_stats,
)
from pytest_netns.kernel.forwarder import PROCESS_NAME
from pytest_netns.nodes.base import Node

PORT = 5301


# -- independent views ----------------------------------------------------------------


def rtts(node: Node, ip: str, count: int = 5, interval: float = 0.05,
         wait: int = 3) -> list[float]:
    """Round-trip times (ms) busybox ping measured from inside `node`, replies only."""
    _code, out = busybox(node, "ping", "-c", str(count), "-i", str(interval), "-W", str(wait),
                         ip)
    return [float(x) for x in re.findall(r"time=([0-9.]+) ms", out)]


def silent(node: Node, ip: str) -> bool:
    """busybox ping from inside `node` gets no reply within a second (plenty on a veth)."""
    code, _ = busybox(node, "ping", "-c", "1", "-W", "1", ip)
    return code != 0


def host_silent(ip: str) -> bool:
    done = subprocess.run(["busybox", "ping", "-c", "1", "-W", "1", ip], capture_output=True,
                          timeout=10, check=False)
    return done.returncode != 0


def nsenter(node: Node, *argv: str, check: bool = True) -> str:
    """An iproute2 command run inside the node's namespace (the host's binary)."""
    done = subprocess.run(["nsenter", f"--net={node.netns}", *argv], capture_output=True,
                          text=True, timeout=30, check=check)
    return done.stdout


def tc_state(node: Node) -> str:
    """Every qdisc and tc filter of the node's namespace, and its links, as iproute2 shows them."""
    out = nsenter(node, "tc", "qdisc", "show")
    for line in nsenter(node, "ip", "-o", "link", "show").splitlines():
        ifname = line.split(":")[1].strip().split("@")[0]
        out += ifname + "\n"
        for hook in ("ingress", "egress"):
            # a sink veth may go (in the background) between the two commands
            out += nsenter(node, "tc", "filter", "show", "dev", ifname, hook, check=False)
    return out


def firewall() -> list[str]:
    """The host's rulesets (netcheck's view), without what Docker's own networks add and
    remove meanwhile: other work on this machine creates them, pytest-netns never does."""
    return [line for line in host_firewall().splitlines()
            if "br-" not in line and "docker" not in line.lower()]


def binomial_band(n: int, p: float) -> tuple[float, float]:
    """A band a binomial count leaves by chance less than once in a million runs (4.9 sigma)."""
    half = 4.9 * math.sqrt(n * p * (1 - p))
    return n * p - half, n * p + half


def udp_receiver(node: Node, ip: str, port: int = PORT) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((ip, port))
        return sock

    return node.call(make)


def udp_sender(node: Node) -> socket.socket:
    return node.call(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)


def send_numbered(tx: socket.socket, dst: tuple[str, int], count: int,
                  interval: float = 0.0005) -> None:
    started = time.monotonic()
    for i in range(count):
        pause = started + i * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        tx.sendto(i.to_bytes(4, "big") + bytes(60), dst)


def drain(rx: socket.socket, quiet: float = 0.5) -> list[int]:
    """Sequence numbers received until nothing came for `quiet` seconds, in arrival order."""
    got = []
    rx.settimeout(quiet)
    while True:
        try:
            got.append(int.from_bytes(rx.recv(2048)[:4], "big"))
        except TimeoutError:
            return got


def udp_through(src: Node, dst: Node, dst_ip: str, count: int,
                interval: float = 0.0005) -> list[int]:
    rx, tx = udp_receiver(dst, dst_ip), udp_sender(src)
    try:
        send_numbered(tx, (dst_ip, PORT), count, interval)
        return drain(rx)
    finally:
        rx.close()
        tx.close()


def snmp(node: Node, proto: str, field: str) -> int:
    """A counter of the node's /proc/net/snmp, read inside its namespace."""
    def read() -> str:
        with open("/proc/thread-self/net/snmp") as f:
            return f.read()

    rows = [line.split() for line in node.call(read).splitlines()]
    names, values = [row for row in rows if row[0] == f"{proto}:"]
    return int(values[names.index(field)])


@contextmanager
def tcp_connection(client: Node, server: Node, server_ip: str,
                   port: int = PORT) -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = server.call(socket.socket)
    listener.bind((server_ip, port))
    listener.listen()
    sock = client.call(socket.socket)
    sock.settimeout(10)
    sock.connect((server_ip, port))
    accepted, _ = listener.accept()
    accepted.settimeout(30)
    try:
        yield sock, accepted
    finally:
        for s in (sock, accepted, listener):
            s.close()


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {len(data)} of {size} bytes"
        data += chunk
    return data


def transfer(sender: socket.socket, receiver: socket.socket, payload: bytes) -> bytes:
    """Send on one thread while receiving on this one (buffers hold far less than payload)."""
    thread = threading.Thread(target=sender.sendall, args=(payload,))
    thread.start()
    try:
        return receive_exactly(receiver, len(payload))
    finally:
        thread.join()


def forwarders_of(sid: str) -> list[int]:
    """Pids of running forwarders tagged with session `sid`, found through /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if comm == PROCESS_NAME and sid.encode() in argv:
            found.append(int(pid))
    return found


# -- impairments ----------------------------------------------------------------------


def test_delay_both_ways_on_a_switch_port(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.a, "switch")
    assert link.directions == ("a->switch", "switch->a")
    link.impair(delay="20ms")
    assert link.impairment == {"a->switch": {"delay": 0.02}, "switch->a": {"delay": 0.02}}
    times = rtts(pair.a, pair.b_ip)
    assert len(times) == 5 and min(times) >= 40.0, times  # 20 ms out, 20 ms back
    link.clear()
    assert link.impairment == {}
    assert min(rtts(pair.a, pair.b_ip)) < 40.0


def test_one_direction_only(make_bridged_pair: Callable[..., Any]) -> None:
    """"switch->a" is shaped on the bridge port in the switch; a's replies leave undelayed."""
    pair = make_bridged_pair()
    link = pair.topology.link("switch", pair.a)
    link.impair(delay="30ms", direction="switch->a")
    assert set(link.impairment) == {"switch->a"}
    assert "tbf" not in tc_state(pair.a) and "bpf" not in tc_state(pair.a)
    assert "handle 0x4e4e" in tc_state(pair.topology.nodes["switch"])
    times = rtts(pair.b, pair.a_ip)
    assert min(times) >= 30.0, times  # b -> a crosses switch->a once
    link.impair(delay="5ms", direction="a->switch")  # the other way is added, not replaced
    assert set(link.impairment) == {"a->switch", "switch->a"}
    assert min(rtts(pair.b, pair.a_ip)) >= 35.0


def test_two_seconds_of_delay_make_a_timeout_fire(make_host_only_link: Callable[..., Any],
                                                  stable_host_firewall: None) -> None:
    """The host's own end is shaped too ("host->node"), with filters on our veth only."""
    link = make_host_only_link()
    before = firewall()
    link.link.impair(delay="2s", direction="host->node")
    stats = ping_stats("host", link.node, count=1, timeout=1.0)
    assert stats.received == 0 and stats.loss == 100.0 and stats.rtt_avg is None
    slow = ping_stats("host", link.node, count=2, interval=0.1, timeout=5.0)
    assert slow.received == 2 and slow.rtt_min is not None and slow.rtt_min > 1500
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:  # here, in the root namespace
        rx.bind((link.host_ip, PORT))
        rx.settimeout(1.0)
        tx = udp_sender(link.node)
        tx.sendto(b"undelayed", (link.host_ip, PORT))
        tx.close()
        assert rx.recv(100) == b"undelayed"  # node -> host is not delayed
    assert firewall() == before


def test_loss_is_binomial(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.a, "switch")
    link.impair(loss=30, direction="a->switch")
    n = 600
    got = udp_through(pair.a, pair.b, pair.b_ip, n)
    low, high = binomial_band(n, 0.7)
    assert low <= len(got) <= high, (len(got), low, high)
    assert len(set(got)) == len(got)
    reverse = udp_through(pair.b, pair.a, pair.a_ip, 200)
    assert len(reverse) == 200  # the other way is untouched


def test_busybox_ping_sees_the_loss(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    pair.topology.link(pair.a, "switch").impair(loss=100, direction="a->switch")
    code, out = busybox(pair.a, "ping", "-c", "3", "-i", "0.1", "-W", "1", pair.b_ip)
    assert code != 0 and "100% packet loss" in out, out
    stats = ping_stats(pair.a, pair.b, count=20, interval=0.005, timeout=0.5)
    assert (stats.sent, stats.received, stats.loss) == (20, 0, 100.0)


def test_duplicate_and_reorder(make_topology: Callable[..., Any]) -> None:
    t = make_topology(label="dup")
    t.node("a")
    t.node("b")
    t.connect("a", "b")
    net = t.build()
    a, b = net["a"], net["b"]
    link = net.link(a, b)
    link.impair(duplicate=50, direction="a->b")
    n = 400
    got = udp_through(a, b, b.address_for(a) or "", n)
    extra = len(got) - len(set(got))
    low, high = binomial_band(n, 0.5)
    assert set(got) == set(range(n)) and low <= extra <= high, extra
    link.impair(delay="20ms", reorder=50, direction="a->b")  # replaces the duplicates
    got = udp_through(a, b, b.address_for(a) or "", 200, interval=0.002)
    assert sorted(got) == list(range(200))
    overtaken = sum(1 for i in range(1, len(got)) if got[i] < got[i - 1])
    assert overtaken >= 20, got  # ~half skip the 20 ms and overtake those sent before


def test_corruption_fails_the_receivers_checksums(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    pair.topology.link(pair.a, "switch").impair(corrupt=50, direction="a->switch")
    errors = snmp(pair.b, "Udp", "InCsumErrors") + snmp(pair.b, "Ip", "InHdrErrors")
    n = 400
    got = udp_through(pair.a, pair.b, pair.b_ip, n)
    damaged = snmp(pair.b, "Udp", "InCsumErrors") + snmp(pair.b, "Ip", "InHdrErrors") - errors
    low, high = binomial_band(n, 0.5)
    assert low <= n - len(got) <= high, len(got)
    # a bit flipped where no checksum looks (TTL, ToS, padding) passes; the rest is caught
    assert damaged >= 0.7 * (n - len(got)), (damaged, n - len(got))


def test_rate_caps_tcp_goodput(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    pair.topology.link(pair.b, "switch").impair(rate="8mbit", direction="b->switch")
    with tcp_connection(pair.b, pair.a, pair.a_ip) as (client, server):
        stop = threading.Event()

        def send() -> None:
            chunk = bytes(65536)
            try:
                while not stop.is_set():
                    client.send(chunk)
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        try:
            receive_exactly(server, 200_000)  # past TCP's start
            started, total = time.monotonic(), 0
            while time.monotonic() - started < 2.0:
                total += len(server.recv(1 << 20))
            rate = total * 8 / (time.monotonic() - started)
        finally:
            stop.set()
            client.shutdown(socket.SHUT_RDWR)
            sender.join()
    # tbf lets no more than its rate through (plus one burst); TCP fills most of it
    assert 0.4 * 8e6 <= rate <= 1.1 * 8e6, rate


def test_an_established_connection_survives_impair_change_and_clear(
        make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.a, "switch")
    with tcp_connection(pair.a, pair.b, pair.b_ip) as (client, server):
        client.sendall(b"before")
        assert receive_exactly(server, 6) == b"before"
        link.impair(delay="10ms", jitter="2ms", loss=2, rate="20mbit")
        payload = os.urandom(100_000)
        assert transfer(client, server, payload) == payload
        link.impair(delay="2ms", duplicate=5, corrupt=2, reorder=10)
        assert transfer(server, client, payload) == payload
        link.clear()
        client.sendall(b"after clear")
        assert receive_exactly(server, 11) == b"after clear"


def test_impaired_restores_what_was_there(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.a, "switch")
    link.impair(delay="10ms", direction="a->switch")
    before = link.impairment
    with link.impaired(loss=100) as same:
        assert same is link
        assert link.impairment == {"a->switch": {"loss": 100.0}, "switch->a": {"loss": 100.0}}
        assert silent(pair.a, pair.b_ip)
    assert link.impairment == before
    assert min(rtts(pair.a, pair.b_ip, count=2)) >= 10.0


def test_connect_impair_applies_once_built(make_topology: Callable[..., Any]) -> None:
    t = make_topology(label="described")
    t.node("client")
    t.node("server")
    lan = t.switch("lan")
    t.connect("client", lan)
    t.connect("server", lan, impair={"delay": "25ms", "direction": "lan->server"})
    net = t.build()
    assert net.link("server", "lan").impairment == {"lan->server": {"delay": 0.025}}
    server_ip = net.ip_of("server", "lan")
    assert min(rtts(net["client"], server_ip, count=3)) >= 25.0


# -- what a refused call leaves: nothing --------------------------------------------------


def test_bad_input_changes_nothing(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.a, "switch")
    link.impair(delay="5ms", direction="a->switch")
    state = tc_state(pair.a), tc_state(pair.topology.nodes["switch"]), link.impairment
    for kwargs, message in [
        ({"loss": 150}, r"loss=150 is out of range; valid: 0 to 100"),
        ({"delay": "5 parsecs"}, r"unknown time unit 'parsecs'"),
        ({"rate": "-3mbit"}, r"rate='-3mbit' cannot be parsed"),
        ({"jitter": "5ms"}, r"jitter='5ms' needs a delay"),
        ({"delay": "5ms", "direction": "b->a"}, r"direction='b->a' is not a direction of the "
                                                r"link a<->switch; valid: 'both', 'a->switch'"),
    ]:
        with pytest.raises(InvalidImpairmentError, match=message):
            link.impair(**kwargs)
    assert (tc_state(pair.a), tc_state(pair.topology.nodes["switch"]), link.impairment) == state
    with pytest.raises(InvalidTopologyError, match=r"no link between 'a' and 'b'"):
        pair.topology.link(pair.a, pair.b)  # both on the switch, but not adjacent
    with pytest.raises(InvalidTopologyError, match=r"no link between 'a' and 'nosuch'"):
        pair.topology.link("a", "nosuch")
    with pytest.raises(InvalidImpairmentError, match=r"down_for must be more than 0 and less "
                       r"than the period \(1 s\)"), link.flapping(period=1, down_for=2):
        pass
    with pytest.raises(InvalidImpairmentError, match=r"'nosuch', which is not a node"):
        pair.topology.partition([pair.a], ["nosuch"])
    with pytest.raises(InvalidImpairmentError, match=r"'a' is in groups 1 and 2"):
        pair.topology.partition([pair.a], [pair.a, pair.b])
    with pytest.raises(InvalidImpairmentError, match=r"'host' has no link in bridged_pair"):
        pair.topology.partition([pair.a], ["host"])
    assert (tc_state(pair.a), tc_state(pair.topology.nodes["switch"]), link.impairment) == state


def test_clear_and_close_leave_nothing(make_bridged_pair: Callable[..., Any],
                                       netns_session: Any) -> None:
    pair = make_bridged_pair()
    switch = pair.topology.nodes["switch"]
    before = tc_state(pair.a), tc_state(switch)
    link = pair.topology.link(pair.a, "switch")
    link.impair(delay="5ms", loss=1, rate="50mbit")
    with_faults = tc_state(pair.a)
    assert "tbf" in with_faults and "handle 0x4e4e" in with_faults and "mirred" in with_faults
    pid = pair.topology.fault_state.forwarder_pid
    assert pid in forwarders_of(netns_session.id)
    with open(netns_session.ledger_path) as ledger:  # the crash sweep's list of what to end
        assert f"{pid} " in [line.split()[0] + " " for line in ledger]
    link.clear()
    link.down()
    link.up()
    pair.topology.partition([pair.a], [pair.b]).heal()
    deadline = time.monotonic() + 5
    while (tc_state(pair.a), tc_state(switch)) != before and time.monotonic() < deadline:
        time.sleep(0.05)  # the forwarder deletes the sink veth in the background
    assert (tc_state(pair.a), tc_state(switch)) == before
    link.impair(loss=5)
    part = pair.topology.partition([pair.a], [pair.b])  # both left for the close
    pair.close()
    deadline = time.monotonic() + 5
    while pid in forwarders_of(netns_session.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in forwarders_of(netns_session.id)
    with pytest.raises(NodeClosedError):
        link.impair(delay="1ms")
    link.clear()  # nothing is left to undo: these return at once
    link.up()
    part.heal()
    assert link.impairment == {} and link.is_up


def test_a_dead_forwarder_silences_its_direction_until_clear(
        make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.a, "switch")
    link.impair(delay="1ms")
    pid = pair.topology.fault_state.forwarder_pid
    os.kill(pid, 9)
    assert silent(pair.a, pair.b_ip)  # as documented: that direction is black-holed
    with pytest.raises(ImpairmentError, match=f"forwarder {pid}"):
        link.impair(delay="2ms")  # the change cannot reach it: refused, direction cleared
    link.clear()
    assert pings(pair.a, pair.b_ip)
    link.impair(delay="3ms")  # a new forwarder
    assert pair.topology.fault_state.forwarder_pid != pid
    assert min(rtts(pair.a, pair.b_ip, count=2)) >= 6.0


# -- down, up, flapping -------------------------------------------------------------------


def test_down_cuts_both_ways_and_keeps_routes(make_nat_uplink: Callable[..., Any]) -> None:
    nat = make_nat_uplink()
    link = nat.link  # the node-router link
    routes = busybox(nat.node, "ip", "route")[1]
    assert pings(nat.node, nat.upstream_ip)
    link.down()
    assert not link.is_up
    assert silent(nat.node, nat.upstream_ip)
    assert silent(nat.router, nat.node_ip)
    assert busybox(nat.node, "ip", "route")[1] == routes  # nothing was taken down
    link.up()
    link.up()  # idempotent
    assert link.is_up and pings(nat.node, nat.upstream_ip)


def test_flapping(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    link = pair.topology.link(pair.b, "switch")
    with link.flapping(period=0.4, down_for=0.2) as flap:
        stats = ping_stats(pair.a, pair.b, count=60, interval=0.02, timeout=0.2)
        with pytest.raises(InvalidImpairmentError, match="while it is flapping"):
            link.down()
    assert flap.flaps >= 2
    assert 0 < stats.received < stats.sent, stats  # some echoes met the cut, some did not
    assert link.is_up and pings(pair.a, pair.b_ip)


# -- partitions ---------------------------------------------------------------------------


def three_on_a_switch(make_topology: Callable[..., Any]) -> Any:
    t = make_topology(label="trio")
    lan = t.switch("lan")
    for name in ("a", "b", "c"):
        t.node(name)
        t.connect(name, lan)
    return t.build()


def test_partition_and_heal(make_topology: Callable[..., Any]) -> None:
    net = three_on_a_switch(make_topology)
    a, b, c = net["a"], net["b"], net["c"]
    with net.partition([a], [b, "c"]) as part:
        assert part.active
        assert silent(a, b.ip or "") and silent(c, a.ip or "")
        assert pings(b, c.ip or "")  # inside a group: untouched
    assert not part.active
    part.heal()  # idempotent
    assert pings(a, b.ip or "") and pings(c, a.ip or "")


def test_several_partitions_at_once(make_topology: Callable[..., Any]) -> None:
    net = three_on_a_switch(make_topology)
    a, b, c = net["a"], net["b"], net["c"]
    first = net.partition(["a"], ["b"])
    second = net.partition(["b"], ["c"])
    assert silent(a, b.ip or "") and silent(b, c.ip or "") and pings(a, c.ip or "")
    first.heal()
    assert pings(a, b.ip or "") and silent(c, b.ip or "")
    second.heal()
    assert pings(c, b.ip or "")


def test_oneway_partition_keeps_address_resolution(make_bridged_pair: Callable[..., Any]) -> None:
    pair = make_bridged_pair()
    for node in (pair.a, pair.b):
        busybox(node, "ip", "neigh", "flush", "all")
    part = pair.topology.partition([pair.a], [pair.b], oneway=True)
    assert udp_through(pair.a, pair.b, pair.b_ip, 20, interval=0.01) == []
    # b -> a needs ARP in both directions, which the cut lets through
    assert sorted(udp_through(pair.b, pair.a, pair.a_ip, 20, interval=0.01)) == list(range(20))
    part.heal()
    assert len(udp_through(pair.a, pair.b, pair.b_ip, 20, interval=0.01)) == 20


def test_partition_from_the_host(make_host_only_link: Callable[..., Any],
                                 stable_host_firewall: None) -> None:
    """"host" is a member: dropped on our root-namespace veth, never in the host's firewall."""
    link = make_host_only_link()
    before = firewall()
    assert host_pings(link.node_ip) and pings(link.node, link.host_ip)
    with link.topology.partition([link.node], ["host"]):
        assert host_silent(link.node_ip)
        assert silent(link.node, link.host_ip)
        assert firewall() == before
    assert host_pings(link.node_ip) and pings(link.node, link.host_ip)


def test_partition_behind_nat(make_nat_uplink: Callable[..., Any]) -> None:
    """Masqueraded traffic is caught at the router, before NAT hides its source."""
    nat = make_nat_uplink()
    with nat.topology.partition([nat.node], ["host"]):
        assert silent(nat.node, nat.upstream_ip)
        assert pings(nat.router, nat.upstream_ip)  # the router is in neither group
    assert pings(nat.node, nat.upstream_ip)


def test_partition_takes_effect_when_the_call_returns(
        make_bridged_pair: Callable[..., Any]) -> None:
    """A 2 kpps stream: nothing sent after partition() returned arrives, all after heal()."""
    pair = make_bridged_pair()
    rx, tx = udp_receiver(pair.b, pair.b_ip), udp_sender(pair.a)
    sent: list[int] = []
    marks: dict[str, int] = {}

    def stream() -> None:
        for i in range(1200):
            tx.sendto(i.to_bytes(4, "big"), (pair.b_ip, PORT))
            sent.append(i)
            time.sleep(0.0005)

    try:
        sender = threading.Thread(target=stream)
        sender.start()
        time.sleep(0.1)
        part = pair.topology.partition([pair.a], [pair.b])
        marks["cut"] = len(sent)
        time.sleep(0.15)
        marks["healing"] = len(sent)
        part.heal()
        marks["healed"] = len(sent)
        sender.join()
        got = set(drain(rx))
    finally:
        rx.close()
        tx.close()
    # the counter trails the send by up to one datagram
    assert not got & set(range(marks["cut"] + 1, marks["healing"] - 1)), marks
    assert set(range(marks["healed"] + 1, 1200)) <= got, marks


# -- what the report and the captures show -----------------------------------------------


def _tcpdump(node: Node, ifname: str) -> subprocess.Popen[str]:
    """tcpdump on one end, printing echo requests with kernel timestamps; returns once its
    tap is open."""
    dump = subprocess.Popen(["nsenter", f"--net={node.netns}", "tcpdump", "-n", "-l", "-tt",
                             "-i", ifname, "icmp[0] == 8"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert dump.stderr is not None
    while "listening on" not in dump.stderr.readline():
        pass
    return dump


def _requests(dump: subprocess.Popen[str]) -> dict[int, float]:
    """seq -> timestamp of each echo request tcpdump saw."""
    dump.terminate()
    out = dump.communicate(timeout=10)[0]
    return {int(m[2]): float(m[1]) for m in
            re.finditer(r"^(\d+\.\d+) .*ICMP echo request, id \d+, seq (\d+)", out, re.M)}


def test_captures_show_what_each_end_saw(make_topology: Callable[..., Any], tmp_path: Any) -> None:
    """tcpdump on both ends and our own capture agree: the echoes lost on an impaired link
    are in none of them, the others in all three, never seen at b before they left a."""
    from scapy.layers.inet import ICMP
    from scapy.utils import rdpcap

    from pytest_netns.report.capture import start_capture

    t = make_topology(label="cap")
    t.node("a")
    t.node("b")
    t.connect("a", "b")
    net = t.build()
    a, b = net["a"], net["b"]
    b_ip = b.address_for(a) or ""
    assert pings(a, b_ip)  # ARP resolved: its requests would meet the loss too
    net.link(a, b).impair(delay="20ms", loss=50, direction="a->b")
    cap = start_capture(net, str(tmp_path), "cap")  # tapped at a's end
    at_a, at_b = _tcpdump(a, a.interfaces[0].ifname), _tcpdump(b, b.interfaces[0].ifname)
    try:
        busybox(a, "ping", "-c", "40", "-i", "0.02", "-W", "1", b_ip)
        time.sleep(0.5)
    finally:
        seen_at_a, seen_at_b = _requests(at_a), _requests(at_b)
        links = cap.stop()
    ours = {int(p[ICMP].seq): float(p.time) for p in rdpcap(links[0].path)
            if ICMP in p and p[ICMP].type == 8}
    assert 0 < len(seen_at_b) < 40, seen_at_b
    assert sorted(ours) == sorted(seen_at_a) == sorted(seen_at_b)  # lost: stolen before a's tap
    for seq, when in seen_at_b.items():
        assert when >= seen_at_a[seq] - 0.0005 and when >= ours[seq] - 0.0005


def test_the_failure_report_shows_the_faults(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
        from pytest_netns import ping_stats

        def test_fails(make_topology):
            t = make_topology(backend="namespace", label="shown")
            t.node("a"); t.node("b"); t.node("c")
            lan = t.switch("lan")
            for n in "abc":
                t.connect(n, lan)
            net = t.build()
            net.link("a", "lan").impair(delay="40ms", loss=1)
            net.link("c", "lan").down()
            net.partition(["a"], ["b"], oneway=True)
            ping_stats(net["a"], net["b"], count=3)
            assert False, "look at the network"
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist",
                                           "--netns-artifacts", "arts")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"lan\s+a<->lan\s+a->lan: 40 ms, 1 % loss", out), out
    assert re.search(r"lan\s+c<->lan\s+DOWN", out), out
    assert re.search(r"partition\s+\[a\] -> \[b\] \(one way\)\s+active for", out), out
    assert "impaired lan a->lan and lan->a: 40 ms, 1 % loss" in out
    assert "a -> b (" in out and "3 sent, 0 received, 100 % loss" in out
    assert re.search(r"forwarder \d+ running", out), out
    assert re.search(r"faults injected: 1 impairment, 1 link cut, 1 partition "
                     r"\(1 forwarder process\)", out), out
    dot = next((pytester.path / "arts").rglob("network.dot")).read_text()
    assert '40 ms, 1 % loss", color=darkorange' in dot
    assert "DOWN" in dot and "partition [a] -> [b] (one way)" in dot


def test_faults_need_a_link_with_two_ends(make_isolated_container: Callable[..., Any]) -> None:
    iso = make_isolated_container()
    (link,) = iso.topology.links
    with pytest.raises(InvalidImpairmentError, match="has no other end"):
        link.impair(delay="1ms")
    assert link.impairment == {} and link.is_up
    with pytest.raises(NetnsError):
        iso.topology.partition([iso.node], ["host"])


def test_ipv6_is_impaired_and_partitioned_too(make_bridged_pair: Callable[..., Any]) -> None:
    """ICMPv6 meets the delay; a one-way partition cuts IPv6 and lets neighbour discovery by."""
    pair = make_bridged_pair(ipv6=True)
    link = pair.topology.link(pair.a, "switch")
    link.impair(delay="15ms", direction="switch->a")
    stats = ping_stats(pair.b, pair.a, count=3, family=6)
    assert stats.received == 3 and stats.rtt_min is not None and stats.rtt_min >= 15.0
    _code, out = busybox(pair.b, "ping", "-6", "-c", "2", "-W", "3", pair.a_ip6)
    times = [float(x) for x in re.findall(r"time=([0-9.]+) ms", out)]
    assert len(times) == 2 and min(times) >= 15.0, out
    link.clear()
    for node in (pair.a, pair.b):
        busybox(node, "ip", "-6", "neigh", "flush", "all")
    with pair.topology.partition([pair.a], [pair.b], oneway=True):
        assert ping_stats(pair.a, pair.b, count=3, family=6, timeout=0.5).received == 0
        assert silent(pair.b, pair.a_ip)  # a's IPv4 replies are cut as well
        six = udp_through6(pair.b, pair.a, pair.a_ip6, 10)
        assert sorted(six) == list(range(10))  # b -> a: neighbour discovery went through


def udp_through6(src: Node, dst: Node, dst_ip: str, count: int) -> list[int]:
    def receiver() -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind((dst_ip, PORT))
        return sock

    rx = dst.call(receiver)
    tx = src.call(socket.socket, socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        send_numbered(tx, (dst_ip, PORT), count, 0.01)
        return drain(rx)
    finally:
        rx.close()
        tx.close()
