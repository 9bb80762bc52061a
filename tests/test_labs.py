"""Lab files end to end: `pytest-netns up/exec/inspect/graph/check/capture/down` as subprocesses.

Every command runs as a user runs it, the installed console script, each in
a process of its own, long after `up` has exited. What they claim is checked
with tools that are not pytest-netns: busybox inside the nodes (ping, ip,
env, nc), iproute2 entered into each node with nsenter, tcpdump reading the
captures, the Docker API, and the shared `netstate` tool, whose view of the
host must hold nothing of a lab once it is down. Only this test's objects
are looked at (its lab's session id, its processes' pids, a token in its
commands): other sessions run on this machine at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netcheck import iproute_json
from test_cli import SCRIPT, cli

# the shared tool sits beside the checkout (../shared), as CI lays it out
NETSTATE = next((p for p in (Path(__file__).resolve().parents[2] / "shared/tools/netstate",
                             Path("/work/shared/tools/netstate")) if p.exists()),
                Path("../shared/tools/netstate"))
STATE = Path("/run/pytest-netns")

# the contract's demo file, exactly as written there
DEMO = """\
name: demo
nodes:
  client: {}
  server: {}
  r1: {kind: router}
switches:
  lan: {subnet: 10.201.1.0/24}
  dmz: {subnet: 10.201.2.0/24}
links:
  - endpoints: [client, lan]
  - endpoints: [r1, lan]
  - endpoints: [r1, dmz]
  - endpoints: [server, dmz]
    ip: {server: 10.201.2.10}
    impair: {delay: 20ms}
"""

# three tiers: a client, a web server behind a router, a database only the web server reaches
LAB = """\
name: {name}
nodes:
  client:
    env: {{LAB_TOKEN: "{token}"}}
  web:
    command: [busybox, httpd, -f, -p, "8080", -h, /]
  db:
    command: [busybox, nc, -ll, -p, "5432", -e, busybox, echo, "{token}"]
  r1: {{kind: router}}
switches:
  lan: {{}}
  dmz: {{}}
links:
  - endpoints: [client, lan]
  - endpoints: [r1, lan]
  - endpoints: [r1, dmz]
  - endpoints: [web, dmz]
  - endpoints: [web, db]
expect:
  - {{from: client, to: web, tcp: 8080}}
  - {{from: client, to: web}}
  - {{from: [client, r1], to: db, reach: false}}
  - {{from: web, to: db, tcp: 5432}}
"""


# -- what a lab left, seen without pytest-netns ------------------------------------------


def netstate() -> list[str]:
    assert os.access(NETSTATE, os.X_OK), f"the shared netstate tool is missing at {NETSTATE}"
    return subprocess.run([str(NETSTATE)], capture_output=True, text=True, timeout=120,
                          check=True).stdout.splitlines()


def traces(*marks: str) -> set[str]:
    """Everything on the host that names one of `marks` (a session id, a pid, a token):
    netstate's view (links, addresses, namespaces, containers, processes in namespaces),
    Docker's (`docker ps -a`), and pytest-netns's state files."""
    found = {line for line in netstate() if any(m in line for m in marks)}
    ps = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}} {{.Labels}}"],
                        capture_output=True, text=True, check=False).stdout
    found |= {f"docker {line}" for line in ps.splitlines() if any(m in line for m in marks)}
    for sub in ("kept", "sessions"):
        found |= {f"{sub}/{n}" for n in os.listdir(STATE / sub) if n in marks} \
            if (STATE / sub).is_dir() else set()
    with contextlib.suppress(FileNotFoundError, ValueError):
        table = json.loads((STATE / "subnets.json").read_text())
        found |= {f"subnet {k} {v}" for k, v in table.items()
                  if str(v.get("owner", "")).split(":")[0] in marks or str(v.get("pid")) in marks}
    return found


def pid_traces(pid: int) -> set[str]:
    """Objects named after a pytest-netns process: netns names, link aliases, labels."""
    mark = re.compile(rf"(pytest-netns-[0-9a-f]+-{pid}-|pytest-netns:[0-9a-f]+:{pid}\b|"
                      rf"pytest-netns\.pid:{pid}\b)")
    return {line for line in netstate() if mark.search(line)} | {
        line for line in subprocess.run(
            ["docker", "ps", "-a", "--format", "{{.Names}} {{.Labels}}"],
            capture_output=True, text=True, check=False).stdout.splitlines()
        if f"pytest-netns.pid={pid}" in line}


# -- running labs ------------------------------------------------------------------------


@contextlib.contextmanager
def labs_lock(exclusive: bool = False) -> Iterator[None]:
    """`down --all` takes every lab down: tests that keep a lab up share this lock, and
    the one that runs `down --all` takes it alone."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "test-labs.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Lab:
    """One test's lab file and the commands run on it."""

    def __init__(self, path: Path, name: str, token: str, backend: str) -> None:
        self.path, self.name, self.token, self.backend = path, name, token, backend
        self.file = str(path)

    def run(self, *args: str, input: str | None = None,
            check: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=180,
                              input=input, check=False, cwd=self.path.parent)
        if check is not None:
            assert done.returncode == check, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def up(self) -> subprocess.CompletedProcess[str]:
        return self.run("up", self.file, "--backend", self.backend)

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("inspect", self.file, "--json").stdout)
        return data

    def busybox(self, node: str, *argv: str, check: int | None = 0) -> str:
        return self.run("exec", self.file, node, "--", "busybox", *argv, check=check).stdout


