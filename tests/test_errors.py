"""Bad input, missing privileges, engines and drivers: clear errors, nothing left over.

Every case raises a NetnsError subclass whose message names the bad value
and what would be valid, and leaves nothing of the topology behind. What is
left is read with tools that are not pytest-netns (the /run/netns directory,
iproute2's `ip -j link`, the Docker API), and only for the objects of this
test's session: other sessions run on this machine at the same time.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_netns import (
    HOST,
    ContainerError,
    ImageError,
    InterfaceNameError,
    InvalidAddressError,
    InvalidTopologyError,
    NetnsError,
    SubnetOverlapError,
    SubnetTooSmallError,
    TopologyBuildError,
    UnsupportedKindError,
)
from pytest_netns.kernel.janitor import janitor
from pytest_netns.ownership import Session
from pytest_netns.topology.subnets import live_reservations

PYTHON = sys.executable
NOBODY = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
          "--reuid=65534", "--regid=65534", "--clear-groups"]


# -- what a session owns, seen from outside -----------------------------------


def leftovers(session: Session) -> set[str]:
    """Every object `session` owns now: namespaces, root-namespace links,
    containers and subnet reservations."""
    janitor().drain()  # teardown defers host-link deletion and container removal
    found = {f"netns {n}" for n in os.listdir("/run/netns")
             if n.startswith(f"pytest-netns-{session.id}-")}
    found |= {f"link {ln['ifname']}" for ln in ip_json("link", "show")
              if str(ln.get("ifalias", "")).startswith(session.alias)}
    from pytest_netns.nodes.engine import docker_client, engine_available

    if engine_available():
        from pytest_netns.nodes import prefetch

        found |= {f"container {c.name}" for c in docker_client().containers.list(
            all=True, filters={"label": f"pytest-netns.session={session.id}"})}
        found -= {f"container {name}" for name in prefetch.waiting()}  # ready for the next test
    found |= {f"subnet {net}" for net, owner in live_reservations().items()
              if owner.startswith(f"{session.id}:")}
    return found


def assert_nothing_left(session: Session, before: set[str]) -> None:
    """Wait (on kernel state, at most 10 s) until nothing beyond `before` remains.

    Deleting a namespace reaps the veths in it asynchronously, so a host-side
    end can linger for a moment after its topology is gone.
    """
    deadline = time.monotonic() + 10
    while True:
        new = leftovers(session) - before
        if not new or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not new, f"left behind after the error: {sorted(new)}"


@pytest.fixture
def clean(netns_session: Session) -> Iterator[Callable[[], None]]:
    """Snapshot the session's objects; the test calls the result to prove none were added."""
    before = leftovers(netns_session)
    yield lambda: assert_nothing_left(netns_session, before)


@pytest.fixture
def factories(
    make_isolated_container: Any, make_host_only_link: Any, make_bridged_pair: Any,
    make_nat_uplink: Any,
) -> dict[str, Any]:
    """The four recipe factories by name, for tests parametrized over recipes."""
    return {"isolated_container": make_isolated_container, "host_only_link": make_host_only_link,
            "bridged_pair": make_bridged_pair, "nat_uplink": make_nat_uplink}


def raises_naming(
    kind: type[NetnsError], value: object, fn: Callable[[], object], *hints: str
) -> NetnsError:
    """fn() raises `kind`, naming `value` and every hint (what would be valid)."""
    with pytest.raises(kind) as info:
        fn()
    message = str(info.value)
    assert repr(value) in message or str(value) in message, message
    for hint in hints:
        assert hint in message, message
    return info.value


def ip_json(*args: str) -> list[dict[str, Any]]:
    """iproute2's view of the host (not pytest-netns's)."""
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    return list(json.loads(out)) if out.strip() else []


