"""Names: inside every node, the other nodes of its topology resolve, on both backends.

Checked with busybox inside the nodes (`ping -c1 NAME` resolves through
/etc/hosts, as any libc program would), and from outside with plain file
reads. The safety checks use an image whose /etc/hosts is an absolute
symlink to a file of the host: a write that followed it through
/proc/<pid>/root would land on that host file, which must stay untouched.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netcheck import busybox, pings

from pytest_netns import InvalidTopologyError
from pytest_netns.kernel import mounts


def resolved(node: Any, name: str, family: int = 4) -> str | None:
    """The address busybox ping inside `node` resolves `name` to (None: not at all)."""
    _, out = busybox(node, "ping", f"-{family}", "-c", "1", "-W", "1", name)
    m = re.search(rf"PING {re.escape(name)} \(([0-9a-f.:]+)\)", out)
    return m.group(1) if m else None


def test_nodes_ping_each_other_by_name(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair()
    code, out = busybox(pair.a, "ping", "-c1", "b")
    assert code == 0, out
    assert resolved(pair.a, "b") == pair.b_ip
    assert resolved(pair.b, "a") == pair.a_ip
    assert resolved(pair.a, "a") == pair.a_ip  # its own name too
    assert resolved(pair.a, "switch") is None  # switches are not nodes


def test_names_resolve_to_both_families_on_an_ipv6_topology(make_bridged_pair: Any) -> None:
    pair = make_bridged_pair(ipv6=True)
    assert resolved(pair.a, "b", 4) == pair.b_ip
    assert resolved(pair.a, "b", 6) == pair.b_ip6
    code, out = busybox(pair.b, "ping", "-6", "-c1", "a")
    assert code == 0, out


def test_a_name_resolves_to_the_address_on_a_shared_segment(make_topology: Any) -> None:
    t = make_topology()
    a, b, r = t.node("a"), t.node("b", aliases=["db", "db.internal"]), t.router("gw")
    left, right = t.switch("left"), t.switch("right")
    t.connect(a, left)
    t.connect(r, left)
    t.connect(r, right)
    t.connect(b, right)
    net = t.build()
    assert resolved(net["a"], "gw") == net.segments["left"].ip_of("gw")
    assert resolved(net["b"], "gw") == net.segments["right"].ip_of("gw")
    assert resolved(net["a"], "b") == net["b"].ip  # no shared segment: its own address
    assert pings(net["a"], "db") and pings(net["a"], "db.internal")  # aliases, routed
    assert resolved(net["a"], "DB") == net["b"].ip  # host names know no case
    # the test process asks the topology
    assert net.resolve("db.internal") == net["b"].ip
    with pytest.raises(InvalidTopologyError, match=r"'nobody'.*db\.internal"):
        net.resolve("nobody")
    with pytest.raises(InvalidTopologyError, match="ipv6=True"):
        net.resolve("b", family=6)


def test_resolve_prefers_the_address_the_host_can_reach(make_topology: Any) -> None:
    t = make_topology(ipv6=True)
    a, b = t.node("a"), t.node("b")
    t.connect(a, b)
    to_host = t.connect(b, "host")
    net = t.build()
    assert net.resolve("b") == net.segments[to_host].ip_of("b") != net["b"].ip
    assert net.resolve("b", family=6) == net.segments[to_host].ip6_of("b")
    assert pings(net["a"], "b")


def test_a_process_started_before_the_names_sees_them(make_topology: Any) -> None:
    """The node's own command starts before its links exist; the names reach it anyway."""
    flag = f"/tmp/names-seen-{uuid.uuid4().hex[:8]}"
    t = make_topology()
    wait = "until busybox grep -q 'b$' /etc/hosts; do busybox sleep 0.05; done"
    t.node("a", command=["busybox", "sh", "-c", f"busybox mkdir -p /tmp; {wait}; "
                         f"busybox touch {flag}; exec busybox sleep 600"])
    t.node("b")
    t.connect("a", "b")
    net = t.build()
    for _ in range(100):
        if busybox(net["a"], "test", "-f", flag)[0] == 0:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"a's command never saw b in its /etc/hosts: "
                             f"{busybox(net['a'], 'cat', '/etc/hosts')}")
    busybox(net["a"], "rm", "-f", flag)


