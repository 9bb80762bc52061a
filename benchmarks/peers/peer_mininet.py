#!/usr/bin/python3
"""Mininet rows for the side-by-side benchmark (run with Debian's python3).

Rows (the same shapes as pytest-netns's rows in ours.py):

  pair             2 hosts + 1 switch: build, ping both ways, stop
  star200          200 hosts on one switch: build, stop
  star1000         1000 hosts on one switch: build, stop
  pingall30        30 hosts: build, pingAll (870 pings), stop. Why 30: run_all.py

How Mininet is run, and why:

* The switch is Mininet's own `LinuxBridge`, forced into a namespace of its
  own. Mininet's default switch is Open vSwitch (not installed: see
  setup_peers.sh), and a `LinuxBridge` in the root namespace is subject to the
  host's firewall: with Docker running (`br_netfilter`, FORWARD policy DROP)
  pingAll loses 100 %. `Mininet.addSwitch` passes the net's
  `inNamespace=False`, so the subclass overrides it.
* `Mininet.init()` calls `fixLimits()`, which writes the host's sysctls
  (tcp_rmem/tcp_wmem always; wmem_max, rmem_max, netdev_max_backlog,
  neigh gc_thresh1-3, route.max_size, fs.file-max, kernel.pty.max when lower).
  We skip it (`Mininet.inited = True`) after raising this process's own
  rlimits as fixLimits does; the guarded sysctls are compared after every row
  and restored if anything changed them (reported as "sysctls_restored").
* Hosts and the switch live in unnamed namespaces held by their bash shells;
  the switch's ports are created in the switch's namespace. Nothing of
  Mininet's appears in the root namespace. Never run `mn -c` here: it deletes
  by pattern, including links that are not Mininet's.
* Names carry the `pm` prefix (pms1, pmh1...), so leftovers are recognisable.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import contextlib

from peer_common import (
    Clock,
    CommandCounter,
    Record,
    default_signals,
    descendants,
    emit,
    load1,
    parser,
    peak_rss_kb,
    read_sysctls,
    resources,
    restore_sysctls,
    run_children,
    run_rows,
    skipped,
)

TOOL = "mininet"
ROWS = ("pair", "star200", "star1000", "pingall30")
DEFAULT_ROWS = ("pair", "star200", "star1000")


def unavailable() -> str | None:
    """Why Mininet cannot run here, or None."""
    if os.geteuid() != 0:
        return "Mininet needs root"
    if importlib.util.find_spec("mininet") is None:  # not imported: run_row times that
        return (f"mininet is not importable by {sys.executable}: run setup_peers.sh "
                "(apt mininet) and use Debian's /usr/bin/python3")
    for tool in ("mnexec", "brctl", "ping", "ifconfig"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":")):
            return f"{tool} not found on PATH: run setup_peers.sh"
    return None


def _classes() -> tuple[Any, Any]:
    """Mininet, and a LinuxBridge that lives in a namespace of its own."""
    from resource import RLIMIT_NOFILE, RLIMIT_NPROC

    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.nodelib import LinuxBridge
    from mininet.util import rlimitTestAndSet

    class NamespacedBridge(LinuxBridge):  # type: ignore[misc]
        """LinuxBridge in its own namespace: out of reach of the host's firewall."""

        def __init__(self, name: str, **params: Any) -> None:
            params["inNamespace"] = True
            super().__init__(name, **params)
            # Switch.__init__ sets controlIntf only for root-namespace switches,
            # but Switch.defaultIntf() reads it.
            self.controlIntf = None

    setLogLevel("error")  # no per-node progress output, and no bridge-nf warnings
    # What Mininet.init() -> fixLimits() does to this process (rlimits are
    # per process: harmless, and 1000 hosts need the descriptors) ...
    rlimitTestAndSet(RLIMIT_NPROC, 8192)
    rlimitTestAndSet(RLIMIT_NOFILE, 16384)
    # ... but not its writes to the host's sysctls.
    Mininet.inited = True
    return Mininet, NamespacedBridge


def _star(n: int) -> tuple[Any, list[Any]]:
    Mininet, Bridge = _classes()
    net = Mininet(topo=None, switch=Bridge, controller=None, build=False)
    switch = net.addSwitch("pms1")
    hosts = [net.addHost(f"pmh{i + 1}") for i in range(n)]
    for host in hosts:
        net.addLink(host, switch)
    return net, hosts


def _kill_leftovers() -> int:
    """SIGKILL any child shell that outlived net.stop() (ours: our descendants)."""
    left = descendants(os.getpid())
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(left)


def run_row(row: str) -> Record:
    sysctls = read_sysctls()
    clock = Clock()
    record: Record = {"tool": TOOL, "row": row, "load1": load1()}
    started = time.perf_counter()
    import mininet.net  # (timed apart from the row)

    record["import_s"] = round(time.perf_counter() - started, 6)
    record["version"] = mininet.net.VERSION
    n = {"pair": 2, "pair-warm": 2, "star200": 200, "star1000": 1000, "pingall30": 30}[row]
    net = None
    try:
        with clock("build"):
            net, hosts = _star(n)
            net.start()
        if row in ("pair", "pair-warm"):
            with clock("ping"):
                loss = net.ping(hosts[:2])  # pmh1 -> pmh2 and pmh2 -> pmh1, `ping -c1`
            record["ok"] = loss == 0
        elif row == "pingall30":
            with clock("pingall"):
                loss = net.pingAll()
            record["ok"] = loss == 0
            record["pings"] = n * (n - 1)
            record["replies"] = round(n * (n - 1) * (100 - loss) / 100)
        else:
            record["ok"] = True
        record.update(resources())  # while everything is up
    finally:
        if net is not None:
            with clock("stop"):
                net.stop()
        record["leftover_helpers"] = _kill_leftovers()
        record["sysctls_restored"] = restore_sysctls(sysctls)
    record.update(clock.fields())
    record["seconds"] = round(sum(clock.phases.values()), 6)
    record["peak_rss_kb"] = peak_rss_kb()
    return record


def count_commands(fn: Callable[[], Record]) -> Callable[[], Record]:
    """Wrap `fn` so that every shell command Mininet runs is counted and timed."""
    from mininet.node import Node

    counter = CommandCounter()
    original_cmd, original_shell = Node.cmd, Node.startShell

    def cmd(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_cmd(self, *args, **kwargs)
        finally:
            text = " ".join(" ".join(map(str, a)) if isinstance(a, list) else str(a) for a in args)
            counter.add(text, time.perf_counter() - started)

    def start_shell(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original_shell(self, *args, **kwargs)
        finally:
            # includes its own `stty -echo` cmd, also counted above
            counter.add("", time.perf_counter() - started, label="startShell (mnexec bash)")

    def wrapped() -> Record:
        Node.cmd, Node.startShell = cmd, start_shell
        try:
            record = fn()
        finally:
            Node.cmd, Node.startShell = original_cmd, original_shell
        record["commands"] = counter.summary()
        return record

    return wrapped


def main() -> int:
    default_signals()
    args = parser(__doc__.split("\n")[0], ROWS, DEFAULT_ROWS).parse_args()
    if args.row is None:
        return run_children(lambda row: [sys.executable, __file__, "--row", row], args.rows)
    why = unavailable()
    if why:
        emit(skipped(TOOL, args.row, why))
        return 0
    return run_rows(TOOL, args.row, args.profile, run_row, count_commands)


if __name__ == "__main__":
    sys.exit(main())