def host_routes() -> list[ipaddress.IPv4Network]:
    """The host's own prefixes, leaving out those of topologies that other
    sessions build and tear down meanwhile (on links carrying a pytest-netns alias)."""
    ours = {ln["ifname"] for ln in ip_json("link", "show")
            if str(ln.get("ifalias", "")).startswith("pytest-netns:")}
    return [ipaddress.IPv4Network(r["dst"]) for r in ip_json("-4", "route", "show")
            if r["dst"] != "default" and "/" in r["dst"] and r.get("dev") not in ours]


def kernel_has(shell: str) -> bool:
    """Whether iproute2 can do `shell` in a throwaway namespace (`unshare -n`)."""
    return subprocess.run(["unshare", "-n", "sh", "-c", shell], capture_output=True,
                          check=False).returncode == 0


# -- malformed addresses and subnets ------------------------------------------

BAD_IPS = ["300.1.1.1", "banana", "10.0.0", "1.2.3.4.5", "", "10.0.0.1/33", "-1.0.0.1",
           "10.0.0.256", None]
BAD_SUBNETS = ["300.1.1.0/24", "/33", "10.0.0.0/33", "banana", "10.0.0.0/banana",
               "10.0.0.0/-1", "", "10.0.0.0/24/1", 5]


@pytest.mark.parametrize("ip", BAD_IPS)
def test_malformed_ip(make_isolated_container: Any, clean: Callable[[], None], ip: object) -> None:
    raises_naming(InvalidAddressError, ip, lambda: make_isolated_container(ip=ip), "expected")
    clean()


@pytest.mark.parametrize("subnet", BAD_SUBNETS)
@pytest.mark.parametrize("recipe", ["host_only_link", "bridged_pair", "nat_uplink"])
def test_malformed_subnet(
    factories: dict[str, Any], clean: Callable[[], None], recipe: str, subnet: object
) -> None:
    factory = factories[recipe]
    raises_naming(InvalidAddressError, subnet, lambda: factory(subnet=subnet), "expected")
    clean()


def test_malformed_upstream_subnet_and_node_ips(
    make_nat_uplink: Any, make_bridged_pair: Any, make_host_only_link: Any,
    clean: Callable[[], None],
) -> None:
    raises_naming(InvalidAddressError, "300.0.0.0/24",
                  lambda: make_nat_uplink(upstream_subnet="300.0.0.0/24"), "expected")
    raises_naming(InvalidAddressError, "10.0.0.999",
                  lambda: make_bridged_pair(a_ip="10.0.0.999"), "expected")
    raises_naming(InvalidAddressError, "banana",
                  lambda: make_host_only_link(host_ip="banana"), "expected")
    clean()


@pytest.mark.parametrize("prefixlen", [0, 33, -1, "banana", None, 24.5, True])
def test_malformed_prefix_length(
    make_isolated_container: Any, clean: Callable[[], None], prefixlen: object
) -> None:
    raises_naming(InvalidAddressError, prefixlen,
                  lambda: make_isolated_container(prefixlen=prefixlen), "1 to 32")
    clean()


@pytest.mark.parametrize(("ip", "why"), [
    ("127.0.0.5", "loopback"), ("224.0.0.9", "multicast"), ("0.1.2.3", "'this network'"),
    ("10.0.0.0/24", "network address"), ("10.0.0.255/24", "broadcast address"),
])
def test_address_that_cannot_be_assigned(
    make_isolated_container: Any, clean: Callable[[], None], ip: str, why: str
) -> None:
    raises_naming(InvalidAddressError, ip.split("/")[0], lambda: make_isolated_container(ip=ip),
                  why)
    clean()


def test_special_or_public_subnets(
    make_bridged_pair: Any, make_host_only_link: Any, clean: Callable[[], None]
) -> None:
    raises_naming(InvalidAddressError, "0.0.0.0/0",
                  lambda: make_bridged_pair(subnet="0.0.0.0/0"), "unicast subnet")
    raises_naming(InvalidAddressError, "127.0.0.0/24",
                  lambda: make_bridged_pair(subnet="127.0.0.0/24"), "loopback")
    # a host-side link to public space would divert the host's own traffic
    raises_naming(InvalidAddressError, "8.8.8.0/24",
                  lambda: make_host_only_link(subnet="8.8.8.0/24"), "private space")
    clean()