def test_the_hosts_etc_hosts_is_never_changed(make_bridged_pair: Any) -> None:
    before = Path("/etc/hosts").read_bytes(), os.stat("/etc/hosts").st_ino
    mounts_before = Path("/proc/self/mountinfo").read_text()
    pair = make_bridged_pair(ipv6=True)
    assert pings(pair.a, "b")
    assert (Path("/etc/hosts").read_bytes(), os.stat("/etc/hosts").st_ino) == before
    assert Path("/proc/self/mountinfo").read_text().count(" /etc/hosts ") == \
        mounts_before.count(" /etc/hosts ")


def test_namespace_processes_pin_no_other_namespace(make_bridged_pair: Any,
                                                    namespace_only: None) -> None:
    """The private mount a node's processes share keeps no namespace alive: each copy
    of a namespace mount there is either detached, or goes when the host removes it."""
    pair = make_bridged_pair()
    other = make_bridged_pair()  # up before the process starts: its mounts are copied
    proc = pair.a.spawn(["busybox", "sleep", "600"])
    netns = f"net:[{os.stat(pair.a.netns).st_ino}]"
    pid = 0
    for _ in range(100):  # until the child has exec'd
        pid = next((int(p) for p in os.listdir("/proc") if p.isdigit()
                    and _cmdline(int(p)) == ["busybox", "sleep", "600"]
                    and _netns(int(p)) == netns), 0)
        if pid:
            break
        time.sleep(0.02)
    assert pid, "the spawned sleep is not running in a's namespace"
    for _ in range(200):  # copies nothing would unmount are detached in the background
        if not _private_nsfs_mounts(pid):
            break
        time.sleep(0.05)
    assert not _private_nsfs_mounts(pid)
    other_netns = other.a.netns
    other.close()
    assert other_netns not in _nsfs_mounts(pid)  # its removal reached the copy
    proc.stop()


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return []


def _netns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def _private_nsfs_mounts(pid: int) -> set[str]:
    """Namespace mounts in `pid`'s mount table that receive no unmount from the host."""
    found = set()
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        before, after = line.split(" - ", 1)
        if after.startswith("nsfs ") and "master:" not in before:
            found.add(before.split()[4])
    return found


def _nsfs_mounts(pid: int) -> set[str]:
    return {line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
            if line.split(" - ")[1].startswith("nsfs ")}


# -- containers: written from the host, never through a symlink --------------------------