@pytest.fixture
def lab(tmp_path: Path, netns_backend: str) -> Iterator[Lab]:
    token = secrets.token_hex(4)
    name = f"lb{token}"
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.format(name=name, token=token))
    with labs_lock():
        yield Lab(path, name, token, netns_backend)
        cli("down", name)  # whatever the test left up


def addresses_inside(netns: str) -> set[str]:
    """IPv4 addresses of a node as iproute2 sees them from inside (entered with nsenter)."""
    return {a["local"] for link in iproute_json(netns, "addr", "show")
            for a in link.get("addr_info", []) if a.get("family") == "inet"
            and a["local"] != "127.0.0.1"}


# -- the contract's file ------------------------------------------------------------------


@pytest.fixture
def demo_lock() -> Iterator[None]:
    """The demo's subnets and name are fixed: one demo at a time on this host."""
    with labs_lock(), open(STATE / "test-lab-demo.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def test_the_contract_demo_file_works_as_written(tmp_path: Path, netns_backend: str,
                                                 demo_lock: None) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(DEMO)
    demo = Lab(path, "demo", "", netns_backend)
    try:
        demo.up()
        info = demo.info()
        assert info["name"] == "demo"
        assert set(info["nodes"]) == {"client", "server", "r1"}
        assert {n: v["kind"] for n, v in info["nodes"].items()} == {
            "client": "node", "server": "node", "r1": "router"}
        assert info["nodes"]["server"]["ip"] == "10.201.2.10"
        assert all("ip6" in v for v in info["nodes"].values())
        for node in info["nodes"].values():
            assert node["ip"] in addresses_inside(node["netns"])
        out = demo.busybox("client", "ping", "-c", "2", "-W", "3", "10.201.2.10")
        assert "2 packets received" in out
        assert rtt_ms(out) >= 40  # the server's link delays 20 ms each way
        link = next(ln for ln in info["links"] if set(ln["endpoints"]) == {"server", "dmz"})
        assert link["impairment"] == {"server->dmz": {"delay": 0.02},
                                      "dmz->server": {"delay": 0.02}}
        graph = demo.run("graph", demo.file, "--format", "mermaid").stdout
        assert graph.startswith("flowchart LR") and "10.201.2.10" in graph
        session = info["session"]
        assert traces(session)
    finally:
        demo.run("down", demo.file)
    assert traces(session) == set()


# -- a lab's whole life ------------------------------------------------------------------


