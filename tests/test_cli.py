"""The `pytest-netns` command, run as users run it: the installed console script.

The doctor's findings are compared with what iproute2, tc and nft find in a
throwaway namespace (`unshare -n`), so a doctor that guesses is caught.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_errors import NOBODY, ip_json, kernel_has

from conftest import need_docker
from pytest_netns import ownership
from pytest_netns.ownership import Session

SCRIPT = str(Path(sys.executable).with_name("pytest-netns"))
CHECK_LINE = re.compile(r"^  (?P<name>[^:]+):\s+(?P<status>ok|missing|present|absent|not checked)"
                        r"\s+— (?P<detail>.+)$")


def cli(*args: str, env: dict[str, str] | None = None,
        prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [SCRIPT, *args]
    if prefix and prefix[0] == "capsh":
        argv = [*prefix, shlex.join(argv)]
    elif prefix:
        argv = [*prefix, *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})}, cwd="/")


def checks(out: str) -> dict[str, tuple[str, str]]:
    """{check name: (status, detail)} from the doctor's report."""
    found = {}
    for line in out.splitlines():
        m = CHECK_LINE.match(line)
        if m:
            found[m["name"]] = (m["status"], m["detail"])
    return found


def test_console_script_is_installed() -> None:
    assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} is missing: is the project installed?"
    done = cli("--help")
    assert done.returncode == 0, done.stderr
    for command in ("doctor", "cleanup", "image"):
        assert command in done.stdout
    done = cli()
    assert done.returncode == 2 and "COMMAND" in done.stderr


# -- doctor ------------------------------------------------------------------------

KERNEL = {  # what iproute2, tc and nft can do in a throwaway namespace, check by check
    "veth driver": "ip link add v0 type veth peer name v1",
    "bridge driver": "ip link add b0 type bridge",
    "dummy driver": "ip link add d0 type dummy",
    "ifb driver": "ip link add i0 type ifb",
    "netem": "ip link add v0 type veth peer name v1 && tc qdisc add dev v0 root netem delay 1ms",
    "rate limits": "ip link add v0 type veth peer name v1 && "
                   "tc qdisc add dev v0 root tbf rate 1mbit burst 32kbit latency 50ms",
    "cuts, partitions": "ip link add v0 type veth peer name v1 && tc qdisc add dev v0 clsact && "
                        "tc filter add dev v0 ingress bpf da bytecode '1,6 0 0 2,'",
    "nftables": "nft add table ip t && nft add chain ip t c "
                "'{ type nat hook postrouting priority 100 ; }' && nft add rule ip t c masquerade",
}


def test_doctor_agrees_with_iproute2() -> None:
    links_before = {ln["ifname"] for ln in ip_json("link", "show")}
    done = cli("doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    found = checks(done.stdout)
    for name, shell in KERNEL.items():
        expected = "ok" if kernel_has(shell) else "missing"
        assert found[name][0] == expected, (name, found[name], done.stdout)
    assert found["root and capabilities"][0] == "ok"
    assert found["network namespaces"][0] == "ok"
    if found["dummy driver"][0] == "missing":
        assert "falls back to ifb; nothing to do" in found["dummy driver"][1]
    if found["netem"][0] == "missing":
        assert "use pytest-netns's forwarder process instead" in found["netem"][1]
        # the forwarder steals frames with a bpf filter and mirred, as tc can show
        forwarder = kernel_has("ip link add v0 type veth peer name v1 && tc qdisc add dev v0 "
                               "clsact && tc filter add dev v0 egress bpf bytecode "
                               "'1,6 0 0 4294967295,' action mirred egress redirect dev v1")
        assert found["impairments"][0] == ("ok" if forwarder else "missing")
        assert "forwarder process" in found["impairments"][1] or not forwarder
    else:
        assert found["impairments"] == ("ok", found["impairments"][1])
        assert "netem" in found["impairments"][1]
    assert done.stdout.rstrip().splitlines()[-1].startswith("verdict: usable")
    # every check line puts its status and detail in the same columns
    columns = {line.index("—") for line in done.stdout.splitlines() if CHECK_LINE.match(line)}
    assert len(columns) == 1, done.stdout
    # the drivers were tried in a namespace of their own, never in the host's
    assert not {ln["ifname"] for ln in ip_json("link", "show")} - links_before - {
        ln["ifname"] for ln in ip_json("link", "show")
        if str(ln.get("ifalias", "")).startswith("pytest-netns:")
    }


def test_doctor_reports_the_engine_and_the_firewall() -> None:
    found = checks(cli("doctor").stdout)
    from pytest_netns.nodes.engine import engine_available

    if engine_available():
        import docker

        version = docker.from_env().version()["Version"]
        assert found["docker engine"] == ("ok", found["docker engine"][1])
        assert f"Docker {version}" in found["docker engine"][1]
    else:
        assert found["docker engine"][0] == "missing"
    try:
        nf_call = Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip() == "1"
    except FileNotFoundError:
        nf_call = False
    rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True,
                           check=False).stdout
    expected = "present" if nf_call and "-P FORWARD DROP" in rules else "absent"
    status, detail = found["br_netfilter + FORWARD DROP"]
    assert status == expected, detail
    if expected == "present":
        assert "puts bridges in their own namespace, so nothing to do" in detail
    status, detail = found["free subnets"]
    counts = re.match(r"(\d+) of (\d+) /24 in 10\.64\.0\.0/10 free", detail)
    assert status == "ok" and counts, detail
    assert 0 < int(counts[1]) <= int(counts[2]) == 16384
    status, detail = found["IPv6"]
    expected_ipv6 = "ok" if os.path.isdir("/proc/sys/net/ipv6") else "missing"
    assert status == expected_ipv6, detail
    if expected_ipv6 == "ok":
        assert "/64s from fd6e:6574:6e73::/48" in detail


