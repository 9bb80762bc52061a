"""What the speed work changed, checked with tools that are not pytest-netns.

- Threads and descriptors do not grow with a topology's size (read from /proc).
- Verification checks every segment by default, with no neighbour table
  left fuller than its probes would have left it (iproute2's `ip neigh`),
  and a large segment leaves no entries at all.
- Switch members send no IPv6 chatter (no link-local address; `ip -6 addr`),
  and the switch's bridge knows the checked members' ports (`bridge fdb`).
- Containers started ahead are handed to one topology each, carry the
  session's labels, and are gone when their topology is (the Docker API).

No timing is asserted here; `benchmarks/` measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from netcheck import iproute_json
from test_probes import nft

from pytest_netns import VerificationError
from pytest_netns.probes.engine import PROBE_STATS
from pytest_netns.topology.verify import LEARN_LIMIT


def neighbours(netns: str) -> dict[str, str]:
    """{address: MAC} of the IPv4 neighbour entries in a namespace, from iproute2."""
    return {n["dst"]: n.get("lladdr", "") for n in iproute_json(netns, "-4", "neigh", "show")}


def mac_of(netns: str, ifname: str) -> str:
    (link,) = iproute_json(netns, "link", "show", "dev", ifname)
    return str(link["address"])


def star(make_topology: Any, n: int, verify: bool = True) -> Any:
    t = make_topology(backend="namespace", verify=verify, label=f"star{n}")
    switch = t.switch("lan")
    for i in range(n):
        t.connect(t.node(f"n{i}"), switch)
    return t.build()


def test_threads_and_descriptors_do_not_grow_with_the_topology(
    make_topology: Any, namespace_only: None
) -> None:
    star(make_topology, 4, verify=False)  # the worker pool and the janitor are up now
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    topo = star(make_topology, 120, verify=False)
    assert len(topo.members()) == 120
    assert threading.active_count() <= threads + 2  # at most a pool worker or two more
    assert len(os.listdir("/proc/self/fd")) <= fds + 4  # no descriptor per node


def test_a_custom_topology_is_verified_without_expect(
    make_topology: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_netns.topology.construct import Constructor

    before = PROBE_STATS["probes"]
    t = make_topology(label="checked")
    a, b, c = t.node("a"), t.node("b"), t.node("c")
    lan = t.switch("lan")
    for name in (a, b, c):
        t.connect(name, lan)
    t.build()
    assert PROBE_STATS["probes"] - before == 2  # a star: a -> b, a -> c

    # a switch that drops everything fails the build, naming the segment
    t = make_topology(label="blocked")
    a, b = t.node("a"), t.node("b")
    lan = t.switch("lan")
    t.connect(a, lan)
    t.connect(b, lan)
    original = Constructor._create_routes

    def then_block(self: Constructor) -> None:
        original(self)
        nft(self.topo.nodes["lan"], tmp_path, "table bridge blocked {\n chain forward {\n"
            "  type filter hook forward priority 0; policy drop;\n }\n}\n")

    monkeypatch.setattr(Constructor, "_create_routes", then_block)
    with pytest.raises(VerificationError, match=r"a cannot reach b \(.*\) over lan"):
        t.build()


def test_verification_leaves_what_arp_would_have(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    seen_a, seen_b = neighbours_of(pair.a), neighbours_of(pair.b)
    assert seen_a.get(pair.b_ip) == mac_seen_inside(pair.b, "eth1")
    assert seen_b.get(pair.a_ip) == mac_seen_inside(pair.a, "eth1")
    assert len(seen_a) == len(seen_b) == 1


def neighbours_of(node: Any) -> dict[str, str]:
    return neighbours(node.netns)


def mac_seen_inside(node: Any, ifname: str) -> str:
    return mac_of(node.netns, ifname)


def test_a_large_segment_is_verified_without_filling_the_neighbour_table(
    make_topology: Any, namespace_only: None
) -> None:
    """More checks than LEARN_LIMIT entries allow: verified in rounds, nothing left."""
    n = LEARN_LIMIT // 2 + 20
    topo = star(make_topology, n)
    hub = topo["n0"]
    assert neighbours(hub.netns) == {}  # the rounds removed what they added
    assert all(neighbours(topo[f"n{i}"].netns) == {} for i in (1, n // 2, n - 1))
    fdb = subprocess.run(["nsenter", f"--net={topo['lan'].netns}", "bridge", "-j", "fdb",
                          "show", "br", "br0"], capture_output=True, text=True, check=True)
    learned = {e["mac"] for e in json.loads(fdb.stdout) if "permanent" not in e.get("state", "")}
    assert mac_of(topo[f"n{n - 1}"].netns, "eth1") in learned  # the bridge was told


def test_switch_members_send_no_ipv6_chatter(make_bridged_pair: Any, namespace_only: None
                                              ) -> None:
    pair = make_bridged_pair()
    for node in (pair.a, pair.b):
        (link,) = iproute_json(node.netns, "link", "show", "dev", "eth1")
        assert "UP" in link["flags"] and link["operstate"] == "UP"
        addrs = iproute_json(node.netns, "-6", "addr", "show", "dev", "eth1")
        assert not [a for entry in addrs for a in entry.get("addr_info", [])
                    if a.get("scope") == "link"], addrs
    sysctl = subprocess.run(["nsenter", f"--net={pair.switch_netns}", "cat",
                             "/proc/sys/net/ipv6/conf/br0/disable_ipv6"],
                            capture_output=True, text=True, check=True)
    assert sysctl.stdout.strip() == "1"


def test_containers_started_ahead_serve_one_topology_each(
    make_bridged_pair: Any, docker_only: None, netns_session: Any
) -> None:
    from pytest_netns.nodes import prefetch
    from pytest_netns.nodes.engine import docker_client

    pool = prefetch.current()
    assert pool is not None, "prefetching is off in this process"
    first = make_bridged_pair()
    waiting = set(prefetch.waiting())  # started for the next topology while this test runs
    assert len(waiting) >= 2, (waiting, pool.failures())
    second = make_bridged_pair()
    theirs = {second.a.container.name, second.b.container.name}
    assert theirs <= waiting  # the second topology got containers started ahead
    assert not theirs & {first.a.container.name, first.b.container.name}
    client = docker_client()
    for name in theirs:
        labels = client.containers.get(name).labels
        assert labels["pytest-netns.session"] == netns_session.id
        assert labels["pytest-netns.prefetched"] == "1"
    taken = second.a.container.name
    second.close()
    from pytest_netns.kernel.janitor import janitor

    janitor().drain()
    assert not client.containers.list(all=True, filters={"name": f"^/{taken}$"})
    assert taken not in prefetch.waiting()  # never handed out again


def test_a_custom_command_is_never_started_ahead(make_topology: Any, docker_only: None
                                                 ) -> None:
    from pytest_netns.nodes import prefetch

    before = set(prefetch.waiting())
    t = make_topology(command=["/bin/busybox", "sleep", "1000"])
    t.node("x")
    net = t.build()
    assert "prefetched" not in net["x"].container.name
    assert set(prefetch.waiting()) == before


def test_a_node_process_starts_in_the_callers_directory(
    make_topology: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, namespace_only: None
) -> None:
    """Shared workers fork a namespace node's processes; the caller's directory still counts."""
    t = make_topology()
    t.node("x")
    net = t.build()
    monkeypatch.chdir(tmp_path)
    code, out = net["x"].exec(["pwd"])
    assert (code, out.strip()) == (0, str(tmp_path))
    with open(tmp_path / "marker", "w") as f:
        f.write("here")
    code, out = net["x"].exec(["cat", "marker"])  # a relative path, from the same place
    assert (code, out) == (0, "here")