@pytest.fixture
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A file of the host that a naive write into a container would overwrite."""
    path = Path(f"/tmp/pytest-netns-canary-{uuid.uuid4().hex[:8]}")
    path.write_text("host file: must stay as it is\n")
    try:
        yield path
    finally:
        path.unlink()


@pytest.fixture
def symlinked_hosts_image(canary: Path, docker_only: None) -> Iterator[str]:
    """An image (FROM scratch, the host's static busybox, no pull) whose /etc/hosts is an
    absolute symlink to the canary, a file of the host."""
    from pytest_netns.nodes.engine import docker_client
    from pytest_netns.nodes.images import find_static_busybox

    tag = f"pytest-netns/symlinked-hosts:{uuid.uuid4().hex[:8]}"
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w") as tar:
        for directory in ("etc", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        link = tarfile.TarInfo("etc/hosts")
        link.type, link.linkname = tarfile.SYMTYPE, str(canary)
        tar.addfile(link)
    dockerfile = b"FROM scratch\nCOPY busybox /bin/busybox\nADD extra.tar /\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        tar.add(find_static_busybox(), arcname="busybox")
        for name, data in (("Dockerfile", dockerfile), ("extra.tar", extra.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = docker_client()
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, pull=False)
    try:
        yield tag
    finally:
        client.images.remove(tag, force=True)


@pytest.mark.parametrize("openat2", [True, False], ids=["openat2", "setns-helper"])
def test_a_symlinked_etc_hosts_never_leads_to_the_hosts_files(
    make_topology: Any, make_bridged_pair: Any, symlinked_hosts_image: str, canary: Path,
    openat2: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Docker shadows an image's /etc/hosts with a file of its own, so the container's
    process makes the trap itself: it unmounts Docker's file and puts the symlink back.
    That container is then attached, and its names written."""
    from pytest_netns.nodes.engine import docker_client, remove_container

    monkeypatch.setattr(mounts, "OPENAT2", openat2)
    before = canary.read_bytes(), canary.stat().st_mtime_ns
    started = make_bridged_pair(image=symlinked_hosts_image)  # the image alone: shadowed
    assert resolved(started.a, "b") == started.b_ip
    trap = (f"/bin/busybox umount /etc/hosts && /bin/busybox ln -sf {canary} /etc/hosts && "
            "/bin/busybox touch /ready; exec /bin/busybox sleep 600")
    ctr = docker_client().containers.run(
        symlinked_hosts_image, ["/bin/busybox", "sh", "-c", trap], detach=True,
        network_mode="none", init=True, cap_add=["SYS_ADMIN"],
        name=f"names-trap-{uuid.uuid4().hex[:8]}")
    try:
        for _ in range(100):
            if ctr.exec_run(["/bin/busybox", "test", "-f", "/ready"]).exit_code == 0:
                break
            time.sleep(0.05)
        ctr.reload()
        pid = int(ctr.attrs["State"]["Pid"])
        # the trap is set: a naive path through /proc/<pid>/root reaches the host's file
        assert os.readlink(f"/proc/{pid}/root/etc/hosts") == str(canary)
        assert Path(f"/proc/{pid}/root/etc/hosts").read_bytes() == before[0]
        t = make_topology()
        t.attach(ctr, name="trap")
        t.node("b")
        t.connect("trap", "b")
        net = t.build()
        assert (canary.read_bytes(), canary.stat().st_mtime_ns) == before
        # inside, /etc/hosts is now a file of the container's own, with the names
        code, out = net["trap"].exec(["/bin/busybox", "ls", "-l", "/etc/hosts"])
        assert code == 0 and out.startswith("-"), out
        assert resolved(net["trap"], "b") == net["b"].ip
        assert resolved(net["b"], "trap") == net["trap"].ip
        net.close()  # takes the names out of the container's file again
        assert (canary.read_bytes(), canary.stat().st_mtime_ns) == before
        code, out = ctr.exec_run(["/bin/busybox", "cat", "/etc/hosts"])
        assert code == 0 and b"trap" not in out
    finally:
        remove_container(ctr)


def test_an_attached_container_keeps_its_own_lines(make_bridged_pair: Any,
                                                   make_host_only_link: Any,
                                                   docker_only: None) -> None:
    from pytest_netns.nodes.engine import docker_client, remove_container
    from pytest_netns.nodes.images import DEFAULT_COMMAND, DEFAULT_IMAGE

    ctr = docker_client().containers.run(DEFAULT_IMAGE, DEFAULT_COMMAND, detach=True,
                                         network_mode="none", init=True,
                                         name=f"names-attached-{uuid.uuid4().hex[:8]}")
    try:
        ctr.reload()
        original = ctr.exec_run(["/bin/busybox", "cat", "/etc/hosts"]).output.decode()
        link = make_host_only_link(container=ctr)
        during = ctr.exec_run(["/bin/busybox", "cat", "/etc/hosts"]).output.decode()
        assert during.startswith(original) and f"{link.node_ip}\t{ctr.name}" in during
        link.close()
        after = ctr.exec_run(["/bin/busybox", "cat", "/etc/hosts"]).output.decode()
        assert after == original
    finally:
        remove_container(ctr)