# -- subnets too small, or overlapping the host -------------------------------


@pytest.mark.parametrize("recipe", ["host_only_link", "bridged_pair", "nat_uplink"])
def test_subnet_too_small(
    factories: dict[str, Any], clean: Callable[[], None], recipe: str
) -> None:
    factory = factories[recipe]
    raises_naming(SubnetTooSmallError, "10.99.0.0/31", lambda: factory(subnet="10.99.0.0/31"),
                  "needs 2", "/30 or shorter")
    clean()


def test_subnet_too_small_for_a_pair_with_a_gateway(
    make_topology: Any, clean: Callable[[], None]
) -> None:
    t = make_topology(verify=False)
    lan = t.switch("lan", subnet="10.99.0.0/30")  # two hosts: a and b fit, the gateway not
    for name in (t.node("a"), t.node("b"), t.router("gw")):
        t.connect(name, lan)
    raises_naming(SubnetTooSmallError, "10.99.0.0/30", t.build, "needs 3", "/29 or shorter")
    clean()


def test_subnet_overlapping_a_host_route(
    make_host_only_link: Any, make_nat_uplink: Any, clean: Callable[[], None]
) -> None:
    routes = host_routes()
    assert routes, "the host has no routes to collide with"
    for route in routes:
        raises_naming(SubnetOverlapError, str(route),
                      lambda r=route: make_host_only_link(subnet=str(r)), "pick a subnet")
        raises_naming(SubnetOverlapError, str(route),
                      lambda r=route: make_nat_uplink(upstream_subnet=str(r)), "pick a subnet")
    # a slice of a host route collides just the same
    inner = next(routes[0].subnets(new_prefix=min(routes[0].prefixlen + 1, 30)))
    raises_naming(SubnetOverlapError, str(inner),
                  lambda: make_host_only_link(subnet=str(inner)), "pick a subnet")
    clean()


def test_nat_subnets_overlapping_each_other(
    make_nat_uplink: Any, clean: Callable[[], None]
) -> None:
    raises_naming(InvalidAddressError, "10.99.1.0/24",
                  lambda: make_nat_uplink(subnet="10.99.1.0/24", upstream_subnet="10.99.1.0/25"),
                  "disjoint")
    clean()


def test_overlapping_subnets_in_one_node(make_topology: Any, clean: Callable[[], None]) -> None:
    t = make_topology(verify=False)
    a, b = t.node("a"), t.node("b")
    t.connect(a, HOST, subnet="10.99.5.0/24")
    t.connect(a, b, subnet="10.99.5.128/25")
    raises_naming(InvalidAddressError, "10.99.5.128/25", t.build, "both reach 'a'", "disjoint")
    clean()


def test_automatic_subnets_avoid_the_explicit_ones(make_topology: Any) -> None:
    half_the_pool = ipaddress.IPv4Network("10.64.0.0/11")
    t = make_topology(verify=False)
    a, b, sw = t.node("a"), t.node("b"), t.switch("lan", subnet=str(half_the_pool))
    t.connect(a, sw)
    t.connect(b, sw)
    up = t.connect(a, HOST)
    assert not t.build().segments[up].subnet.overlaps(half_the_pool)


# -- interface names -----------------------------------------------------------

BAD_IFNAMES = [("x" * 16, "at most 15"), ("eth 1", "letters, digits"), ("eth/1", "letters"),
               ("eth:1", "letters"), ("eth1\n", "letters"), ("", "non-empty"),
               ("ethé", "letters"), ("e%d", "letters"), ("lo", "loopback"), ("all", "reserves"),
               (".", "letters"), (7, "non-empty string")]


@pytest.mark.parametrize(("iface", "hint"), BAD_IFNAMES)
@pytest.mark.parametrize("recipe", ["isolated_container", "host_only_link", "bridged_pair"])
def test_bad_interface_name(
    factories: dict[str, Any], clean: Callable[[], None], recipe: str, iface: object,
    hint: str,
) -> None:
    factory = factories[recipe]
    raises_naming(InterfaceNameError, iface, lambda: factory(iface=iface), hint)
    clean()


