"""Shared topologies: `netns_factory` in a user's module-scoped fixture, run as a user would.

Each test runs a small test suite in a pytest subprocess and reads what it
left: which namespaces its tests saw (from a JSON file the inner tests
write), its report sections and summary, and its captures with tcpdump. The
crash test SIGKILLs an inner pytest that holds a shared topology and
watches, with iproute2, the Docker engine and /proc, until it is gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_reaper import _dead_pid, kill_and_wait, session_objects

SUITE = {
    "test_db": '''
import json, os

import pytest

SEEN = os.path.join(os.path.dirname(__file__), "seen.json")


def record(name, value):
    seen = json.load(open(SEEN)) if os.path.exists(SEEN) else {}
    seen[name] = value
    json.dump(seen, open(SEEN, "w"))


@pytest.fixture(scope="module")
def db_net(netns_factory):
    with netns_factory.bridged_pair(ipv6=True) as net:
        yield net


def ping(node, name, count):
    binary = "/bin/busybox" if node.container is not None else "busybox"
    code, out = node.exec([binary, "ping", "-c", str(count), "-i", "0.2", name])
    assert code == 0, out


def test_one(db_net):
    ping(db_net.a, "b", 2)
    record("one", [db_net.a.netns, db_net.b_ip6])


def test_two(db_net):
    ping(db_net.a, "b", 3)
    record("two", [db_net.a.netns, db_net.b_ip6])


def test_fails_without_asking_for_it():
    assert False, "unrelated failure"


def test_fails_using_it(db_net):
    from pytest_netns import assert_unreachable

    assert_unreachable(db_net.a, db_net.b, family=6)
''',
    "test_later": '''
import json, os

SEEN = os.path.join(os.path.dirname(__file__), "seen.json")


def test_after_the_module():
    seen = json.load(open(SEEN))
    record = dict(seen, after={"gone": not os.path.exists(seen["one"][0])
                               or seen["one"][0].startswith("/proc/")})
    json.dump(record, open(SEEN, "w"))
''',
}


def run_suite(pytester: pytest.Pytester, backend: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(**SUITE)
    return pytester.runpytest_subprocess(f"--netns-backend={backend}", "-p", "no:cacheprovider",
                                         "-p", "no:randomly", *args)


def sections(result: pytest.RunResult) -> dict[str, str]:
    """Each failed test's pytest-netns section, by test name."""
    text = result.stdout.str()
    out = {}
    for m in re.finditer(r"_{3,} (test_\w+) _{3,}\n(.*?)(?=\n_{3,} test_|\n={3,} )", text,
                         re.S):
        body = m.group(2)
        if "pytest-netns: the network at failure" in body:
            out[m.group(1)] = body.split("pytest-netns: the network at failure", 1)[1]
    return out


def test_a_module_scoped_topology_is_shared_then_removed(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    result = run_suite(pytester, netns_backend)
    result.assert_outcomes(passed=3, failed=2)
    seen = json.loads((pytester.path / "seen.json").read_text())
    assert seen["one"] == seen["two"], seen  # one topology, shared by the module's tests
    assert seen["after"] == {"gone": True}  # closed when the module ended
    if not seen["one"][0].startswith("/proc/"):
        assert not os.path.exists(seen["one"][0])
    # every failing test that ran while it was up describes it, used or not
    found = sections(result)
    assert set(found) == {"test_fails_without_asking_for_it", "test_fails_using_it"}, found
    for body in found.values():
        assert "topology bridged_pair (shared with other tests (netns_factory), up" in body
        assert seen["one"][1] in body  # b's IPv6 address in the table
    assert re.search(r"ok\s+a -> b \(fd[0-9a-f:]+\) icmp: reply", found["test_fails_using_it"])
    # counted in the summary: built once, shared by the four tests of its module
    result.stdout.fnmatch_lines([
        "*= pytest-netns =*",
        "1 topology built in * s, torn down in * s; * probes sent",
        "1 of them shared (netns_factory), by 4 tests",
    ])


def test_each_test_captures_a_shared_topology_for_its_own_window(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    run_suite(pytester, netns_backend, "--netns-capture=always", "-k", "one or two")
    counts = {}
    for name in ("test_one", "test_two"):
        (pcap,) = (pytester.path / ".netns-artifacts").glob(f"*{name}*/bridged_pair-switch.pcap")
        text = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True,
                              check=True).stdout
        counts[name] = len(re.findall(r"ICMP6?,? echo request", text))
    assert counts == {"test_one": 2, "test_two": 3}, counts


HELD = '''
import json, os, time

import pytest
from pytest_netns.lifecycle import hooks


@pytest.fixture(scope="module")
def shared(netns_factory):
    with netns_factory.bridged_pair(ipv6=True, verify=False) as net:
        yield net


def test_hold(shared, netns_session):
    wd = hooks.current_watchdog()
    info = {"sid": netns_session.id, "pid": os.getpid(), "watchdog": wd.pid,
            "netns": [n.netns for n in shared.topology.nodes.values()]}
    tmp = os.environ["PN_READY"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.environ["PN_READY"])
    time.sleep(600)
'''


def test_a_shared_topology_is_removed_within_seconds_of_a_sigkill(
    tmp_path: Path, netns_backend: str
) -> None:
    (tmp_path / "test_held.py").write_text(textwrap.dedent(HELD))
    ready = tmp_path / "ready.json"
    log = open(tmp_path / "inner.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"--netns-backend={netns_backend}", str(tmp_path / "test_held.py")],
        cwd=tmp_path, env=dict(os.environ, PN_READY=str(ready)), stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 180
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"inner pytest never got ready:\n{(tmp_path / 'inner.log').read_text()}")
        time.sleep(0.05)
    info: dict[str, Any] = json.loads(ready.read_text())
    docker = netns_backend == "docker"
    before = session_objects(info["sid"], info["pid"], docker=docker)
    assert any(x.startswith("netns ") for x in before), before  # the switch, at least
    assert any(x.startswith("subnet reservation fd") for x in before), before  # a /64
    if docker:
        assert any(x.startswith("container ") for x in before), before
    info["server"] = _dead_pid()  # kill_and_wait also watches a server: there is none
    objects, elapsed, left = kill_and_wait(proc, info, None, docker)
    left = [x for x in left if not x.startswith("server process")]
    print(f"\nshared topology on {netns_backend}: gone {objects:.2f} s after SIGKILL, "
          f"watchdog exited after {elapsed:.2f} s")
    assert not left, left
    assert not any(os.path.exists(path) for path in info["netns"] if path.startswith("/run/"))
