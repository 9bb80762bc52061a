"""Probes against real namespaces and real containers (both backends, see conftest).

Every outcome a probe can report is produced for real here: an echo reply,
no route, an ICMP error from a router, a TCP SYN/ACK, a RST, a firewall's
silence, a UDP reply, an ICMP port-unreachable. Firewall rules and odd routes
live only inside namespaces the test created (a switch or router), never on
the host.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_netns import (
    HOST,
    CommandNotFoundError,
    EgressError,
    InvalidAddressError,
    InvalidProbeError,
    NetnsError,
    NodeClosedError,
    VerificationError,
    assert_reachable,
    assert_unreachable,
    ping,
    probe,
    probe_tcp,
    probe_udp,
    wait_for_tcp,
)
from pytest_netns.kernel.janitor import janitor
from pytest_netns.nodes.base import Node
from pytest_netns.nodes.images import BARE_IMAGE, DEFAULT_COMMAND
from pytest_netns.probes.engine import PROBE_STATS, observers
from pytest_netns.probes.result import ProbeResult
from pytest_netns.probes.sockets import open_probers
from pytest_netns.topology.construct import Constructor

SO_NETNS_COOKIE = 71


# -- helpers: services and firewalls inside nodes ------------------------------


@contextlib.contextmanager
def tcp_listener(node: Node) -> Iterator[int]:
    """A listening TCP socket opened inside the node's namespace; yields its port."""
    srv = node.call(socket.create_server, ("0.0.0.0", 0))
    try:
        yield int(srv.getsockname()[1])
    finally:
        srv.close()


