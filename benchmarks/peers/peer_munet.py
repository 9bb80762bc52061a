"""munet rows for the side-by-side benchmark (run with the munet venv's python).

Rows:

  pair      munet_pair.yaml (2 nodes on one network): up, ping both ways, down
  star200   200 nodes on one network: up, down (about 80 s on 2 cores)
  star1000  1000 nodes: opt-in only (munet numbers nodes into one /24 by
            default, and at ~0.4 s a node it would take several minutes)

How munet is run, and why:

* In a PID namespace of its own: munet enters its nodes' namespaces with
  `nsenter`, and here it cannot open PID 1's (`/proc/1/ns/*` is EACCES in this
  sandbox). The script re-executes itself under
  `unshare --pid --fork --mount-proc`, the way munet's own CLI is meant to be
  started; that start-up is outside the timings. It also keeps munet's mounts
  (it bind-mounts /etc/hosts, remounts /sys and /proc per node) away from the
  host, and when the script exits the kernel kills whatever munet left.
* Through munet's Python API (`parser.async_build_topology`, `async_delete`),
  which its pytest fixtures use, not through the `munet` CLI, so that up, ping
  and down can be timed apart; logging is set up as the CLI sets it (see
  `_logging` for why, and `--quiet` for the other way).
* The run directory is a fresh /tmp/pm-munet-* removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import (
    HERE,
    Clock,
    CommandCounter,
    Record,
    default_signals,
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

TOOL = "munet"
ROWS = ("pair", "star200", "star1000")
DEFAULT_ROWS = ("pair", "star200")
UNSHARED = "PM_MUNET_IN_PIDNS"  # set for the re-executed child


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "munet needs root"
    if importlib.util.find_spec("munet") is None:
        return (f"munet is not importable by {sys.executable}: run setup_peers.sh and use "
                "its venv's python (.venv-munet/bin/python)")
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "util-linux unshare/nsenter not found"
    if shutil.which("ping") is None:
        return "ping not found: run setup_peers.sh (iputils-ping)"
    return None


def _config(row: str, rundir: Path) -> Path:
    """The lab file for `row`: the checked-in pair lab, or a generated star."""
    if row in ("pair", "pair-warm"):
        return HERE / "munet_pair.yaml"
    n = {"star200": 200, "star1000": 1000}[row]
    prefix = 24 if n < 254 else 22
    lines = ["version: 1", "topology:", "  networks-autonumber: true", "  networks:",
             "    - name: pmnet0", f"      ip: 10.203.0.0/{prefix}", "  nodes:"]
    for i in range(1, n + 1):
        lines += [f"    - name: pmn{i}", "      connections:", "        - to: pmnet0"]
    path = rundir / "munet.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _row(row: str, config: dict[str, Any], rundir: Path, record: Record) -> Clock:
    from munet import parser as munet_parser

    clock = Clock()
    unet = None
    try:
        with clock("build"):  # "up": namespaces, bridge, links, addresses
            unet = await munet_parser.async_build_topology(config, rundir=str(rundir / "run"))
        names = list(unet.hosts)
        if row in ("pair", "pair-warm"):
            a, b = unet.hosts[names[0]], unet.hosts[names[1]]
            a_ip, b_ip = a.get_intf_addr("eth0").ip, b.get_intf_addr("eth0").ip
            with clock("ping"):
                # munet's idiom: a command in the node (nsenter + bash + ping)
                await a.async_cmd_raises(f"ping -c1 {b_ip}")
                await b.async_cmd_raises(f"ping -c1 {a_ip}")
        record["ok"] = True
        record.update(resources())
    finally:
        if unet is not None:
            with clock("stop"):  # "down"
                await unet.async_delete()
    return clock


def _proc_mounts() -> set[Path]:
    """munet mounts a procfs for its PID namespace on /tmp/mu-XXXX-proc (inside
    our private mount namespace) and leaves the empty directory behind."""
    return set(Path(tempfile.gettempdir()).glob("mu-*-proc"))


def _logging(rundir: Path, quiet: bool) -> None:
    """Log as munet's own CLI does (its logconf.yaml: DEBUG to munet-exec.log
    in the run directory, INFO to stderr), or, with `quiet`, only WARNING.

    The CLI's way is the default because it is how munet is used, and because
    munet has a start-up race that quiet logging loses often: after starting
    a node's `nsenter` it runs `pgrep -o -P PID` once, with no retry, for the
    child that nsenter forks (base.py, LinuxNamespace.__init__); when the
    child is not there yet the whole build fails. Node loggers are set to
    DEBUG by munet either way, and without a root handler the first
    module-level `logging.debug()` would print every record to stderr.
    """
    import logging
    from types import SimpleNamespace

    from munet import parser as munet_parser

    if quiet:
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(handler)
    else:
        munet_parser.setup_logging(SimpleNamespace(rundir=str(rundir), verbose=False,
                                                   log_config=None))


def _patch_pgrep_race() -> list[int]:
    """Retry munet's one-shot `pgrep -o -P PID` (see `_logging`) as munet itself
    does elsewhere (native.py, get_proc_child_pid: up to 4 s).

    Without this, most 200-node builds on this 2-core machine failed part-way
    (the chance per node is small, but there are 200 of them). The shim costs
    nothing when the child is already there; it returns a one-item list that
    counts the retries, reported as "pgrep_retries".
    """
    from munet.base import CalledProcessError, Commander

    if hasattr(Commander.cmd_raises, "retries"):  # patched already (the warm pass)
        return Commander.cmd_raises.retries  # type: ignore[no-any-return]
    retries = [0]
    original = Commander.cmd_raises

    def cmd_raises(self: Any, cmd: Any, **kwargs: Any) -> Any:
        is_pgrep = (isinstance(cmd, list) and str(cmd[0]).endswith("pgrep") and "-P" in cmd)
        deadline = time.monotonic() + 4.0
        while True:
            try:
                return original(self, cmd, **kwargs)
            except CalledProcessError:
                if not is_pgrep or time.monotonic() > deadline:
                    raise
                retries[0] += 1
                time.sleep(0.005)

    cmd_raises.retries = retries  # type: ignore[attr-defined]
    Commander.cmd_raises = cmd_raises
    return retries


def run_row(row: str, quiet: bool = False) -> Record:
    sysctls = read_sysctls()
    proc_dirs = _proc_mounts()
    record: Record = {"tool": TOOL, "row": row, "load1": load1()}
    started = time.perf_counter()
    from munet import parser as munet_parser

    record["import_s"] = round(time.perf_counter() - started, 6)
    import importlib.metadata

    record["version"] = importlib.metadata.version("munet")
    rundir = Path(tempfile.mkdtemp(prefix="pm-munet-"))
    record["logging"] = "quiet" if quiet else "munet-cli"
    retries = _patch_pgrep_race()
    try:
        _logging(rundir, quiet)
        path = _config(row, rundir)
        started = time.perf_counter()
        config = munet_parser.get_config(str(path))
        record["config_s"] = round(time.perf_counter() - started, 6)
        loop = asyncio.new_event_loop()
        try:
            clock = loop.run_until_complete(_row(row, config, rundir, record))
        finally:
            loop.close()
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
        record["pgrep_retries"] = retries[0]
        for leftover in _proc_mounts() - proc_dirs:
            with contextlib.suppress(OSError):
                leftover.rmdir()  # empty once the procfs is gone with our namespace
        record["sysctls_restored"] = restore_sysctls(sysctls)
    record.update(clock.fields())
    record["seconds"] = round(sum(clock.phases.values()), 6)
    record["peak_rss_kb"] = peak_rss_kb()
    return record


def count_commands(fn: Callable[[], Record]) -> Callable[[], Record]:
    """Wrap `fn` so that munet's commands are counted and timed, and every
    process it spawns is counted (munet runs most steps as subprocesses)."""
    from munet.base import Commander

    counter = CommandCounter()
    spawned = [0]
    sync_status, async_status = Commander._cmd_status, Commander._async_cmd_status
    popen_init = subprocess.Popen.__init__

    def text(cmds: Any) -> str:
        words = cmds if isinstance(cmds, list) else str(cmds).split()
        return " ".join(os.path.basename(str(w)) if i == 0 else str(w)
                        for i, w in enumerate(words))

    def sync(self: Any, cmds: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return sync_status(self, cmds, *args, **kwargs)
        finally:
            counter.add(text(cmds), time.perf_counter() - started)

    async def asyn(self: Any, cmds: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await async_status(self, cmds, *args, **kwargs)
        finally:
            counter.add(text(cmds), time.perf_counter() - started)

    def popen(self: Any, *args: Any, **kwargs: Any) -> None:
        spawned[0] += 1
        popen_init(self, *args, **kwargs)

    def wrapped() -> Record:
        Commander._cmd_status, Commander._async_cmd_status = sync, asyn
        subprocess.Popen.__init__ = popen  # type: ignore[method-assign]
        try:
            record = fn()
        finally:
            Commander._cmd_status, Commander._async_cmd_status = sync_status, async_status
            subprocess.Popen.__init__ = popen_init  # type: ignore[method-assign]
        record["commands"] = counter.summary()
        record["processes_spawned"] = spawned[0]
        return record

    return wrapped


def main() -> int:
    default_signals()
    ap = parser(__doc__.split("\n")[0], ROWS, DEFAULT_ROWS)
    ap.add_argument("--quiet", action="store_true",
                    help="log WARNING only, instead of munet's CLI logging (see _logging)")
    args = ap.parse_args()
    if args.row is None:
        extra = ["--quiet"] if args.quiet else []
        return run_children(lambda row: [sys.executable, __file__, "--row", row, *extra],
                            args.rows)
    why = unavailable()
    if why:
        emit(skipped(TOOL, args.row, why))
        return 0
    if os.environ.get(UNSHARED) != "1":
        # fresh PID (and mount) namespace; the child prints the JSON line
        env = dict(os.environ, **{UNSHARED: "1"})
        argv = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, __file__,
                *sys.argv[1:]]
        return subprocess.run(argv, env=env).returncode
    return run_rows(TOOL, args.row, args.profile,
                    lambda row: run_row(row, args.quiet), count_commands)


if __name__ == "__main__":
    sys.exit(main())