@pytest.mark.parametrize(("iface", "hint"), BAD_IFNAMES[:4])
def test_bad_host_side_interface_name(
    make_host_only_link: Any, clean: Callable[[], None], iface: str, hint: str
) -> None:
    raises_naming(InterfaceNameError, iface, lambda: make_host_only_link(host_iface=iface), hint)
    clean()


def test_host_interface_that_already_exists(
    make_host_only_link: Any, clean: Callable[[], None]
) -> None:
    existing = next(ln["ifname"] for ln in ip_json("link", "show") if ln["ifname"] != "lo")
    raises_naming(InterfaceNameError, existing,
                  lambda: make_host_only_link(host_iface=existing), "already exists")
    clean()


def test_second_link_named_like_an_existing_one(
    make_host_only_link: Any, netns_session: Session
) -> None:
    name = f"pe{uuid.uuid4().hex[:8]}"
    first = make_host_only_link(host_iface=name, verify=False)
    before = leftovers(netns_session)
    raises_naming(InterfaceNameError, name, lambda: make_host_only_link(host_iface=name),
                  "already exists")
    assert_nothing_left(netns_session, before)
    assert f"link {name}" in leftovers(netns_session), "the first link must survive"
    assert first.host_iface == name


def test_interface_name_used_twice_in_one_node(
    make_topology: Any, clean: Callable[[], None]
) -> None:
    t = make_topology(verify=False)
    a, sw = t.node("a"), t.switch("lan")
    t.connect(a, sw, iface="eth1")
    t.connect(a, HOST, iface="eth1")
    raises_naming(InterfaceNameError, "eth1", t.build, "given twice")
    clean()


def test_explicit_name_is_skipped_by_automatic_ones(make_topology: Any) -> None:
    """An automatic name never takes a name asked for later in the same node."""
    t = make_topology(verify=False)
    a, b = t.node("a"), t.node("b")
    first = t.connect(a, b)
    second = t.connect(a, HOST, iface="eth1")
    topo = t.build()
    assert topo.segments[first].ifname_of(a) == "eth2"
    assert topo.segments[second].ifname_of(a) == "eth1"


# -- kernel drivers --------------------------------------------------------------


def test_missing_dummy_driver(
    make_isolated_container: Any, make_topology: Any, clean: Callable[[], None]
) -> None:
    """kind='dummy' fails clearly where the kernel has no dummy driver; the default
    falls back. Where the kernel has one, asking for it works."""
    if kernel_has("ip link add d0 type dummy"):
        assert make_isolated_container(kind="dummy").kind == "dummy"
        return
    raises_naming(UnsupportedKindError, "dummy", lambda: make_isolated_container(kind="dummy"),
                  "no dummy driver", "leave kind unset")
    # mid-build: a switch, two nodes and their links exist when the stub fails
    t = make_topology(verify=False)
    a, b, sw = t.node("a"), t.node("b"), t.switch("lan")
    t.connect(a, sw)
    t.connect(b, sw)
    t.stub(a, kind="dummy")
    raises_naming(UnsupportedKindError, "dummy", t.build, "no dummy driver")
    clean()
    assert make_isolated_container().kind != "dummy"


def test_unknown_interface_kind(make_isolated_container: Any, clean: Callable[[], None]) -> None:
    raises_naming(UnsupportedKindError, "macvtap", lambda: make_isolated_container(kind="macvtap"),
                  "'dummy', 'ifb', 'veth'")
    clean()


# -- failures part-way through a build ------------------------------------------


def test_failure_after_everything_else_is_built(
    make_topology: Any, clean: Callable[[], None]
) -> None:
    """Routes come last: a gateway nobody can reach fails after every namespace,
    bridge, veth (the host's included) exists, and all of it goes."""
    t = make_topology(verify=False)
    a, b, gw, sw = t.node("a"), t.node("b"), t.router("gw"), t.switch("lan")
    for name in (a, b, gw):
        t.connect(name, sw)
    t.connect(a, HOST)
    t.route(b, "10.250.0.0/24", via="10.251.0.1")
    with pytest.raises(TopologyBuildError, match=r"10\.250\.0\.0/24"):
        t.build()
    clean()