@pytest.mark.parametrize(("prefix", "fix"), [
    pytest.param(NOBODY, "run pytest as root", id="setpriv-nobody"),
    pytest.param(["capsh", "--drop=cap_net_admin,cap_sys_admin", "--", "-c"],
                 "--cap-add NET_ADMIN", id="capsh-root"),
])
def test_doctor_without_privileges(prefix: list[str], fix: str) -> None:
    done = cli("doctor", prefix=prefix)
    assert done.returncode == 1, done.stdout + done.stderr
    found = checks(done.stdout)
    status, detail = found["root and capabilities"]
    assert status == "missing" and "CAP_NET_ADMIN" in detail and fix in detail, detail
    assert found["veth driver"][0] == "not checked"
    assert "verdict: NOT usable" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr


# -- cleanup -----------------------------------------------------------------------

CRASH = """
import os, signal
from pytest_netns import ownership
from pytest_netns.topology.builder import TopologyBuilder
from pytest_netns.topology.recipes import bridged_pair, host_only_link, isolated_container

link = host_only_link(TopologyBuilder(backend="namespace", verify=False))
session = link.topology.session
bridged_pair(TopologyBuilder(backend="namespace", verify=False, session=session))
if {docker}:
    isolated_container(TopologyBuilder(backend="docker", verify=False, session=session))
ownership.mark_kept(session)  # automatic sweeps leave it; only `cleanup` removes it
print(session.id, link.host_iface, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def session_objects(sid: str, host_iface: str) -> set[str]:
    """What session `sid` left, seen without pytest-netns."""
    found = {f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(f"pytest-netns-{sid}-")}
    found |= {f"link {ln['ifname']}" for ln in ip_json("link", "show")
              if ln["ifname"] == host_iface}
    from pytest_netns.nodes.engine import docker_client, engine_available

    if engine_available():
        from pytest_netns.nodes import prefetch

        found |= {f"container {c.name}" for c in docker_client().containers.list(
            all=True, filters={"label": f"pytest-netns.session={sid}"})}
        found -= {f"container {name}" for name in prefetch.waiting()}  # for the next test
    for record in ("sessions", "kept"):
        if os.path.exists(f"/run/pytest-netns/{record}/{sid}"):
            found.add(f"{record} record")
    return found


def test_cleanup_removes_a_crashed_kept_session() -> None:
    from pytest_netns.nodes.engine import engine_available

    crash = subprocess.run([sys.executable, "-c", CRASH.format(docker=engine_available())],
                           capture_output=True, text=True, timeout=120, check=False)
    assert crash.returncode == -signal.SIGKILL, crash.stderr
    sid, host_iface = crash.stdout.split()
    left = session_objects(sid, host_iface)
    assert f"link {host_iface}" in left and "kept record" in left, left
    assert sum(item.startswith("netns ") for item in left) == 4, left  # 2 + switch + node
    assert sum(item.startswith("container ") for item in left) == engine_available(), left
    # (another engineer's `sweep(include_kept=True)` may run meanwhile: only what is
    # still there right before the cleanup must show up in its report)
    present = session_objects(sid, host_iface)
    done = cli("cleanup", "--session", sid)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == (f"pytest-netns cleanup: removed {len(lines) - 1} leftover(s) of "
                         "dead or kept sessions")
    for item in present:
        if item.startswith(("netns ", "container ")):
            assert any(item.split()[1] in line for line in lines[:-1]), (item, done.stdout)
    assert session_objects(sid, host_iface) == set()


def test_cleanup_leaves_a_live_session_alone(
    make_host_only_link: Any, netns_session: Session
) -> None:
    link = make_host_only_link(verify=False)
    before = session_objects(netns_session.id, link.host_iface)
    assert f"link {link.host_iface}" in before
    done = cli("cleanup", "--session", netns_session.id)
    assert done.returncode == 0, done.stderr
    # (subnets that dead processes of any session held are released on every run)
    assert netns_session.id not in done.stdout and link.host_iface not in done.stdout
    assert session_objects(netns_session.id, link.host_iface) == before


def test_cleanup_of_one_session_releases_only_its_subnets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11: `cleanup --session X` also released other dead sessions' subnets.

    In a reservation file of this test's own: other pytest-netns processes on
    this host (other versions among them) free dead entries of the shared
    one whenever they allocate. `cleanup` prints exactly what `sweep` returns.
    """
    from pytest_netns.lifecycle.reaper import sweep
    from pytest_netns.topology import subnets

    monkeypatch.setattr(subnets, "RESERVATIONS", str(tmp_path / "subnets.json"))
    dead_pid = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                              check=True).stdout.strip()
    x, y, z = Session(), Session(), Session()
    entries = {"10.252.0.0/24": {"pid": int(dead_pid), "owner": f"{x.id}:crashed",
                                 "session": x.id},
               "10.252.1.0/24": {"pid": int(dead_pid), "owner": f"{y.id}:crashed"},
               "10.252.2.0/24": {"pid": int(dead_pid), "owner": f"{z.id}:kept"}}
    with subnets._locked_reservations() as table:
        table.update(entries)
    ownership.mark_kept(z)
    try:
        lines = sweep(include_kept=True, session_id=x.id)
        assert [ln for ln in lines if "subnet" in ln] == [
            f"released subnet 10.252.0.0/24 ({x.id}:crashed, pid {dead_pid})"]
        with subnets._locked_reservations() as table:
            assert sorted(table) == ["10.252.1.0/24", "10.252.2.0/24"]
        # an automatic sweep leaves a kept session's subnets: its topologies are still up
        sweep(session_id=y.id)
        sweep(session_id=z.id)
        with subnets._locked_reservations() as table:
            assert sorted(table) == ["10.252.2.0/24"]
        assert ipaddress.ip_network("10.252.2.0/24") in subnets.live_reservations()
        lines = sweep(include_kept=True, session_id=z.id)
        assert f"released subnet 10.252.2.0/24 ({z.id}:kept, pid {dead_pid})" in lines
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(ownership.KEPT_DIR, z.id))