def test_a_lab_is_built_used_checked_and_removed(lab: Lab) -> None:
    up = lab.up()
    info = lab.info()
    session = info["session"]
    assert info["backend"] == lab.backend
    # `up` has exited; the lab is still there, and every node says so from inside
    before = traces(session, lab.token)
    assert any(f"pytest-netns-{session}-" in line for line in before), before
    for name, node in info["nodes"].items():
        assert name in up.stdout and f"pytest-netns exec {lab.file} {name}" in up.stdout
        inside = addresses_inside(node["netns"])
        assert node["ip"] in inside and all(i["ip"] in inside for i in node["interfaces"])
        assert node["ip"] in up.stdout
        assert node["backend"] == ("container" if lab.backend == "docker" and
                                   node["kind"] == "node" else "namespace")
    web = info["nodes"]["web"]["ip"]
    assert "1 packets received" in lab.busybox("client", "ping", "-c", "1", "-W", "3", web)
    assert f"LAB_TOKEN={lab.token}" in lab.busybox("client", "env")
    db = next(i["ip"] for i in info["nodes"]["db"]["interfaces"])
    reply = lab.busybox("web", "sh", "-c", f"echo | busybox nc -w 3 {db} 5432")
    assert lab.token in reply  # the db node's own command answered
    # the file's expectations hold
    check = lab.run("check", lab.file)
    assert f"lab {lab.name}: 5 expected cell(s)" in check.stdout and "as expected" in \
        check.stdout, check.stdout
    assert "reachability (tcp/8080" in check.stdout and "reachability (icmp" in check.stdout
    graph = lab.run("graph", lab.file, "--format", "mermaid").stdout
    assert graph.startswith("flowchart LR")
    assert all(n in graph for n in ("client", "web", "db", "r1", "lan", "dmz", web))
    dot = lab.run("graph", lab.file, "--format", "dot").stdout
    assert dot.startswith("digraph network")
    lab.run("graph", lab.file, "--format", "svg", "-o", str(lab.path.parent / "lab.svg"))
    assert "<svg" in (lab.path.parent / "lab.svg").read_text()
    text = lab.run("inspect", lab.file).stdout
    assert f"topology {lab.name} (kept;" in text and f"{web}/" in text, text
    # cut the router off the dmz with busybox: check names the expectations that fail
    r1 = next(i for i in info["nodes"]["r1"]["interfaces"] if i["segment"] == "dmz")
    lab.run("exec", lab.file, "r1", "--", "busybox", "ip", "link", "set", r1["ifname"], "down")
    broken = lab.run("check", lab.file, check=1)
    assert "expect[0]: client -> web" in broken.stdout and "expected reachable" in broken.stdout
    assert "expect[1]: client -> web" in broken.stdout
    assert "expect[3]" not in broken.stdout, broken.stdout  # web still reaches db
    # down: nothing of it is left, as netstate and docker ps -a see the host
    done = lab.run("down", lab.file)
    assert f"lab {lab.name} is down" in done.stdout
    assert traces(session, lab.token) == set()
    assert lab.run("inspect").stdout.count(lab.name) == 0
    gone = lab.run("exec", lab.file, "client", "--", "true", check=1)
    assert f"lab {lab.name} is not up" in gone.stderr