@pytest.mark.parametrize(("option", "why"), [
    ({"devices": ["/dev/nonexistent-netns:/dev/x"]}, "nonexistent-netns"),  # created, not started
    ({"mem_limit": "1k"}, "Minimum memory limit"),  # refused at create
    ({"no_such_option": 1}, "no_such_option"),
])
def test_container_the_engine_refuses(
    docker_only: None, make_topology: Any, clean: Callable[[], None], option: dict[str, Any],
    why: str,
) -> None:
    """The router and switch namespaces exist when the container start fails."""
    t = make_topology(verify=False)
    a, gw, sw = t.node("a", **option), t.router("gw"), t.switch("lan")
    t.connect(a, sw)
    t.connect(gw, sw)
    with pytest.raises(ContainerError, match=why):
        t.build()
    clean()


@pytest.fixture
def own_container(docker_only: None, netns_image: str) -> Iterator[Any]:
    """A running container this test starts itself (no pytest-netns labels)."""
    from pytest_netns.nodes.engine import docker_client, remove_container

    ctr = docker_client().containers.run(
        netns_image, ["/bin/busybox", "sleep", "600"], detach=True, network_mode="none",
        init=True, name=f"netns-errors-{uuid.uuid4().hex[:8]}",
    )
    yield ctr
    remove_container(ctr)


def container_links(ctr: Any) -> dict[str, list[str]]:
    """{ifname: [addresses]} seen by the container's own busybox."""
    code, out = ctr.exec_run(["/bin/busybox", "ip", "-o", "-4", "addr"])
    assert code == 0, out
    seen: dict[str, list[str]] = {}
    for line in out.decode().splitlines():
        fields = line.split()
        seen.setdefault(fields[1], []).append(fields[3])
    code, out = ctr.exec_run(["/bin/busybox", "ip", "-o", "link"])
    for line in out.decode().splitlines():
        seen.setdefault(line.split(":")[1].strip().split("@")[0], [])
    return seen


def test_iface_that_exists_in_an_attached_container(
    own_container: Any, make_host_only_link: Any, make_topology: Any, netns_session: Session
) -> None:
    """The clash is found before anything is created, and the container's own
    eth1 (from an earlier topology) is left alone."""
    first = make_host_only_link(container=own_container, verify=False)
    had = container_links(own_container)
    assert first.node_ip + "/" + str(first.prefixlen) in had["eth1"]
    before = leftovers(netns_session)
    t = make_topology(verify=False)
    node = t.attach(own_container)
    other, sw = t.node("other"), t.switch("lan")
    t.connect(node, sw, iface="eth1")
    t.connect(other, sw)
    raises_naming(InterfaceNameError, "eth1", t.build, "already exists in attached container")
    assert_nothing_left(netns_session, before)
    assert container_links(own_container) == had
    # without an explicit name, the next free one is chosen
    t2 = make_topology(verify=False)
    node = t2.attach(own_container)
    seg = t2.connect(node, HOST)
    assert t2.build().segments[seg].ifname_of(node) == "eth2"


# -- images and the Docker engine ---------------------------------------------


@pytest.mark.parametrize("image", ["nonexistent/image:1", "UPPER/case:1", "bad image"])
def test_missing_or_invalid_image(
    docker_only: None, make_bridged_pair: Any, clean: Callable[[], None], image: str
) -> None:
    """Never pulled: no registry is reachable, and a pull would only hang."""
    raises_naming(ImageError, image, lambda: make_bridged_pair(image=image))
    clean()


BACKEND_TEST = """
def test_backend(netns_backend, make_isolated_container):
    iso = make_isolated_container()
    print("BACKEND", netns_backend, iso.node.container, iso.node.netns)
"""


