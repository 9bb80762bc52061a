"""Crash safety: a SIGKILLed pytest leaves nothing behind, and sweeps touch only the dead.

The kill tests run a real pytest in a subprocess that builds topologies,
says it is ready, and sleeps; the test SIGKILLs it (no teardown runs) and
then watches, through iproute2, the Docker engine and /proc rather than the
library's own code, until every object of that session is gone. The issue
defines 10 s as the deadline; the time it took is printed.

The sweep tests make leftovers of a fake dead session (real namespaces,
links, processes and containers, owned by a pid that has exited) next to a
live session's objects, and check that a sweep removes exactly the former.
Other pytest-netns sessions on this host sweep dead sessions as they start,
so the fake dead session is marked kept: automatic sweeps leave it alone and
only this test's `sweep(include_kept=True)` removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netcheck import iproute_json, netns_identity, running

from conftest import need_docker
from pytest_netns import ownership
from pytest_netns.kernel.netns import NETNS_RUN_DIR, Netns, create_named_netns
from pytest_netns.kernel.proctree import ProcessTree, netns_id
from pytest_netns.lifecycle import hooks, reaper
from pytest_netns.nodes.engine import remove_container
from pytest_netns.nodes.host import host
from pytest_netns.nodes.hosts import HOSTS_DIR
from pytest_netns.nodes.ledger import ledger_for
from pytest_netns.ownership import SESSIONS_DIR, Session, process_start
from pytest_netns.topology.subnets import RESERVATIONS

DEADLINE = 10.0  # seconds: the definition of "nothing is left"
NETSTATE = Path(__file__).resolve().parents[2] / "shared" / "tools" / "netstate"
WATCHDOG_EXIT = 120.0  # liveness only: it exits after its passes (slow if Docker stalls)

INNER = '''
import json, os, subprocess, time
from pytest_netns import ownership
from pytest_netns.lifecycle import hooks


def test_hold(make_bridged_pair, make_nat_uplink, make_host_only_link,
              make_isolated_container, netns_session):
    for backend in os.environ["PN_BACKENDS"].split(","):
        make_bridged_pair(backend=backend, verify=False)
        make_nat_uplink(backend=backend, verify=False)
        make_host_only_link(backend=backend, verify=False)
    attached = os.environ.get("PN_ATTACH")
    strays = []  # started where no namespace sweep or container removal reaches
    if attached:
        make_isolated_container(container=attached, iface="eth7", verify=False)
        link = make_host_only_link(container=attached, iface="eth8", verify=False)
        strays.append(link.node.spawn(["/bin/busybox", "sleep", "604"]).pid)
        link.node.exec(["/bin/busybox", "sh", "-c", "busybox sleep 605 >/dev/null 2>&1 &"])
    from pytest_netns.nodes.host import host
    strays.append(host().spawn(["sleep", "603"]).pid)
    # a server left running inside a namespace node keeps that namespace alive
    node = make_isolated_container(backend="namespace", verify=False).node
    node.exec(["true"])  # the node's private hosts file exists from its first process on
    server = node.call(subprocess.Popen, ["sleep", "600"])
    node.exec(["sh", "-c", "sleep 606 >/dev/null 2>&1 &"])
    if os.environ.get("PN_KEEP"):
        ownership.mark_kept(netns_session)
    wd = hooks.current_watchdog()
    info = {"sid": netns_session.id, "pid": os.getpid(), "watchdog": wd.pid,
            "server": server.pid, "strays": strays, "node_netns": node.netns,
            "pytest_sid": os.getsid(0), "watchdog_sid": os.getsid(wd.pid)}
    tmp = os.environ["PN_READY"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.environ["PN_READY"])
    time.sleep(600)
'''


INNER_FAULTS = '''
import json, os, time
from pytest_netns.lifecycle import hooks


def test_hold(make_bridged_pair, make_host_only_link, make_nat_uplink, netns_session):
    topologies = []
    for backend in os.environ["PN_BACKENDS"].split(","):
        pair = make_bridged_pair(backend=backend, verify=False)
        pair.topology.link(pair.a, "switch").impair(delay="50ms", loss=1, rate="10mbit")
        pair.topology.partition([pair.a], [pair.b], oneway=True)
        host = make_host_only_link(backend=backend, verify=False)
        host.link.impair(delay="10ms", rate="5mbit")  # host->node: tbf and a sink in the host
        host.topology.partition([host.node], ["host"])
        nat = make_nat_uplink(backend=backend, verify=False)
        nat.link.down()
        topologies += [pair.topology, host.topology]
    wd = hooks.current_watchdog()
    info = {"sid": netns_session.id, "pid": os.getpid(), "watchdog": wd.pid,
            "forwarders": [t.fault_state.forwarder_pid for t in topologies],
            "host_ifaces": [host.host_iface]}
    tmp = os.environ["PN_READY"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.environ["PN_READY"])
    time.sleep(600)
'''

INNER_PREFETCH = '''
import json, os, time
from pytest_netns.lifecycle import hooks
from pytest_netns.nodes import prefetch


def test_hold(make_bridged_pair, netns_session):
    make_bridged_pair(backend="docker", verify=False)
    waiting = prefetch.waiting()  # started ahead for the next test, and running now
    make_bridged_pair(backend="docker", verify=False)  # takes them; two more are starting
    info = {"sid": netns_session.id, "pid": os.getpid(), "watchdog": hooks.current_watchdog().pid,
            "server": 0, "waiting": waiting}
    tmp = os.environ["PN_READY"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.rename(tmp, os.environ["PN_READY"])
    time.sleep(600)
'''


def session_objects(sid: str, pid: int, attached_pid: int | None = None,
                    docker: bool = False) -> list[str]:
    """Everything a session (sid, pid) owns that still exists, seen from outside."""
    found = [f"netns {n}" for n in ownership.listdir(NETNS_RUN_DIR)
             if n.startswith(f"pytest-netns-{sid}-{pid}-")]
    tag = f"pytest-netns:{sid}:{pid}"
    found += [f"host link {ln['ifname']}" for ln in iproute_json(None, "link", "show")
              if str(ln.get("ifalias", "")).startswith(tag)]
    found += [f"hosts file {name}" for name in ownership.listdir(HOSTS_DIR)
              if name.startswith(f"pytest-netns-{sid}-{pid}-")]
    if attached_pid:
        found += [f"link {ln['ifname']} in attached container"
                  for ln in iproute_json(f"/proc/{attached_pid}/ns/net", "link", "show")
                  if str(ln.get("ifalias", "")).startswith(tag)]
        # our own test image: a plain read through /proc/<pid>/root is safe here
        with open(f"/proc/{attached_pid}/root/etc/hosts") as f:
            found += [f"names in attached container: {line.strip()}" for line in f
                      if line.startswith(f"# {tag} ")]
    if docker:
        from pytest_netns.nodes.engine import docker_client

        found += [f"container {c.attrs['Names'][0]}" for c in docker_client().containers.list(
            all=True, sparse=True, filters={"label": f"pytest-netns.session={sid}"})]
    found += [f"subnet reservation {net}" for net, v in _reservations().items()
              if int(v.get("pid", 0)) == pid]
    if os.path.exists(os.path.join(SESSIONS_DIR, sid)):
        found.append(f"session record {sid}")
    return found


def _reservations() -> dict[str, dict[str, Any]]:
    try:
        with open(RESERVATIONS) as f:
            table: dict[str, dict[str, Any]] = json.load(f)
            return table
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def process_running(pid: int) -> bool:
    """Read from /proc, not through the library: a zombie has ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.fixture
