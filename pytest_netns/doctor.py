"""`pytest-netns doctor`: what this host supports, what is missing, and the fix.

Every kernel feature is tried for real rather than looked up: a driver may
be built in, autoloaded on first use, or blocked, and module lists cannot
tell these apart. The tries happen in a throwaway namespace that only a
descriptor of the doctor's pins (it vanishes with it, even if the doctor is
killed half-way), never in the host's namespace, whose firewall and links
are only read.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from .errors import NetnsError
from .kernel.netlink import Netlink
from .kernel.netns import NETNS_RUN_DIR, Netns
from .kernel.privileges import missing_privileges
from .ownership import STATE_DIR

OK, MISSING, PRESENT, ABSENT, UNCHECKED = "ok", "missing", "present", "absent", "not checked"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, what was found, what to do."""

    name: str
    status: str
    detail: str
    blocking: bool = False  # without it pytest-netns cannot build topologies at all

    @property
    def failed(self) -> bool:
        return self.blocking and self.status != OK


# -- privileges and the engine ------------------------------------------------


def check_privileges() -> Check:
    missing = missing_privileges()
    if not missing:
        return Check("root and capabilities", OK,
                     f"uid {os.geteuid()} with CAP_NET_ADMIN and CAP_SYS_ADMIN; "
                     f"{NETNS_RUN_DIR} and {STATE_DIR} writable")
    fix = ("run as root without dropping capabilities (in a container: --cap-add NET_ADMIN "
           "--cap-add SYS_ADMIN, or --privileged)" if os.geteuid() == 0
           else "run pytest as root (e.g. `sudo -E pytest`)")
    return Check("root and capabilities", MISSING,
                 f"uid {os.geteuid()} lacks {', '.join(missing)}: {fix}", blocking=True)


def check_docker() -> list[Check]:
    from .errors import ImageError
    from .nodes.engine import docker_client, engine_available
    from .nodes.images import DEFAULT_IMAGE, find_static_busybox

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        busybox = Check("static busybox", OK, f"{find_static_busybox()} (the test image's "
                        "only file)")
    except ImageError as exc:
        busybox = Check("static busybox", MISSING, f"{exc}")
    if not engine_available():
        return [
            Check("docker engine", MISSING,
                  f"nothing answers at {where}: --netns-backend=auto uses bare namespaces; "
                  "start dockerd for container nodes"),
            busybox,
        ]
    import docker.errors

    client = docker_client()
    version = client.version()
    engine = Check("docker engine", OK, f"Docker {version.get('Version')} (API "
                   f"{version.get('ApiVersion')}) at {where}")
    try:
        client.images.get(DEFAULT_IMAGE)
        image = Check("test image", OK, f"{DEFAULT_IMAGE} present")
    except docker.errors.ImageNotFound:
        image = Check("test image", MISSING,
                      f"{DEFAULT_IMAGE} is built from the static busybox on first use; "
                      "`pytest-netns image` builds it now")
    return [engine, image, busybox]


# -- kernel features, tried in a throwaway namespace ----------------------------


def _try(fn: Callable[[], object]) -> str | None:
    """None when fn works, else why it failed."""
    try:
        fn()
    except (NetnsError, OSError) as exc:
        return str(exc)
    return None


def check_kernel() -> list[Check]:
    """Drivers, netem and NAT, each tried inside one unpinned namespace."""
    try:
        netns = Netns.anonymous("pytest-netns doctor")
    except (NetnsError, OSError) as exc:
        return [Check("network namespaces", MISSING, f"cannot create one: {exc}", blocking=True)]
    try:
        return _kernel_checks(netns, Netlink(netns))
    finally:
        netns.close()