@pytest.fixture
def docker_down(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytest subprocess whose Docker engine address leads nowhere
    (`engine_available()` is cached per process, hence a subprocess)."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.delenv("PYTEST_NETNS_BACKEND", raising=False)
    pytester.makepyfile(BACKEND_TEST)
    return pytester


def test_docker_down_with_docker_backend(docker_down: pytest.Pytester) -> None:
    result = docker_down.runpytest_subprocess("--netns-backend=docker", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*DockerUnavailableError*--netns-backend=docker*"])


def test_docker_down_with_auto_backend(docker_down: pytest.Pytester) -> None:
    result = docker_down.runpytest_subprocess("--netns-backend=auto", "-s", "-p",
                                              "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*BACKEND namespace None /run/netns/pytest-netns-*"])


def test_unknown_backend(make_topology: Any) -> None:
    raises_naming(InvalidTopologyError, "podman", lambda: make_topology(backend="podman"),
                  "expected one of")


@pytest.mark.parametrize("name", ["my node", "nœud-ü", "-a", "a/b", "x" * 64, "", 5, "host"])
def test_a_node_name_docker_would_refuse(
    make_topology: Any, clean: Callable[[], None], name: object
) -> None:
    """Issue 11 #9: accepted, then "Invalid container name" at build(); now refused up front,
    with one rule on both backends."""
    t = make_topology()
    raises_naming(InvalidTopologyError, name, lambda: t.node(name))
    if name != "":  # a switch without a name gets one
        raises_naming(InvalidTopologyError, name, lambda: t.switch(name))
    raises_naming(InvalidTopologyError, name, lambda: t.router(name))
    clean()
    t.node("ok-name_1.x")
    assert t.build()["ok-name_1.x"].name == "ok-name_1.x"


# -- without root or CAP_NET_ADMIN -------------------------------------------------

BUILD_SCRIPT = """
import sys
from pytest_netns import NetnsError, TopologyBuilder
from pytest_netns.topology.recipes import isolated_container
try:
    isolated_container(TopologyBuilder(backend="namespace", verify=False))
except NetnsError as exc:
    print(f"{type(exc).__name__}: {exc}")
    sys.exit(3)
print("built")
"""


@pytest.mark.parametrize("prefix", [
    pytest.param(NOBODY, id="setpriv-nobody"),
    pytest.param(["capsh", "--drop=cap_net_admin,cap_sys_admin", "--", "-c"], id="capsh-root"),
])
def test_without_privileges(prefix: list[str]) -> None:
    argv = [PYTHON, "-c", BUILD_SCRIPT]
    cmd = [*prefix, shlex.join(argv)] if prefix[0] == "capsh" else [*prefix, *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd="/")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, out + err
    assert out.startswith("NotPermittedError: "), out
    assert "CAP_NET_ADMIN" in out and "pytest-netns doctor" in out, out
    assert "Traceback" not in err, err
    # refused before anything was made: no namespace, no session record
    assert not [n for n in os.listdir("/run/netns") if f"-{proc.pid}-" in n]
    for record in os.listdir("/run/pytest-netns/sessions"):
        with open(os.path.join("/run/pytest-netns/sessions", record)) as f:
            assert f.read().split()[0] != str(proc.pid)


def test_without_privileges_under_pytest() -> None:
    """The plugin's fixtures fail with the same clear error, not an EACCES."""
    with tempfile.TemporaryDirectory(prefix="netns-nonroot-") as tmp:
        os.chmod(tmp, 0o755)
        with open(os.path.join(tmp, "test_nonroot.py"), "w") as f:
            f.write(BACKEND_TEST)
        os.chmod(os.path.join(tmp, "test_nonroot.py"), 0o644)
        done = subprocess.run(
            [*NOBODY, PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-q",
             "--netns-backend=namespace", "test_nonroot.py"],
            cwd=tmp, capture_output=True, text=True, timeout=120, check=False,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 error" in out, out
    assert "NotPermittedError: pytest-netns needs root" in out, out
    assert "PermissionError: [Errno" not in out, out