def test_cleanup_without_privileges() -> None:
    done = cli("cleanup", "--session", "000000", prefix=NOBODY)
    assert done.returncode == 1
    assert "pytest-netns cleanup: NotPermittedError" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- image -------------------------------------------------------------------------


@pytest.fixture
def fresh_tag() -> Any:
    need_docker()
    from pytest_netns.nodes.engine import docker_client

    tag = f"pytest-netns/cli-test-{uuid.uuid4().hex[:8]}:1"
    yield tag
    import docker.errors

    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client().images.remove(tag)  # our tag only; a shared image id stays


@pytest.mark.parametrize("bare", [False, True], ids=["busybox", "bare"])
def test_image_builds_without_a_registry(fresh_tag: str, bare: bool) -> None:
    from pytest_netns.nodes.engine import docker_client
    from pytest_netns.nodes.images import find_static_busybox

    done = cli("image", "--tag", fresh_tag, *(["--bare"] if bare else []))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"built {fresh_tag} (sha256:")
    assert f"from {find_static_busybox()}" in done.stdout
    client = docker_client()
    image = client.images.get(fresh_tag)
    assert image.labels.get("pytest-netns.image") == "1"
    probe = "test -e /bin/sh && echo applet links || echo only busybox"
    out = client.containers.run(fresh_tag, ["/bin/busybox", "sh", "-c", probe], remove=True,
                                network_mode="none")
    assert out.decode().strip() == ("only busybox" if bare else "applet links")


def test_image_errors() -> None:
    need_docker()
    done = cli("image", "--tag", "Bad Tag:1")
    assert done.returncode == 1
    assert "ImageError" in done.stderr and "'Bad Tag:1'" in done.stderr, done.stderr
    done = cli("image", env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert done.returncode == 1
    assert "pytest-netns image: DockerUnavailableError" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