def attached_container() -> Iterator[Any]:
    """A running container this test owns (no pytest-netns labels) for topologies to attach."""
    need_docker()
    from pytest_netns.nodes.engine import docker_client
    from pytest_netns.nodes.images import DEFAULT_COMMAND, DEFAULT_IMAGE, ensure_image

    client = docker_client()
    ensure_image(client, DEFAULT_IMAGE)
    ctr = client.containers.run(
        DEFAULT_IMAGE, DEFAULT_COMMAND, detach=True, network_mode="none", init=True,
        name=f"pn-reaper-test-{uuid.uuid4().hex[:8]}", labels={"pytest-netns-test": "attached"},
    )
    ctr.reload()
    try:
        yield ctr
    finally:
        remove_container(ctr)


def start_held_session(tmp_path: Path, backends: str, attach: str | None = None,
                       keep: bool = False,
                       inner: str = INNER) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Run the INNER pytest until its topologies are up; return it and what it reported."""
    test_file = tmp_path / "test_hold.py"
    test_file.write_text(textwrap.dedent(inner))
    ready = tmp_path / "ready.json"
    env = dict(os.environ, PN_BACKENDS=backends, PN_READY=str(ready))
    if attach:
        env["PN_ATTACH"] = attach
    if keep:
        env["PN_KEEP"] = "1"
    log = open(tmp_path / "inner.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         str(test_file)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 180
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"inner pytest never got ready:\n{(tmp_path / 'inner.log').read_text()}")
        time.sleep(0.05)
    return proc, json.loads(ready.read_text())


def kill_and_wait(proc: subprocess.Popen[bytes], info: dict[str, Any],
                  attached_pid: int | None, docker: bool) -> tuple[float, float, list[str]]:
    """SIGKILL the inner pytest; poll until its objects are gone, then until its watchdog is.

    Returns the seconds until the objects were gone (at most DEADLINE),
    until the watchdog had exited too, and whatever was still there.
    """
    killed = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # as a shell or CI runner would
    record = f"session record {info['sid']}"  # bookkeeping: it goes last, after containers
    while True:
        left = [x for x in session_objects(info["sid"], info["pid"], attached_pid, docker)
                if x != record]
        if info.get("server") and process_running(info["server"]):
            left.append(f"server process {info['server']}")
        left += [f"process {pid} started in the host or an attached container"
                 for pid in info.get("strays", []) if process_running(pid)]
        left += [f"`{command}` left by exec" for netns, command in info.get("exec_left", [])
                 if running(tuple(netns), command)]
        objects_gone = time.monotonic() - killed
        if not left or objects_gone > DEADLINE:
            break
        time.sleep(0.05)
    # the watchdog makes extra passes for late containers, then exits
    while process_running(info["watchdog"]) and time.monotonic() - killed < WATCHDOG_EXIT:
        time.sleep(0.05)
    if process_running(info["watchdog"]):
        left.append(f"watchdog process {info['watchdog']}")
    elif os.path.exists(os.path.join(SESSIONS_DIR, info["sid"])):
        left.append(record)
    return objects_gone, time.monotonic() - killed, left


@pytest.mark.parametrize("scenario", ["namespace", "docker+namespace+attached"])
def test_sigkill_mid_topology_leaves_nothing(
    scenario: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    docker = scenario != "namespace"
    attached = request.getfixturevalue("attached_container") if docker else None
    backends = "docker,namespace" if docker else "namespace"
    proc, info = start_held_session(tmp_path, backends, attached.name if attached else None)
    attached_pid = int(attached.attrs["State"]["Pid"]) if attached else None
    info["exec_left"] = [(netns_identity(info["node_netns"]), "sleep 606")]
    if attached_pid:
        info["exec_left"].append((netns_identity(f"/proc/{attached_pid}/ns/net"),
                                  "busybox sleep 605"))
    try:
        deadline = time.monotonic() + 10  # a shell's background child may still be starting
        while not all(running(tuple(ns), cmd) for ns, cmd in info["exec_left"]):
            assert time.monotonic() < deadline, info
            time.sleep(0.05)
        before = session_objects(info["sid"], info["pid"], attached_pid, docker)
        assert any(b.startswith("netns ") for b in before), before
        assert any(b.startswith("host link ") for b in before), before
        assert any(b.startswith("subnet reservation ") for b in before), before
        assert any(b.startswith("hosts file ") for b in before), before
        if docker:
            assert any(b.startswith("container ") for b in before), before
            assert any(b.endswith("in attached container") for b in before), before
            assert any(b.startswith("names in attached container") for b in before), before
        assert process_running(info["server"]) and process_running(info["watchdog"])
        # the watchdog is in a session of its own: a terminal's Ctrl-C does not reach it
        assert info["watchdog_sid"] != info["pytest_sid"]
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    objects, elapsed, left = kill_and_wait(proc, info, attached_pid, docker)
    print(f"\n{scenario}: {len(before)} objects gone {objects:.2f} s after SIGKILL, "
          f"watchdog exited after {elapsed:.2f} s")
    assert not left, f"still there {DEADLINE:.0f} s after SIGKILL (or a watchdog later): {left}"


def test_sigkill_with_containers_started_ahead_leaves_nothing(tmp_path: Path) -> None:
    """Containers prefetched for the next test (running, and still starting) go too."""
    need_docker()
    proc, info = start_held_session(tmp_path, "docker", inner=INNER_PREFETCH)
    try:
        before = session_objects(info["sid"], info["pid"], docker=True)
        assert len(info["waiting"]) == 2, info
        prefetched = [b for b in before if "prefetched" in b]
        assert len(prefetched) >= 2, before  # the two taken, and those starting now
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    objects, elapsed, left = kill_and_wait(proc, info, None, docker=True)
    print(f"\n{len(before)} objects gone {objects:.2f} s after SIGKILL, "
          f"watchdog exited after {elapsed:.2f} s")
    assert not left, f"still there {DEADLINE:.0f} s after SIGKILL (or a watchdog later): {left}"


@pytest.mark.parametrize("backends", ["namespace", "docker,namespace"])
def test_sigkill_mid_impairment_leaves_nothing(backends: str, tmp_path: Path) -> None:
    """Forwarders, qdisc-bearing links (ours in the host too), filters and namespaces all go.

    Checked from outside: /proc for the forwarder processes, iproute2 for
    the links and their qdiscs, the state directory, and netstate's view of
    the whole host.
    """
    from pytest_netns.kernel.forwarder import PROCESS_NAME
    from pytest_netns.nodes.ledger import read_ledger

    if "docker" in backends:
        need_docker()
    proc, info = start_held_session(tmp_path, backends, inner=INNER_FAULTS)
    sid = info["sid"]
    try:
        forwarders = info["forwarders"]
        assert forwarders and all(process_running(pid) for pid in forwarders)
        for pid in forwarders:
            with open(f"/proc/{pid}/comm") as f:
                assert f.read().strip() == PROCESS_NAME
        host_iface = info["host_ifaces"][0]
        qdiscs = subprocess.run(["tc", "qdisc", "show", "dev", host_iface], capture_output=True,
                                text=True, check=True).stdout
        assert "tbf" in qdiscs and "clsact" in qdiscs, qdiscs  # on our veth, in the host
        sinks = [ln["ifname"] for ln in iproute_json(None, "link", "show")
                 if str(ln.get("ifalias", "")).startswith(f"pytest-netns:{sid}:")
                 and ln["ifname"] != host_iface and ln["ifname"].endswith("k")]
        assert sinks, "the host->node sink veth lives in the host"
        ledger = os.path.join(ownership.PROCESSES_DIR, f"{sid}-{info['pid']}")
        assert set(forwarders) <= {tree.leader for tree, _ in read_ledger(ledger)}
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    objects, elapsed, left = kill_and_wait(proc, info, None, "docker" in backends)
    left += [f"forwarder {pid}" for pid in info["forwarders"] if process_running(pid)]
    left += [f"process ledger {n}" for n in ownership.listdir(ownership.PROCESSES_DIR)
             if n.startswith(f"{sid}-")]
    if NETSTATE.exists():  # the shared tool that compares the host before and after runs
        netstate = subprocess.run([str(NETSTATE)], capture_output=True, text=True,
                                  check=True).stdout
        left += [f"netstate: {line}" for line in netstate.splitlines() if sid in line]
    print(f"\n{backends}: faults gone {objects:.2f} s after SIGKILL, watchdog exited after "
          f"{elapsed:.2f} s")
    assert not left, f"still there after SIGKILL: {left}"


def test_sigkill_of_a_kept_session_leaves_it_for_cleanup(tmp_path: Path) -> None:
    """--netns-keep's marker: the watchdog leaves a killed kept session for `cleanup`."""
    proc, info = start_held_session(tmp_path, "namespace", keep=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + WATCHDOG_EXIT
    while process_running(info["watchdog"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not process_running(info["watchdog"])
        left = session_objects(info["sid"], info["pid"])
        assert any(x.startswith("netns ") for x in left), left
        assert any(x.startswith("host link ") for x in left), left
        assert process_running(info["server"])
    finally:
        lines = reaper.sweep(include_kept=True, session_id=info["sid"])
    assert f"removed kept marker {info['sid']} (pid {info['pid']})" in lines
    assert f"killed process {info['server']} (sleep)" in " ".join(lines)
    deadline = time.monotonic() + DEADLINE
    while session_objects(info["sid"], info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)  # host-side veths go when the kernel has reaped their namespaces
    assert session_objects(info["sid"], info["pid"]) == []
    assert not process_running(info["server"])


def test_clean_end_stops_the_watchdog_after_a_start_up_sweep(tmp_path: Path) -> None:
    """A session start sweeps dead sessions; a clean end reaps the watchdog, which removes nothing.

    The dead leftovers may also be swept by another session starting on this
    host meanwhile; either way they must be gone while this session runs.
    """
    dead = Session()
    dead.pid = _dead_pid()
    dead.register()
    left = Leftovers(dead, False, None)
    (tmp_path / "test_clean.py").write_text(textwrap.dedent('''
        import json, os, socket, time
        from pytest_netns.lifecycle import hooks

        def test_one(make_host_only_link, netns_session):
            make_host_only_link(backend="namespace", verify=False)
            netns, link = os.environ["PN_LEFT"].split(",")

            def gone():
                try:
                    socket.if_nametoindex(link)
                    return False
                except OSError:
                    return not os.path.exists(netns)

            deadline = time.monotonic() + 10
            while not gone() and time.monotonic() < deadline:
                time.sleep(0.05)
            wd = hooks.current_watchdog()
            with open(os.environ["PN_INFO"], "w") as f:
                json.dump({"sid": netns_session.id, "pid": os.getpid(), "watchdog": wd.pid,
                           "leftovers_gone": gone(),
                           "fds": sorted(os.readlink(f"/proc/{wd.pid}/fd/{fd}")
                                         for fd in os.listdir(f"/proc/{wd.pid}/fd")),
                           "wd_netns": os.readlink(f"/proc/{wd.pid}/ns/net"),
                           "host_netns": os.readlink("/proc/self/ns/net")}, f)
    '''))
    info_path = tmp_path / "info.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
             str(tmp_path / "test_clean.py")],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PN_INFO=str(info_path), PN_LEFT=f"{left.netns},{left.link}"),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        info = json.loads(info_path.read_text())
        assert info["leftovers_gone"], "a dead session's leftovers outlived a session start"
        assert not process_running(info["watchdog"]), "the watchdog outlived a clean pytest"
        assert info["wd_netns"] == info["host_netns"]
        # it holds no namespace of a topology alive (only the host's own, opened at import)
        assert not [fd for fd in info["fds"] if fd.startswith("net:")
                    and fd != info["host_netns"]], info["fds"]
        assert session_objects(info["sid"], info["pid"]) == []
    finally:
        left.remove()


# -- sweeps -------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


class Leftovers:
    """Real objects owned by one (possibly fake) session, as a crashed session leaves them."""

    def __init__(self, session: Session, docker: bool, attached: Any) -> None:
        self.session = session
        handle = create_named_netns(session.netns_name("node"))
        assert handle.path is not None
        self.netns = handle.path
        # a process left running inside it, as a crashed session's server would be
        self.server = handle.popen(["sleep", "600"])
        # and one in the host, known only from the session's ledger of such processes
        self.stray = subprocess.Popen(["sleep", "600"], start_new_session=True)
        ledger_for(session, netns_id(f"/proc/{os.getpid()}/ns/net"))(
            ProcessTree.of(self.stray.pid))
        # the namespace node's private hosts file, named after its namespace
        os.makedirs(HOSTS_DIR, exist_ok=True)
        self.hosts = os.path.join(HOSTS_DIR, os.path.basename(self.netns))
        with open(self.hosts, "w") as f:
            f.write("127.0.0.1\tlocalhost\n")
        self.link = session.ifname("t")
        host().netlink.add_veth(self.link, self.link + "p", Netns.host(), alias=session.alias)
        self.container = None
        self.attached_link = None
        if docker:
            from pytest_netns.nodes.container import start_containers
            from pytest_netns.nodes.images import DEFAULT_IMAGE

            (node,) = start_containers(session, ["x"], DEFAULT_IMAGE)
            node.release()
            self.container = node.container
            self.attached_link = session.ifname("a")
            self._in_container(attached, lambda nl: nl.add_simple(
                self.attached_link, "ifb", alias=session.alias))
        self.attached = attached

    @staticmethod
    def _in_container(ctr: Any, fn: Any) -> Any:
        from pytest_netns.kernel.netlink import Netlink

        return fn(Netlink(Netns.entering(f"/proc/{ctr.attrs['State']['Pid']}/ns/net")))

    def present(self) -> dict[str, bool]:
        out = {
            f"netns {os.path.basename(self.netns)}": os.path.exists(self.netns),
            f"process {self.server.pid}": self.server.poll() is None,
            f"host process {self.stray.pid}": self.stray.poll() is None,
            f"ledger {self.session.ledger_path}": os.path.exists(self.session.ledger_path),
            f"link {self.link}": any(
                ln["ifname"] == self.link for ln in iproute_json(None, "link", "show")),
            f"hosts file {os.path.basename(self.hosts)}": os.path.exists(self.hosts),
        }
        if self.container is not None:
            import docker.errors

            try:
                self.container.reload()
                out[f"container {self.container.name}"] = True
            except docker.errors.NotFound:
                out[f"container {self.container.name}"] = False
            out[f"link {self.attached_link} in container"] = any(
                ln["ifname"] == self.attached_link for ln in iproute_json(
                    f"/proc/{self.attached.attrs['State']['Pid']}/ns/net", "link", "show"))
        return out

    def expected_lines(self) -> list[str]:
        lines = [f"removed netns {os.path.basename(self.netns)}",
                 f"killed process {self.server.pid} (sleep) left in netns "
                 f"{os.path.basename(self.netns)}",
                 f"removed link {self.link} ({self.session.alias})",
                 f"killed process {self.stray.pid} (sleep) left by session {self.session.id}",
                 f"removed process ledger {os.path.basename(self.session.ledger_path)}",
                 f"removed hosts file {os.path.basename(self.hosts)}"]
        if self.container is not None:
            lines += [f"removed container {self.container.name} (session {self.session.id})",
                      f"removed link {self.attached_link} in container {self.attached.name} "
                      f"({self.session.alias})"]
        return lines

    def remove(self) -> None:
        """Tidy up whatever a failed test left (only this test's own objects)."""
        from pytest_netns.kernel.netns import remove_named_netns

        for process in (self.server, self.stray):
            if process.poll() is None:
                process.kill()
            process.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.session.ledger_path)
        remove_named_netns(self.netns)
        host().netlink.delete_link(self.link)
        if os.path.exists(self.hosts):
            os.unlink(self.hosts)
        if self.container is not None:
            remove_container(self.container)
            self._in_container(self.attached, lambda nl: nl.delete_link(self.attached_link))
        for directory in (SESSIONS_DIR, ownership.KEPT_DIR):
            path = os.path.join(directory, self.session.id)
            if os.path.exists(path):
                os.unlink(path)