@contextlib.contextmanager
def closed_tcp_port(node: Node) -> Iterator[int]:
    """A port that is certainly closed: bound in the node, never listening."""
    sock = node.call(socket.socket, socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("0.0.0.0", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@contextlib.contextmanager
def udp_service(node: Node, reply: bool) -> Iterator[int]:
    """A UDP socket inside the node, answering every datagram (or never)."""
    sock = node.call(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            if reply:
                sock.sendto(b"echo:" + data, peer)

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        worker.join()
        sock.close()


def nft(node: Node, tmp_path: Path, ruleset: str) -> None:
    """Load a ruleset inside a namespace node the test owns (a switch or router)."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    path = tmp_path / f"rules-{node.name}.nft"
    path.write_text(ruleset)
    code, out = node.exec(["nft", "-f", str(path)])
    assert code == 0, out


def unreachable_route(router: Node, address: str) -> None:
    """An `unreachable` route inside a router namespace the test owns."""
    code, out = router.exec(["ip", "route", "add", "unreachable", f"{address}/32"])
    assert code == 0, out


def client_router_server(make_topology: Any) -> Any:
    """client - r - server; the router answers every probe with ICMP if asked to."""
    t = make_topology()
    client, server = t.node("client"), t.node("server")
    router = t.router("r")
    t.connect(client, router)
    far = t.connect(server, router)
    t.expect(client, server, far)  # the build proves the path before the test breaks it
    net = t.build()
    # the router's own ICMP rate limit would silence the third error in a row
    net["r"].netlink.sysctl("net.ipv4.icmp_ratelimit", "0")
    return net


# -- echo reply ------------------------------------------------------------------


def test_echo_reply_between_bridged_nodes(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    result = ping(pair.a, pair.b)
    assert (result.state, result.ok) == ("reply", True)
    assert (result.src, result.dst, result.dst_name) == ("a", pair.b_ip, "b")
    assert result.proto == "icmp" and result.port is None
    assert result.rtt_ms is not None and result.rtt_ms > 0
    assert f"from {pair.b_ip}" in result.detail
    back = ping(pair.b, pair.a_ip)  # an address string works as well as a Node
    assert back.ok and back.dst_name == ""
    assert str(result).startswith(f"a -> b ({pair.b_ip}) icmp: reply in ")


def test_host_and_node_ping_each_other(make_host_only_link: Any) -> None:
    link = make_host_only_link()
    assert ping("host", link.node).ok
    back = ping(link.node, "host")  # "host": its address on the link they share
    assert back.ok and back.dst == link.host_ip and back.dst_name == "host"


def test_node_behind_nat_reaches_the_upstream(make_nat_uplink: Any) -> None:
    nat = make_nat_uplink()
    result = ping(nat.node, nat.upstream_ip)
    assert result.ok, result


def test_a_node_pings_its_own_address(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    assert ping(pair.a, pair.a).ok


# -- no route ------------------------------------------------------------------


def test_no_route_is_known_at_once_without_waiting(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    # b ignores echo requests, so a probe of b stays silent for its whole window
    pair.b.netlink.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    silent: list[ProbeResult] = []
    waiting = threading.Thread(target=lambda: silent.append(ping(pair.a, pair.b, timeout=2)))
    waiting.start()
    try:
        result = ping(pair.a, "10.201.0.1", timeout=2)  # a has no route off its switch
        # decided while the silent probe, started first with the same timeout, still waits
        assert waiting.is_alive()
    finally:
        waiting.join()
    assert (result.state, result.ok, result.sent, result.rtt_ms) == ("no-route", False, 0, None)
    assert "no route to 10.201.0.1" in result.detail
    assert silent[0].state == "timeout" and silent[0].sent > 1  # it resent in its window
    for proto, port in (("tcp", 80), ("udp", 53)):
        other = probe(pair.a, "10.201.0.1", port=port, proto=proto, timeout=3)
        assert (other.state, other.sent) == ("no-route", 0)


# -- ICMP errors -------------------------------------------------------------------


def test_icmp_host_unreachable_from_a_router(make_topology: Any) -> None:
    net = client_router_server(make_topology)
    client, server, router = net["client"], net["server"], net["r"]
    unreachable_route(router, str(server.ip))
    hop = client.routes[0][1]  # the router's address on the client's side
    for result in (
        ping(client, server),
        probe_tcp(client, server, 80),
        probe_udp(client, server, 53),
    ):
        assert (result.state, result.ok) == ("unreachable", False), result
        assert result.detail == f"ICMP host unreachable from {hop}"
        assert result.rtt_ms is not None


def test_icmp_errors_from_a_firewall_on_the_path(make_topology: Any, tmp_path: Path) -> None:
    net = client_router_server(make_topology)
    client, server, router = net["client"], net["server"], net["r"]
    nft(router, tmp_path, (
        "table ip probetest {\n"
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        "    tcp dport 81 reject with icmp type admin-prohibited\n"
        "    udp dport 53 reject\n"
        "  }\n"
        "}\n"
    ))
    refused = probe_tcp(client, server, 81)
    assert refused.state == "unreachable"
    assert "communication administratively prohibited" in refused.detail
    # port unreachable, but from a hop: that is not the destination's verdict
    hop = probe_udp(client, server, 53)
    assert hop.state == "unreachable"
    assert "port unreachable" in hop.detail and "not by the destination" in hop.detail
    assert ping(client, server).ok  # the rest of the path is untouched


# -- TCP ---------------------------------------------------------------------------


def test_tcp_open_and_closed_between_nodes(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    with tcp_listener(pair.b) as port_open, closed_tcp_port(pair.b) as port_closed:
        is_open = probe_tcp(pair.a, pair.b, port_open)
        is_closed = probe_tcp(pair.a, pair.b, port_closed)
    assert (is_open.state, is_open.ok) == ("open", True)
    assert is_open.detail == f"SYN/ACK from {pair.b_ip}"
    assert (is_closed.state, is_closed.ok) == ("closed", False)
    assert is_closed.detail == f"RST from {pair.b_ip}"


def test_tcp_open_on_the_host_end_of_a_host_only_link(make_host_only_link: Any) -> None:
    link = make_host_only_link()
    srv = socket.create_server((link.host_ip, 0))  # the test process, root namespace
    try:
        port = srv.getsockname()[1]
        assert probe_tcp(link.node, "host", port).state == "open"
    finally:
        srv.close()
    with tcp_listener(link.node) as port:
        assert probe_tcp("host", link.node, port).state == "open"


def test_tcp_filtered_by_a_drop_rule_in_the_switch(
    make_bridged_pair: Any, tmp_path: Path
) -> None:
    pair = make_bridged_pair()
    switch = pair.topology.nodes["switch"]
    with tcp_listener(pair.b) as port:
        assert probe_tcp(pair.a, pair.b, port).state == "open"
        nft(switch, tmp_path, (
            "table bridge probetest {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    tcp dport {port} drop\n"
            "  }\n"
            "}\n"
        ))
        result = probe_tcp(pair.a, pair.b, port, timeout=0.5)
    assert (result.state, result.ok, result.rtt_ms) == ("filtered", False, None)
    assert result.sent > 1  # resent inside the window before calling it silence
    assert "no answer within 0.5 s" in result.detail
    assert ping(pair.a, pair.b).ok  # only that port is dropped


def test_a_busybox_server_in_a_container_is_open(
    make_bridged_pair: Any, docker_only: None
) -> None:
    pair = make_bridged_pair()
    server = pair.b.spawn(["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"])
    try:
        result = wait_for_tcp(pair.a, pair.b, 8080)  # until httpd listens
        assert result.state == "open", result
    finally:
        server.stop()


# -- UDP ---------------------------------------------------------------------------


def test_udp_reply_port_unreachable_and_silence(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    with udp_service(pair.b, reply=True) as echo, udp_service(pair.b, reply=False) as mute:
        answered = probe_udp(pair.a, pair.b, echo, payload=b"hello")
        quiet = probe_udp(pair.a, pair.b, mute, timeout=0.5)
    nobody = probe_udp(pair.a, pair.b, echo)  # the socket is closed now
    assert (answered.state, answered.ok) == ("open", True)
    assert answered.detail == f"10-byte reply from {pair.b_ip}:{echo}"  # b"echo:hello"
    assert (quiet.state, quiet.ok) == ("open|filtered", False)
    assert (nobody.state, nobody.ok) == ("closed", False)
    assert nobody.detail == f"ICMP port unreachable from {pair.b_ip}"


# -- a bare image --------------------------------------------------------------------


def test_a_container_without_any_tools_is_probeable(
    make_topology: Any, docker_only: None
) -> None:
    t = make_topology(image=BARE_IMAGE, command=DEFAULT_COMMAND)
    x, y = t.node("x"), t.node("y")
    sw = t.switch("lan")
    t.connect(x, sw)
    t.connect(y, sw)
    t.expect(x, y, sw)  # self-verification probes from inside the bare container too
    net = t.build()
    x_node, y_node = net["x"], net["y"]
    with pytest.raises(CommandNotFoundError):  # no shell: the image really is bare
        y_node.exec(["/bin/sh", "-c", "true"])
    assert ping(x_node, y_node).ok and ping(y_node, x_node).ok
    assert probe_tcp(x_node, y_node, 80).state == "closed"
    assert probe_udp(x_node, y_node, 53).state == "closed"
    with tcp_listener(y_node) as port:
        assert probe_tcp(x_node, y_node, port).state == "open"


# -- the egress guard ------------------------------------------------------------------


def test_egress_guard_sends_nothing_towards_docker0() -> None:
    """From the host towards an address routed over docker0 (no container has it)."""
    if not os.path.exists("/sys/class/net/docker0") or shutil.which("tcpdump") is None:
        pytest.skip("needs docker0 and tcpdump")
    dst = "172.17.0.123"
    capture = subprocess.Popen(
        ["tcpdump", "-i", "docker0", "-n", "-p", "-U", "-w", "/dev/null", f"host {dst}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert capture.stderr is not None
        first = capture.stderr.readline()  # once this is printed, tcpdump is capturing
        assert "listening on docker0" in first, first
        with pytest.raises(EgressError, match="docker0") as refused:
            ping("host", dst)
        assert "nothing was sent" in str(refused.value)
        with pytest.raises(EgressError, match="docker0"):
            probe_tcp("host", dst, 80)
        with pytest.raises(EgressError, match="docker0"):
            probe_udp("host", dst, 53)
        with pytest.raises(EgressError):
            assert_unreachable("host", dst)
    finally:
        os.kill(capture.pid, 15)  # the one process this test started
        _, err = capture.communicate(timeout=10)
    assert "0 packets captured" in first + err, err


def test_egress_guard_in_a_node_refuses_a_link_no_topology_made(
    make_bridged_pair: Any,
) -> None:
    pair = make_bridged_pair()
    # a veth pair made by hand inside a's namespace: both ends stay in there
    pair.a.netlink.add_veth("rogue0", "rogue1")
    pair.a.netlink.configure("rogue0", [("10.99.0.1", 24)])
    with pytest.raises(EgressError, match="'rogue0'"):
        ping(pair.a, "10.99.0.2")
    assert ping(pair.a, pair.b).ok  # topology links stay allowed


# -- assertions -------------------------------------------------------------------------


def test_assertion_helpers_name_both_ends_and_what_was_seen(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    assert assert_reachable(pair.a, pair.b).ok
    assert assert_unreachable(pair.a, "10.201.0.1").state == "no-route"
    with closed_tcp_port(pair.b) as port, pytest.raises(AssertionError) as failed:
        assert_reachable(pair.a, pair.b, port, timeout=0.3)
    message = str(failed.value)
    assert f"a -> b ({pair.b_ip}) over tcp/{port}" in message
    assert "observed closed: RST from" in message and "2 attempt(s)" in message
    with pytest.raises(AssertionError) as reached:
        assert_unreachable(pair.a, pair.b)
    message = str(reached.value)
    assert f"a -> b ({pair.b_ip}) over icmp to be unreachable, but observed reply" in message
    with udp_service(pair.b, reply=False) as mute:
        quiet = assert_unreachable(pair.a, pair.b, mute, proto="udp", timeout=0.3)
    assert quiet.state == "open|filtered"


def test_assertion_tracebacks_point_at_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_hide="""
        from pytest_netns import assert_unreachable

        def test_loopback():
            assert_unreachable("host", "127.0.0.1")  # the user's line
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the user's line*", "E*AssertionError: expected host -> "
                                 "127.0.0.1 over icmp to be unreachable, but observed reply*"])
    assert "probes.py" not in result.stdout.str()


# -- matching, concurrency, bookkeeping -------------------------------------------------


def test_concurrent_probes_never_take_each_others_answers(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    # eight port-unreachables at once would meet b's ICMP rate limit (that is silence)
    pair.b.netlink.sysctl("net.ipv4.icmp_ratelimit", "0")
    results: list[tuple[str, ProbeResult]] = []
    lock = threading.Lock()
    with tcp_listener(pair.b) as open_port, closed_tcp_port(pair.b) as shut_port, \
            udp_service(pair.b, reply=True) as echo:
        jobs = [
            ("open", lambda: probe_tcp(pair.a, pair.b, open_port)),
            ("closed", lambda: probe_tcp(pair.a, pair.b, shut_port)),
            ("reply", lambda: ping(pair.a, pair.b)),
            ("reply", lambda: ping(pair.b, pair.a)),
            ("open", lambda: probe_udp(pair.a, pair.b, echo)),
            ("closed", lambda: probe_udp(pair.a, pair.b, shut_port)),
        ] * 8

        def work(want: str, job: Any) -> None:
            got = job()
            with lock:
                results.append((want, got))

        threads = [threading.Thread(target=work, args=job) for job in jobs]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert len(results) == len(jobs)
    wrong = [str(got) for want, got in results if got.state != want]
    assert not wrong, wrong


def test_observers_and_stats_see_every_probe(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    seen: list[object] = []
    observers.append(seen.append)
    try:
        before = PROBE_STATS["probes"]
        first = ping(pair.a, pair.b)
        second = probe_tcp(pair.a, pair.b, 9)
    finally:
        observers.remove(seen.append)
    assert seen == [first, second]
    assert PROBE_STATS["probes"] == before + 2


def test_closed_topology_leaves_no_namespace_pinned_after_probing(
    make_bridged_pair: Any,
) -> None:
    pair = make_bridged_pair()
    assert ping(pair.a, pair.b).ok and probe_tcp(pair.a, pair.b, 9).state == "closed"
    assert probe_udp(pair.a, pair.b, 9).state == "closed" and ping(pair.b, pair.a).ok
    cookies = {node.name: netns_cookie(node) for node in (pair.a, pair.b)}
    inode = {node.name: os.stat(node.netns).st_ino for node in (pair.a, pair.b)}
    assert {"a", "b"} <= set(open_probers())
    a, b = pair.a, pair.b
    pair.close()
    janitor().drain()  # containers are released and removed by the janitor
    assert a.released and b.released
    assert not ({"a", "b"} & set(open_probers()))
    held = held_namespaces()
    assert not set(cookies.values()) & held["cookies"], "a probe socket still pins a namespace"
    assert not set(inode.values()) & held["inodes"], "a thread or fd still pins a namespace"
    if a.container is None:
        assert not os.path.exists(a.netns) and not os.path.exists(b.netns)
    with pytest.raises(NodeClosedError, match="was closed"):
        ping(a, "10.201.0.1")


def netns_cookie(node: Node) -> int:
    sock = node.call(socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")


def held_namespaces() -> dict[str, set[int]]:
    """Namespaces this process holds: by its sockets' cookies, its fds' and threads' inodes."""
    cookies: set[int] = set()
    inodes: set[int] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            with contextlib.suppress(OSError):
                dup = socket.socket(fileno=os.dup(int(fd)))
                try:
                    raw = dup.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
                    cookies.add(int.from_bytes(raw, "little"))
                finally:
                    dup.close()
        elif target.startswith("net:["):
            inodes.add(int(target[5:-1]))
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            inodes.add(os.stat(f"/proc/self/task/{tid}/ns/net").st_ino)
    return {"cookies": cookies, "inodes": inodes}


# -- self-verification -----------------------------------------------------------------


def test_setup_fails_with_a_reason_when_the_path_is_blocked(
    make_topology: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = make_topology(label="blocked")
    a, b = t.node("a"), t.node("b")
    sw = t.switch("lan")
    t.connect(a, sw)
    t.connect(b, sw)
    t.expect(a, b, sw)
    built: dict[str, Any] = {}
    original = Constructor._create_routes

    def then_block(self: Constructor) -> None:
        # what a host firewall would do to a bridge, done inside our own switch
        original(self)
        topo = built["topo"] = self.topo
        nft(topo.nodes["lan"], tmp_path, (
            "table bridge probetest {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy drop;\n"
            "  }\n"
            "}\n"
        ))

    monkeypatch.setattr(Constructor, "_create_routes", then_block)
    with pytest.raises(VerificationError) as failed:
        t.build()
    message = str(failed.value)
    assert "a cannot reach b" in message and "over lan" in message
    assert "icmp: timeout" in message and "no answer within" in message
    assert "verify=False" in message
    topo = built["topo"]
    assert topo.closed  # the half-built topology was torn down
    if topo.nodes["a"].container is None:
        assert not os.path.exists(topo.nodes["lan"].netns)


def test_verify_false_skips_the_check(make_bridged_pair: Any) -> None:
    before = PROBE_STATS["probes"]
    pair = make_bridged_pair(verify=False)
    assert PROBE_STATS["probes"] == before  # the build sent no probe
    make_bridged_pair()
    assert PROBE_STATS["probes"] > before  # while a verified build does
    assert_reachable(pair.a, pair.b)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: ping("host", "not-an-ip"), InvalidAddressError, "'not-an-ip'"),
        (lambda: ping("host", 12), InvalidAddressError, "12"),
        (lambda: ping("nowhere", "127.0.0.1"), InvalidProbeError, "'nowhere'"),
        (lambda: probe_tcp("host", "127.0.0.1", 0), InvalidProbeError, "port 0"),
        (lambda: probe_udp("host", "127.0.0.1", 70000), InvalidProbeError, "70000"),
        (lambda: probe_tcp("host", "127.0.0.1", "80"), InvalidProbeError, "'80'"),
        (lambda: probe("host", "127.0.0.1", 80, proto="sctp"), InvalidProbeError, "'sctp'"),
        (lambda: probe("host", "127.0.0.1", 80, proto="icmp"), InvalidProbeError, "port=80"),
        (lambda: ping("host", "127.0.0.1", timeout=0), InvalidProbeError, "timeout 0"),
        (lambda: ping("host", "host"), InvalidProbeError, "both source and destination"),
    ],
)
def test_bad_input_names_the_value(call: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as raised:
        call()
    assert isinstance(raised.value, NetnsError)
    assert words in str(raised.value)


def test_loopback_probes_of_the_host_itself() -> None:
    """The host probing 127.0.0.1 stays on lo, which the guard allows."""
    assert ping("host", "127.0.0.1").ok
    with closed_tcp_port(_host()) as port:
        assert probe_tcp("host", "127.0.0.1", port).state == "closed"


def _host() -> Node:
    from pytest_netns.nodes.host import host

    return host()


def test_a_node_destination_is_its_address_on_a_segment_shared_with_the_source(
    make_topology: Any,
) -> None:
    """Issue 11 #11: with `a` on a link to `b` and on one to the host,
    `assert_reachable("host", net["a"])` probed a's first address (on a-b): EgressError."""
    t = make_topology()
    a, b = t.node("a"), t.node("b")
    ab = t.connect(a, b)
    ah = t.connect(a, HOST)
    net = t.build()
    assert net["a"].ip == net.ip_of("a", ab) != net.ip_of("a", ah)
    assert assert_reachable("host", net["a"]).dst == net.ip_of("a", ah)
    assert assert_reachable(net["b"], net["a"]).dst == net.ip_of(net["a"], ab)
    assert net.ip_of("a", ah) == net.segments[ah].ip_of("a")


def test_wait_for_tcp_is_one_line_of_the_report(make_bridged_pair: Any) -> None:
    """Issue 11: its retries filled the failure report with about 190 "FAIL closed" lines."""
    pair = make_bridged_pair()
    seen: list[object] = []
    observers.append(seen.append)
    try:
        never = wait_for_tcp(pair.a, pair.b, 9302, timeout=0.5)
        pair.b.spawn(["busybox", "sh", "-c",
                      "busybox sleep 0.5; busybox nc -ll -p 9301 -e busybox cat"])
        late = wait_for_tcp(pair.a, pair.b, 9301)
    finally:
        observers.remove(seen.append)
    assert seen == [never, late]
    assert never.state == "closed" and re.search(r"; waited 0\.\d s: closed x\d+$", never.detail)
    assert late.ok and re.search(r"; waited \d+\.\d s: closed x\d+, then open$", late.detail)