def _kernel_checks(netns: Netns, nl: Netlink) -> list[Check]:
    from .kernel.nat import enable_masquerade

    checks = [Check("network namespaces", OK, "unshare(CLONE_NEWNET) works", blocking=True)]
    veth = _try(lambda: nl.add_veth("dr-veth0", "dr-veth1"))
    checks.append(Check("veth driver", OK, "every link of every topology is a veth pair",
                        blocking=True) if veth is None else
                  Check("veth driver", MISSING, f"{veth}: no topology can be built; load "
                        "the veth module (modprobe veth)", blocking=True))
    bridge = _try(lambda: nl.add_bridge("dr-br0"))
    checks.append(Check("bridge driver", OK, "switches (bridged_pair) work") if bridge is None
                  else Check("bridge driver", MISSING, f"{bridge}: bridged_pair and switches "
                             "are unavailable; load the bridge module (modprobe bridge)"))
    ifb = _try(lambda: nl.add_simple("dr-ifb0", "ifb"))
    dummy = _try(lambda: nl.add_simple("dr-dummy0", "dummy"))
    fallback = "ifb" if ifb is None else "a veth whose peer is parked in a private namespace"
    checks.append(Check("dummy driver", OK, "isolated_container uses it (kind='dummy')")
                  if dummy is None else
                  Check("dummy driver", MISSING, f"isolated_container falls back to {fallback}; "
                        "nothing to do (only an explicit kind='dummy' fails)"))
    checks.append(Check("ifb driver", OK, "fallback guest-only interface") if ifb is None
                  else Check("ifb driver", MISSING, "isolated_container falls back to a parked "
                             "veth; nothing to do"))
    if veth is not None:
        return [*checks, Check("nftables", UNCHECKED, "needs a veth to try it on")]
    tool: list[str] = []
    nat = _try(lambda: tool.append(enable_masquerade(netns.run, "pytest_netns_doctor",
                                                     "dr-veth0")))
    if nat is None and tool == ["nftables"]:
        checks.append(Check("nftables", OK, "masquerade works in a router namespace (nat_uplink)"))
    elif nat is None:
        checks.append(Check("nftables", MISSING, "`nft` is not installed; NAT uses iptables "
                            "instead, which works; nothing to do"))
    else:
        checks.append(Check("nftables", MISSING, f"{nat}: nat_uplink is unavailable; install "
                            "nftables (apt-get install nftables) or iptables"))
    return checks


# -- the host's firewall (read only) and the subnet pool ------------------------


def check_faults() -> list[Check]:
    """Which mechanism serves each fault here: the same answer the faults use (tried once)."""
    from .kernel.impairment import capabilities

    caps = capabilities()
    checks = [Check("netem", OK, "present: delay, jitter, loss, duplicate, corrupt and reorder "
                    "use it") if caps.netem else
              Check("netem", MISSING, "absent: delay, jitter, loss, duplicate, corrupt and "
                    "reorder use pytest-netns's forwarder process instead; nothing to do")]
    for name, covers, what, needs in (
            ("impairments", "delay, jitter, loss, duplicate, corrupt, reorder", "delay",
             "sch_netem, or clsact + cls_bpf + act_mirred for the forwarder"),
            ("rate limits", "rate", "rate", "sch_tbf"),
            ("cuts, partitions", "down/up, flapping, partitions", "partition",
             "clsact (sch_ingress) + cls_bpf")):
        mechanism = caps.mechanism(what)
        checks.append(Check(name, OK, f"{covers}: {mechanism}") if mechanism else
                      Check(name, MISSING, f"{covers} unavailable: needs {needs}"))
    return checks