@pytest.fixture(params=["namespace", "docker"])
def sweep_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """None for namespace-only leftovers, or a container to attach links to."""
    if request.param == "docker":
        yield request.getfixturevalue("attached_container")
    else:
        yield None


def test_sweep_removes_a_dead_session_and_spares_a_live_one(sweep_backend: Any) -> None:
    docker = sweep_backend is not None
    dead = Session()
    dead.pid = _dead_pid()
    dead.register()
    ownership.mark_kept(dead)  # so only this test's include_kept sweep may remove it
    live = Session()  # this process, deliberately unregistered: it is alive all the same
    gone = Leftovers(dead, docker, sweep_backend)
    kept = Leftovers(live, docker, sweep_backend)
    try:
        assert all(gone.present().values()) and all(kept.present().values())

        lines = reaper.sweep()
        assert not [ln for ln in lines if dead.id in ln or live.id in ln], lines
        assert all(gone.present().values()), "an automatic sweep removed a kept session"
        assert all(kept.present().values())

        # scoped to the dead session: a global include_kept sweep would also take the
        # kept sessions of tests running in parallel (xdist) with this one
        lines = reaper.sweep(include_kept=True, session_id=dead.id)
        gone.server.wait()  # our children: reap the zombies the sweep made
        gone.stray.wait()
        assert not any(gone.present().values()), gone.present()
        for expected in gone.expected_lines():
            assert expected in lines, f"{expected!r} not reported in {lines}"
        assert f"removed kept marker {dead.id} (pid {dead.pid})" in lines
        assert f"removed session record {dead.id} (pid {dead.pid})" in lines
        assert not ownership.is_kept(dead.id)
        assert all(kept.present().values()), kept.present()
        assert not [ln for ln in lines if live.id in ln], lines
    finally:
        gone.remove()
        kept.remove()


