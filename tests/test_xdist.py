"""Parallel safety: `pytest -n 3` over many topology tests never collides.

A generated file of topology tests (every recipe, both backends, several
rounds) runs under pytest-xdist with three workers. Each test builds its
topology with self-verification on (a probe across it: two live topologies
sharing a subnet on the host would misroute it), holds it briefly while the
other workers build theirs, and records what it used. The run must pass, no
interface, namespace or container name may ever repeat, no two topologies
that were certainly up at the same time may share a subnet, and each
worker's session must leave nothing behind.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

from test_reaper import process_running, session_objects

from conftest import docker_required

WORKERS = 3
ROUNDS = 3
RECIPES = ("bridged_pair", "nat_uplink", "host_only_link", "isolated_container")

INNER = '''
import json, os, time
import pytest
from pytest_netns.lifecycle import hooks

BACKENDS = os.environ["PN_BACKENDS"].split(",")
RECIPES = os.environ["PN_RECIPES"].split(",")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("round_", range(int(os.environ["PN_ROUNDS"])))
def test_topology(round_, recipe, backend, request, netns_session):
    built = request.getfixturevalue(f"make_{recipe}")(backend=backend)
    started = time.time()  # the topology is certainly up from here...
    topo = built.topology
    time.sleep(0.1)  # hold it while the other workers build theirs
    record = {
        "test": request.node.nodeid, "worker": os.environ.get("PYTEST_XDIST_WORKER"),
        "sid": netns_session.id, "pid": os.getpid(), "started": started,
        "watchdog": hooks.current_watchdog().pid,
        "subnets": [str(s.subnet) for s in topo.segments.values() if s.kind != "stub"],
        "host_links": [i.ifname for i in topo.host_interfaces],
        "netns": [n.netns for n in topo.nodes.values() if n.container is None],
        "containers": [n.container.name for n in topo.nodes.values() if n.container is not None],
    }
    record["ended"] = time.time()  # ...to here (close() frees its subnets at once)
    built.close()
    with open(os.path.join(os.environ["PN_OUT"], f"{len(os.listdir(os.environ['PN_OUT']))}-"
              f"{os.getpid()}-{time.monotonic_ns()}.json"), "w") as f:
        json.dump(record, f)
'''


def _backends() -> str:
    from pytest_netns.nodes.engine import docker_client, engine_available

    if not engine_available():
        if docker_required():
            raise AssertionError("no Docker engine answers (required in CI)")
        return "namespace"
    from pytest_netns.nodes.images import DEFAULT_IMAGE, ensure_image

    ensure_image(docker_client(), DEFAULT_IMAGE)  # build it once, not in three workers
    return "namespace,docker"


def _collisions(records: list[dict[str, Any]]) -> list[str]:
    """Pairs of topologies certainly up at the same time that share a subnet."""
    found = []
    for a, b in combinations(records, 2):
        if a["ended"] < b["started"] or b["ended"] < a["started"]:
            continue
        for sa in a["subnets"]:
            for sb in b["subnets"]:
                if ipaddress.ip_network(sa).overlaps(ipaddress.ip_network(sb)):
                    found.append(f"{a['test']} ({sa}) and {b['test']} ({sb})")
    return found


def _max_overlap(records: list[dict[str, Any]]) -> int:
    events = sorted([(r["started"], 1) for r in records] + [(r["ended"], -1) for r in records])
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


def test_three_workers_never_collide(tmp_path: Path) -> None:
    backends = _backends()
    out = tmp_path / "records"
    out.mkdir()
    (tmp_path / "test_many.py").write_text(textwrap.dedent(INNER))
    env = dict(os.environ, PN_BACKENDS=backends, PN_RECIPES=",".join(RECIPES),
               PN_ROUNDS=str(ROUNDS), PN_OUT=str(out))
    expected = ROUNDS * len(RECIPES) * len(backends.split(","))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", str(WORKERS), "-q", "-p", "no:cacheprovider",
         str(tmp_path / "test_many.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert f"{expected} passed" in done.stdout, done.stdout[-3000:]

    records = [json.loads(p.read_text()) for p in out.iterdir()]
    assert len(records) == expected
    workers = {r["worker"]: (r["sid"], r["pid"]) for r in records}
    watchdogs = {r["watchdog"] for r in records}
    assert len(watchdogs) == WORKERS, f"one watchdog per worker expected: {watchdogs}"
    assert not [pid for pid in watchdogs if process_running(pid)], "a watchdog outlived its worker"
    assert len(workers) == WORKERS, f"not every worker ran topologies: {sorted(workers)}"
    assert len({sid for sid, _ in workers.values()}) == WORKERS, workers
    for kind in ("host_links", "netns", "containers"):
        repeated = [n for n, c in Counter(n for r in records for n in r[kind]).items() if c > 1]
        assert not repeated, f"{kind} used twice: {repeated}"
    assert not _collisions(records), _collisions(records)
    left = {sid: session_objects(sid, pid, docker="docker" in backends)
            for sid, pid in workers.values()}
    assert not any(left.values()), f"left behind after the run: {left}"
    print(f"\n{expected} topology tests on {WORKERS} workers ({backends}) in {took:.1f} s; "
          f"up to {_max_overlap(records)} topologies up at once")


def test_automatic_subnets_avoid_the_topologys_own_explicit_ones(make_nat_uplink: Any) -> None:
    """An explicit inside subnet equal to the pool's next free one must not be picked again
    for the upstream side (the router would hold one subnet on two links)."""
    from pytest_netns.topology.subnets import release, reserve

    (upcoming,) = reserve([24], owner="test_xdist probe")
    release([upcoming])
    nat = make_nat_uplink(subnet=str(upcoming))
    assert nat.subnet == str(upcoming)
    assert not ipaddress.ip_network(nat.subnet).overlaps(
        ipaddress.ip_network(nat.upstream_subnet)), (nat.subnet, nat.upstream_subnet)


def test_reservations_of_another_version_are_kept_and_ignored() -> None:
    """Another pytest-netns on the host (another version, another family) shares the file:
    its entries must neither break this one's allocation nor be dropped by it."""
    from pytest_netns.topology.subnets import _locked_reservations, release, reserve

    foreign = ["fd6e:6574:6e73:77::/64", "vlan:42"]  # a family it knows, and one it does not
    with _locked_reservations() as table:
        for key in foreign:
            table[key] = {"pid": os.getpid(), "owner": "another version"}
    try:
        (net,) = reserve([24], owner="test_xdist foreign")
        release([net])
        with _locked_reservations() as table:
            assert [table[key]["owner"] for key in foreign] == ["another version"] * 2
    finally:
        with _locked_reservations() as table:
            for key in foreign:
                table.pop(key, None)