def test_a_second_up_is_refused_naming_the_lab(lab: Lab) -> None:
    lab.up()
    session = lab.info()["session"]
    before = traces(session)
    proc = subprocess.Popen([SCRIPT, "up", lab.file, "--backend", lab.backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    assert err.startswith(f"pytest-netns up: LabStateError: lab {lab.name} (up, ")
    assert f"session {session}" in err and f"pytest-netns down {lab.name}" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    # (an older pytest-netns on this host may drop a kept session's reservations
    # meanwhile: it treats the lab's as a dead process's; only objects count here)
    objects = {line for line in before if not line.startswith("subnet ")}
    assert {line for line in traces(session) if not line.startswith("subnet ")} == objects
    assert pid_traces(proc.pid) == set()


def test_exec_without_a_command_is_a_shell(lab: Lab) -> None:
    lab.up()
    web = lab.info()["nodes"]["web"]["ip"]
    script = f"busybox ping -c 1 -W 3 {web} >/dev/null && echo reached\nexit 7\n"
    done = lab.run("exec", lab.file, "client", input=script, check=7)
    assert "reached" in done.stdout
    missing = lab.run("exec", lab.file, "client", "--", "no-such-program", check=None)
    assert missing.returncode in (126, 127), missing


def test_capture_writes_pcaps_that_tcpdump_reads(lab: Lab, tmp_path: Path) -> None:
    """To a file with -w, and as a pcap stream to a pipe; Ctrl-C (SIGINT) ends it."""
    lab.up()
    info = lab.info()
    client, web = info["nodes"]["client"]["ip"], info["nodes"]["web"]["ip"]
    pcap = tmp_path / "lan.pcap"
    for argv, target in ((["-w", str(pcap)], pcap), ([], tmp_path / "piped.pcap")):
        with open(target if not argv else os.devnull, "wb") as sink:
            proc = subprocess.Popen([SCRIPT, "capture", lab.file, "client", "lan", *argv],
                                    stdout=sink, stderr=subprocess.PIPE, text=True)
            assert proc.stderr is not None
            ready = proc.stderr.readline()
            assert ready.startswith("capturing link client-lan"), ready
            lab.busybox("client", "ping", "-c", "2", "-W", "3", web)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert re.search(r"\d+ frame\(s\) captured on link client-lan", err), err
        read = subprocess.run(["tcpdump", "-n", "-r", str(target)], capture_output=True,
                              text=True, check=True).stdout
        assert read.count(f"{client} > {web}: ICMP echo request") == 2, read
        assert read.count(f"{web} > {client}: ICMP echo reply") == 2, read


def test_a_lab_outlives_up_and_automatic_sweeps(lab: Lab) -> None:
    """The start-of-session sweep and the crash watchdog leave a lab alone; cleanup
    (of its session) removes it with its record."""
    from pytest_netns.lifecycle.reaper import sweep

    lab.up()
    info = lab.info()
    session = info["session"]
    assert not [line for line in sweep() if session in line]
    assert not [line for line in sweep(session_id=session) if session in line]
    web = info["nodes"]["web"]["ip"]
    assert "1 packets received" in lab.busybox("client", "ping", "-c", "1", "-W", "3", web)
    done = cli("cleanup", "--session", session)
    assert f"removed lab {lab.name} (session {session})" in done.stdout, done.stdout
    assert traces(session, lab.token) == set()
    assert lab.name not in lab.run("inspect").stdout


def test_down_all_takes_every_lab_down(tmp_path: Path, netns_backend: str) -> None:
    with labs_lock(exclusive=True):
        labs = []
        for i in range(2):
            token = secrets.token_hex(4)
            path = tmp_path / f"lab{i}.yaml"
            path.write_text(LAB.format(name=f"lb{token}", token=token))
            labs.append(Lab(path, f"lb{token}", token, netns_backend))
            labs[-1].up()
        sessions = [lab.info()["session"] for lab in labs]
        listing = labs[0].run("inspect").stdout
        assert all(lab.name in listing for lab in labs)
        listed = json.loads(labs[0].run("inspect", "--json").stdout)["labs"]
        assert {lab.name for lab in labs} <= {entry["name"] for entry in listed}
        done = labs[0].run("down", "--all")
        assert all(f"lab {lab.name} is down" in done.stdout for lab in labs)
        assert traces(*sessions, *(lab.token for lab in labs)) == set()
        assert "no lab is up" in labs[0].run("down", "--all").stdout


def test_a_failed_build_leaves_nothing(tmp_path: Path, netns_backend: str) -> None:
    """A file that is valid but fails part-way (the kernel refuses a route): the half-built
    lab is removed before the error is printed, and its name is free again."""
    token = secrets.token_hex(4)
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.format(name=f"lb{token}", token=token).replace(
        "  r1: {kind: router}", "  r1: {kind: router}\n  lone:\n    routes: "
        "[{dst: 10.99.0.0/16, via: 192.0.2.99}]"))
    with labs_lock():
        proc = subprocess.Popen([SCRIPT, "up", str(path), "--backend", netns_backend],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 1, out + err
        assert err.startswith("pytest-netns up: ") and err.count("\n") == 1, err
        assert "10.99.0.0/16" in err or "192.0.2.99" in err, err
        assert pid_traces(proc.pid) == set()
        assert traces(token) == set()
        assert not (STATE / "labs" / f"lb{token}").exists()


@pytest.mark.parametrize("after", [0.0, 0.02, 0.05, 0.15])
def test_a_killed_up_leaves_a_lab_that_down_removes(tmp_path: Path, namespace_only: None,
                                                    after: float) -> None:
    """SIGKILL at any point of `up` (`after` seconds once its record exists): what it built
    stays, protected from automatic sweeps, named by the lab; `down` removes all of it."""
    from pytest_netns.lifecycle.reaper import sweep

    token = secrets.token_hex(4)
    name = f"lb{token}"
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.format(name=name, token=token))
    with labs_lock():
        errors = tmp_path / "up.err"
        with open(errors, "w") as err:
            proc = subprocess.Popen([SCRIPT, "up", str(path), "--backend", "namespace"],
                                    stdout=subprocess.DEVNULL, stderr=err)
        record = STATE / "labs" / name / "lab.json"
        deadline = time.monotonic() + 60
        while not record.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(after)
        proc.kill()
        proc.wait()
        assert record.exists(), errors.read_text()
        session = json.loads(record.read_text())["session"]
        sweep()  # what every session start does: it leaves the lab alone
        assert (STATE / "kept" / session).exists() and record.exists()
        again = cli("up", str(path), "--backend", "namespace")
        assert again.returncode == 1 and name in again.stderr, again.stderr
        assert "pytest-netns down" in again.stderr and "Traceback" not in again.stderr
        done = cli("down", name)
        assert done.returncode == 0, done.stderr
        assert traces(session, token) == set() and pid_traces(proc.pid) == set()


DUAL = """\
name: {name}
ipv6: true
nodes:
  client: {{}}
  server:
    aliases: [www, db.internal]
  r1: {{kind: router}}
switches:
  lan: {{}}
  dmz: {{subnet6: "fd00:{tag}:2::/64"}}
links:
  - endpoints: [client, lan]
  - endpoints: [r1, lan]
  - endpoints: [r1, dmz]
  - endpoints: [server, dmz]
    ip6: {{server: "fd00:{tag}:2::10"}}
expect:
  - {{from: client, to: server, family: 6}}
  - {{from: server, to: client, family: 6}}
  - {{from: client, to: server}}
"""


def test_an_ipv6_lab_with_names(tmp_path: Path, netns_backend: str) -> None:
    """Dual stack, and every node's names resolve inside every node, from `exec` too."""
    token = secrets.token_hex(2)
    path = tmp_path / "lab.yaml"
    path.write_text(DUAL.format(name=f"lb{token}", tag=token))
    lab = Lab(path, f"lb{token}", token, netns_backend)
    with labs_lock():
        try:
            lab.up()
            info = lab.info()
            server = info["nodes"]["server"]
            # compared as addresses: a token with a leading zero is written without it
            assert ipaddress.ip_address(server["ip6"]) == ipaddress.ip_address(
                f"fd00:{token}:2::10")
            assert all(n["ip6"] for n in info["nodes"].values())
            inside = iproute_json(server["netns"], "-6", "addr", "show")
            assert server["ip6"] in {a["local"] for link in inside
                                     for a in link.get("addr_info", [])}
            out = lab.busybox("client", "ping", "-6", "-c", "1", "-W", "3", server["ip6"])
            assert "1 packets received" in out
            for name in ("server", "www", "db.internal"):
                out = lab.busybox("client", "ping", "-c", "1", "-W", "3", name)
                resolved = re.search(r"PING \S+ \(([0-9a-f.:]+)\)", out)
                assert resolved and resolved[1] in (server["ip"], server["ip6"]), out
                assert "1 packets received" in out, out
            check = lab.run("check", lab.file)
            assert "reachability (icmp, timeout 1 s)" in check.stdout
            assert check.stdout.count("matches the expected matrix") == 2, check.stdout
        finally:
            lab.run("down", lab.file)


def test_netns_factory_shares_a_lab(pytester: pytest.Pytester) -> None:
    token = secrets.token_hex(4)
    pytester.makefile(".yaml", lab=LAB.format(name=f"lb{token}", token=token))
    pytester.makepyfile("""
        import pytest

        @pytest.fixture(scope="module")
        def shop(netns_factory):
            with netns_factory.lab("lab.yaml", backend="namespace") as net:
                yield net

        def test_one(shop):
            code, out = shop["client"].exec(["busybox", "ping", "-c1", "-W3", shop["web"].ip])
            assert code == 0, out

        def test_two(shop, request):
            assert shop["web"].ip and not shop.closed
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)


def process_gone(pid: int) -> bool:
    """Gone, or a zombie (which holds no namespace) its new parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def rtt_ms(out: str) -> float:
    """busybox ping's average round trip, in milliseconds."""
    found = re.search(r"round-trip min/avg/max = [\d.]+/([\d.]+)/", out)
    assert found, out
    return float(found[1])


def test_impair_partition_and_heal_from_the_shell(lab: Lab) -> None:
    """Faults outlive the command that made them (a forwarder of the lab's own), every
    command starts from what the last one left, and `down` ends them all."""
    lab.up()
    info = lab.info()
    session, web = info["session"], info["nodes"]["web"]["ip"]
    assert rtt_ms(lab.busybox("client", "ping", "-c", "2", "-W", "3", web)) < 40
    done = lab.run("impair", lab.file, "client", "lan", "--delay", "40ms")
    assert "client->lan: 40 ms; lan->client: 40 ms" in done.stdout, done.stdout
    assert rtt_ms(lab.busybox("client", "ping", "-c", "3", "-W", "3", web)) >= 80
    link = next(ln for ln in lab.info()["links"] if set(ln["endpoints"]) == {"client", "lan"})
    assert link["impairment"] == {"client->lan": {"delay": 0.04}, "lan->client": {"delay": 0.04}}
    dot = lab.run("graph", lab.file, "--format", "dot").stdout
    assert "client->lan 40 ms; lan->client 40 ms" in dot, dot
    # one direction more, from another process: the first impairment stays
    lab.run("impair", lab.file, "web", "dmz", "--delay", "30ms", "--direction", "web->dmz")
    assert rtt_ms(lab.busybox("client", "ping", "-c", "3", "-W", "3", web)) >= 110
    lab.run("impair", lab.file, "client", "lan", "--clear")
    slow = rtt_ms(lab.busybox("client", "ping", "-c", "3", "-W", "3", web))
    assert 30 <= slow < 80, slow
    # a partition: the client is cut off, the others still talk
    lab.run("partition", lab.file, "client", "web,r1,db")
    lost = lab.busybox("client", "ping", "-c", "1", "-W", "1", web, check=1)
    assert "0 packets received" in lost
    assert "1 packets received" in lab.busybox("r1", "ping", "-c", "1", "-W", "3", web)
    broken = lab.run("check", lab.file, check=1)
    assert "expect[0]: client -> web" in broken.stdout and "expect[1]" in broken.stdout
    assert lab.info()["partitions"] == [{"groups": [["client"], ["web", "r1", "db"]],
                                         "oneway": False}]
    assert "partitioned: [client] | [web, r1, db]" in lab.run("inspect", lab.file).stdout
    assert 'label="partition [client] | [web, r1, db]"' in lab.run(
        "graph", lab.file, "--format", "dot").stdout
    lab.run("heal", lab.file)
    assert "1 packets received" in lab.busybox("client", "ping", "-c", "1", "-W", "3", web)
    lab.run("check", lab.file)
    forwarder = json.loads((STATE / "labs" / lab.name / "lab.json").read_text())["faults"][
        "forwarder"]["pid"]
    assert Path(f"/proc/{forwarder}").exists()
    # bad input changes nothing
    bad = lab.run("impair", lab.file, "client", "web", "--delay", "1ms", check=1)
    assert "no link between 'client' and 'web'" in bad.stderr
    bad = lab.run("impair", lab.file, "web", "dmz", "--loss", "120", check=1)
    assert "loss='120' is out of range" in bad.stderr
    assert rtt_ms(lab.busybox("client", "ping", "-c", "2", "-W", "3", web)) >= 30
    lab.run("down", lab.file)
    assert process_gone(forwarder)
    assert traces(session, lab.token) == set()


def test_make_lab_applies_the_files_impairments(make_lab: Any, tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.format(name=f"lb{token}", token=token).replace(
        "  - endpoints: [client, lan]\n",
        "  - endpoints: [client, lan]\n    impair: {delay: 25ms, direction: client->lan}\n"))
    net = make_lab(path)
    assert net.link("client", "lan").impairment == {"client->lan": {"delay": 0.025}}
    binary = "/bin/busybox" if net["client"].container is not None else "busybox"
    code, out = net["client"].exec([binary, "ping", "-c", "2", "-W", "3", str(net["web"].ip)])
    assert code == 0 and rtt_ms(out) >= 25, out


# -- broken files ---------------------------------------------------------------------------

BROKEN = {
    "unknown node": ("[server, dmz]", "[server, nowhere]",
                     "demo.yaml:13: links[3].endpoints[1]: no node or switch named 'nowhere'; "
                     "known: client, lan, r1, dmz, server"),
    "bad address": ("10.201.2.10}", "10.201.2.300}",
                    "demo.yaml:14: links[3].ip.server: invalid address '10.201.2.300'"),
    "overlapping subnets": ("10.201.2.0/24", "10.201.1.0/25",
                            "demo.yaml:8: switches.dmz.subnet: 10.201.1.0/25 overlaps "
                            "10.201.1.0/24 (switches.lan.subnet), and both reach 'r1'"),
    "unknown key": ("r1: {kind: router}", "r1: {kind: router, color: red}",
                    "demo.yaml:5: nodes.r1.color: unknown key 'color'"),
    "wrong type": ("lan: {subnet: 10.201.1.0/24}", "lan: {subnet: [10.201.1.0/24]}",
                   "demo.yaml:7: switches.lan.subnet: expected an IPv4 subnet in CIDR "
                   "notation, such as 10.201.1.0/24, got a list of 1"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_file_is_one_paragraph_naming_the_place_and_changes_nothing(
        tmp_path: Path, kind: str) -> None:
    old, new, message = BROKEN[kind]
    text = DEMO.replace("    impair: {delay: 20ms}\n", "").replace(old, new)
    assert text != DEMO
    (tmp_path / "demo.yaml").write_text(text.replace("name: demo", "name: lbbroken"))
    for command in (["up", "demo.yaml", "--backend", "namespace"], ["check", "demo.yaml"],
                    ["graph", "demo.yaml"], ["inspect", "demo.yaml"]):
        proc = subprocess.Popen([SCRIPT, *command], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (command, out, err)
        assert err.startswith(f"pytest-netns {command[0]}: LabFileError: {message}"), err
        assert err.count("\n") == 1 and "Traceback" not in err and out == ""
        assert pid_traces(proc.pid) == set()
    assert not (STATE / "labs" / "lbbroken").exists()


# -- from a test ------------------------------------------------------------------------------


def test_make_lab_builds_the_file_and_proves_its_expectations(
        make_lab: Any, tmp_path: Path, netns_backend: str) -> None:
    token = secrets.token_hex(4)
    path = tmp_path / "lab.yaml"
    path.write_text(LAB.format(name=f"lb{token}", token=token))
    topo = make_lab(path)
    assert sorted(topo.members()) == ["client", "db", "r1", "web"]
    client, web = topo["client"], topo["web"]
    assert client.kind == ("container" if netns_backend == "docker" else "namespace")
    binary = "/bin/busybox" if client.container is not None else "busybox"
    code, out = client.exec([binary, "ping", "-c", "1", "-W", "3", str(web.ip)])
    assert code == 0, out
    code, out = client.exec([binary, "env"])
    assert f"LAB_TOKEN={token}" in out


MISMATCH = """
def test_uses_the_lab(make_lab):
    make_lab("lab.yaml", backend="namespace")
"""


def test_make_lab_fails_the_test_with_the_usual_report(pytester: pytest.Pytester) -> None:
    token = secrets.token_hex(4)
    wrong = LAB.format(name=f"lb{token}", token=token).replace(
        "{from: client, to: web}", "{from: client, to: web, reach: false}")
    pytester.makefile(".yaml", lab=wrong)
    pytester.makepyfile(MISMATCH)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "AssertionError: lab lb" in text and "1 differs" in text, text
    assert "expect[1]: client -> web" in text and "expected unreachable, observed reply" in text
    assert "pytest-netns: the network at failure" in text
    assert "reachability (icmp" in text


def test_json_lab_files_work_too(tmp_path: Path) -> None:
    import yaml

    token = secrets.token_hex(4)
    document = yaml.safe_load(LAB.format(name=f"lb{token}", token=token))
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(document))
    lab = Lab(path, f"lb{token}", token, "namespace")
    with labs_lock():
        try:
            lab.up()
            assert lab.run("check", lab.file).returncode == 0
        finally:
            lab.run("down", lab.file)