def check_br_netfilter() -> Check:
    """Docker's br_netfilter + FORWARD DROP: what breaks hand-made root bridges."""
    name = "br_netfilter + FORWARD DROP"
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            nf_call = f.read().strip() == "1"
    except FileNotFoundError:
        nf_call = False
    policy = "unknown"
    iptables = shutil.which("iptables")
    if iptables:
        out = subprocess.run([iptables, "-S", "FORWARD"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
        policy = next((ln.split()[2] for ln in out.splitlines() if ln.startswith("-P FORWARD")),
                      "unknown")
    seen = (f"bridge-nf-call-iptables={'1' if nf_call else '0/absent'}, "
            f"FORWARD policy {policy}")
    if policy == "unknown" and nf_call:
        return Check(name, UNCHECKED, f"{seen} (`iptables -S FORWARD` needs CAP_NET_ADMIN); "
                     "pytest-netns puts bridges in their own namespace, so nothing to do")
    if nf_call and policy == "DROP":
        return Check(name, PRESENT, f"{seen}: hand-made root-namespace bridges drop traffic; "
                     "pytest-netns puts bridges in their own namespace, so nothing to do")
    return Check(name, ABSENT, f"{seen}: root-namespace bridges would pass traffic; "
                 "pytest-netns does not rely on either; nothing to do")


def check_subnets() -> Check:
    from .topology.subnets import DEFAULT_POOL, free_subnet_count

    free, total = free_subnet_count()
    if free:
        return Check("free subnets", OK, f"{free} of {total} /24 in {DEFAULT_POOL} free",
                     blocking=True)
    return Check("free subnets", MISSING, f"all {total} /24 in {DEFAULT_POOL} are taken by "
                 "live topologies or host routes: close topologies, or run `pytest-netns "
                 "cleanup`; explicit subnets still work", blocking=True)


def check_ipv6() -> Check:
    """IPv6 for `ipv6=True` topologies: in the kernel, and /64s free in the pool."""
    from .errors import IPv6UnavailableError
    from .topology.addresses import require_ipv6
    from .topology.subnets import DEFAULT_POOL6, live_reservations

    try:
        require_ipv6()
    except IPv6UnavailableError as exc:
        return Check("IPv6", MISSING, f"{exc}; IPv4 topologies are not affected")
    held = sum(1 for net in live_reservations() if net.version == 6)
    return Check("IPv6", OK, f"in the kernel; ipv6=True topologies take /64s from "
                 f"{DEFAULT_POOL6} ({held} held by live topologies)")


# -- the report ----------------------------------------------------------------


def run_checks() -> list[Check]:
    privileges = check_privileges()
    checks = [privileges, *check_docker()]
    if privileges.status == OK:
        checks += check_kernel()
        checks += check_faults()
    else:
        checks += [Check(n, UNCHECKED, "trying it in a throwaway namespace needs the "
                         "privileges above")
                   for n in ("veth driver", "bridge driver", "dummy driver", "ifb driver",
                             "netem", "nftables")]
    checks.append(check_br_netfilter())
    checks.append(check_subnets())
    checks.append(check_ipv6())
    return checks


def verdict(checks: list[Check]) -> tuple[bool, str]:
    """(usable, the verdict line)."""
    failed = [c for c in checks if c.failed]
    if failed:
        return False, ("NOT usable: fix " + "; ".join(f"{c.name} ({c.status})" for c in failed)
                       + " as shown above")
    backends = ["docker", "namespace"] if any(
        c.name == "docker engine" and c.status == OK for c in checks) else ["namespace"]
    limits = [c.name for c in checks if c.status == MISSING]
    line = f"usable, with the {' and '.join(backends)} backend{'s' * (len(backends) > 1)}"
    if limits:
        line += f"; missing but not needed: {', '.join(limits)} (see above)"
    return True, line


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks) + 1
    status_width = max(len(c.status) for c in checks)
    versions = ", ".join(f"{pkg} {package_version(pkg)}" for pkg in ("pyroute2", "docker", "scapy"))
    lines = [f"pytest-netns doctor: kernel {platform.release()}, Python "
             f"{platform.python_version()}, {versions}", ""]
    lines += [f"  {c.name + ':':<{width}} {c.status:<{status_width}} — {c.detail}"
              for c in checks]
    line = verdict(checks)[1]
    lines += ["", f"verdict: {line}"]
    return "\n".join(lines)


def package_version(pkg: str) -> str:
    """The installed version of a distribution, or 'not installed'."""
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    """Print the report; 0 when pytest-netns can build topologies here, else 1."""
    checks = run_checks()
    print(render(checks))
    return 0 if verdict(checks)[0] else 1