def test_sweep_without_keep_removes_dead_leftovers() -> None:
    """The automatic path: no kept marker, the sweep at any session start removes them."""
    dead = Session()
    dead.pid = _dead_pid()
    dead.register()
    left = Leftovers(dead, False, None)
    try:
        reaper.sweep()
        left.server.wait()
        left.stray.wait()
        assert not any(left.present().values()), left.present()
        assert not os.path.exists(os.path.join(SESSIONS_DIR, dead.id))
    finally:
        left.remove()


def test_a_reused_pid_does_not_keep_a_dead_session_alive() -> None:
    """A record names its process by pid and start time: a newer process with that pid is not it."""
    other = Session()  # same pid as this live process, but recorded as started earlier
    os.makedirs(SESSIONS_DIR, exist_ok=True)
    with open(os.path.join(SESSIONS_DIR, other.id), "w") as f:
        f.write(f"{other.pid} {(process_start(other.pid) or 2) - 1}")
    path = create_named_netns(other.netns_name("node")).path
    assert path is not None
    try:
        assert reaper.owner_of_netns(os.path.basename(path)) == reaper.Owner(other.id, other.pid)
        lines = reaper.sweep(session_id=other.id)
        assert f"removed netns {os.path.basename(path)}" in lines or not os.path.exists(path)
        assert not os.path.exists(path)
    finally:
        from pytest_netns.kernel.netns import remove_named_netns

        remove_named_netns(path)
        other.unregister()


def test_sweep_undoes_a_dead_sessions_uplink_only() -> None:
    """The opt-in uplink's host changes are undone from its state file, for dead sessions only.

    These records list no change, so undoing them touches nothing on the host.
    """
    from pytest_netns.kernel import uplink

    dead = Session()
    dead.pid = _dead_pid()
    dead.register()
    live = Session()
    live.register()
    for s in (dead, live):
        uplink.UplinkChanges(s.id).save()
    try:
        reaper.sweep(session_id=live.id)
        assert os.path.exists(uplink.state_file(live.id))
        reaper.sweep(session_id=dead.id)
        assert not os.path.exists(uplink.state_file(dead.id))
        assert os.path.exists(uplink.state_file(live.id))
    finally:
        for s in (dead, live):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(uplink.state_file(s.id))
            s.unregister()


def test_mark_kept_records_the_owner() -> None:
    session = Session()
    path = ownership.mark_kept(session, ["netns x"])
    try:
        with open(path) as f:
            record = json.load(f)
        assert record == {"pid": session.pid, "start": process_start(session.pid),
                          "objects": ["netns x"]}
        assert ownership.is_kept(session.id)
    finally:
        os.unlink(path)


def test_nested_in_process_session_keeps_the_outer_watchdog(
    pytester: pytest.Pytester, netns_session: Session
) -> None:
    """pytester's in-process runs share this process's session; ending one must not disarm it."""
    wd = hooks.current_watchdog()
    assert wd is not None and process_running(wd.pid)
    pytester.makepyfile("def test_inner(netns_session):\n    pass\n")
    pytester.runpytest("-p", "no:xdist", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert hooks.current_watchdog() is wd
    assert process_running(wd.pid)
    assert os.path.exists(os.path.join(SESSIONS_DIR, netns_session.id))


def test_sweep_ends_a_dead_sessions_forwarder_only() -> None:
    """From the session's process ledger, in the forwarder's own namespace.

    A forwarder normally dies with its pytest (PR_SET_PDEATHSIG); these are
    started detached, as a lab left up would be, so only the sweep can end
    them: the dead session's, not the live one's.
    """
    from pytest_netns.kernel.forwarder import ForwarderClient
    from pytest_netns.kernel.proctree import ProcessTree, netns_of
    from pytest_netns.nodes.ledger import ledger_for

    dead = Session()
    dead.pid = _dead_pid()
    dead.register()
    ownership.mark_kept(dead)  # so only this test's include_kept sweep may remove it
    live = Session()  # this process: alive
    doomed = ForwarderClient.start(dead.id, detached=True)
    spared = ForwarderClient.start(live.id, detached=True)
    for session, client in ((dead, doomed), (live, spared)):
        netns = netns_of(client.pid)
        assert netns is not None and netns != netns_of(os.getpid())  # a namespace of its own
        ledger_for(session, netns)(ProcessTree.of(client.pid, netns))
    try:
        reaper.sweep(include_kept=True, session_id=live.id)
        assert spared.alive and doomed.alive
        lines = reaper.sweep(include_kept=True, session_id=dead.id)
        assert doomed.proc.wait(timeout=5) == -signal.SIGKILL, lines
        assert any(str(doomed.pid) in line and "killed process" in line for line in lines), lines
        assert spared.alive
        assert not os.path.exists(dead.ledger_path) and os.path.exists(live.ledger_path)
    finally:
        for client in (doomed, spared):
            client.kill()
        for session in (dead, live):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(session.ledger_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(ownership.KEPT_DIR, dead.id))
        dead.unregister()
