"""Run pytest-netns and its peers (Mininet, munet) side by side; print a table.

Every run is a fresh process (so no tool profits from a warm cache or pays
for the previous run's threads), the tools take turns in an order that
rotates each round (so a slow spell on this shared machine does not land on
one tool), and between runs the script waits until the kernel has finished
reaping the namespaces of the previous run (every tool leaves that work
behind, and it would slow whoever runs next). The table gives medians with
min-max spread, and each peer's median over pytest-netns's (">1" means
pytest-netns is faster).

    python3 run_all.py                 # 5 rounds of pair and star200, 3 of star1000
    python3 run_all.py --quick         # 2 rounds, no star1000
    python3 run_all.py --pingall       # add pingall30 (every ordered pair pings)
    python3 run_all.py --profile DIR   # one profiled run of each (tool, row) instead

Interpreters: Mininet runs under Debian's python3 (where apt installs it),
munet under its venv (setup_peers.sh), pytest-netns under the project's venv;
override with --mininet-python / --munet-python / --ours-python or the
environment variables of the same names (PEER_MININET_PYTHON, ...). A tool
that cannot run prints a "skipped" line with the reason, and its cells say so.

Why all-pairs ping is measured at 30 nodes, not 200: the kernel's ARP table is
one table for all namespaces, limited by net.ipv4.neigh.default.gc_thresh3
(1024 here); 200 nodes pinging each other need 39,800 entries, so most pings
fail ("neighbor table overflow" in dmesg) and, while the table is full, every
other user of the machine fails to resolve neighbours too. Mininet's
fixLimits() raises the limit to 16384 on the host, which these benchmarks must
not do. 30 x 29 = 870 entries fit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_common import HERE, Record, default_signals, load1, read_sysctls, settle

OURS = "pytest-netns"
ROW_TITLES = {
    "pair": "2 nodes + 1 switch: build, ping both ways, stop (fresh process)",
    "pair-warm": "the same again in the same process (what each further test pays)",
    "star200": "200 nodes on one switch: build, stop",
    "star1000": "1000 nodes on one switch: build, stop",
    "pingall30": "30 nodes: build, all 870 ordered pings, stop",
}
PHASES = ("build", "ping", "pingall", "stop")


@dataclass
class Tool:
    name: str
    python: str
    script: Path
    rows: tuple[str, ...]  # what this tool runs by default


def _find_ours_python() -> str:
    """The project's venv: next to a pytest_netns/ package above this file or cwd."""
    for start in (HERE, Path.cwd()):
        for d in (start, *start.parents):
            candidate = d / ".venv" / "bin" / "python"
            if (d / "pytest_netns").is_dir() and candidate.exists():
                return str(candidate)
    return sys.executable


def tools(args: argparse.Namespace) -> list[Tool]:
    munet_rows = ("pair", "star200", "star1000") if args.munet_1000 else ("pair", "star200")
    return [
        Tool(OURS, args.ours_python, HERE / "ours.py",
             ("pair", "star200", "star1000", "pingall30")),
        Tool("mininet", args.mininet_python, HERE / "peer_mininet.py",
             ("pair", "star200", "star1000", "pingall30")),
        Tool("munet", args.munet_python, HERE / "peer_munet.py", munet_rows),
    ]


def run_one(tool: Tool, row: str, log: Path, profile: str | None = None,
            timeout: float = 3600) -> list[Record]:
    """One fresh process of `tool` for `row`; its result lines (the pair row
    also yields "pair-warm", its second pass in the same process)."""
    argv = [tool.python, str(tool.script), "--row", row]
    if profile:
        argv += ["--profile", profile]
    if not Path(tool.python).exists():
        return [{"tool": tool.name, "row": row, "skipped": f"no interpreter {tool.python}"}]
    with log.open("a", encoding="utf-8") as err:
        err.write(f"\n### {time.strftime('%H:%M:%S')} {' '.join(argv)}\n")
        err.flush()
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return [{"tool": tool.name, "row": row, "error": f"timed out after {timeout:.0f} s"}]
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return found or [{"tool": tool.name, "row": row,
                      "error": f"exit {done.returncode}, no result line (see {log})"}]


# --- the host must end as it began -----------------------------------------------


def host_state() -> dict[str, Any]:
    """What a run must not change: root-namespace links named like ours, the
    guarded sysctls, and the qdiscs of the host's own devices."""
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    links = sorted(line.split(":")[1].strip().split("@")[0]
                   for line in out("ip", "-o", "link", "show").splitlines() if ":" in line)
    return {
        "pm_links": [name for name in links if name.startswith("pm")],
        "sysctls": read_sysctls(),
        # only the host's own devices: other users of the machine add links
        "qdiscs": [line for line in out("tc", "qdisc", "show").splitlines()
                   if any(f" dev {d} " in line for d in ("lo", "eth0", "docker0"))],
    }


# --- the table ---------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(records: list[Record], rows: list[str]) -> str:
    lines = ["| row | tool | n | median | min-max | build | ping | stop | with import "
             "| vs pytest-netns | same-round ratios |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by: dict[tuple[str, str], list[Record]] = {}
    for rec in records:
        by.setdefault((rec["row"], rec["tool"]), []).append(rec)
    for row in rows:
        ours = [r["seconds"] for r in by.get((row, OURS), []) if "seconds" in r]
        ours_median = _median(ours)
        for tool in (OURS, "mininet", "munet"):
            recs = by.get((row, tool), [])
            if not recs:
                continue
            good = [r for r in recs if "seconds" in r]
            errors = sum(1 for r in recs if "error" in r)
            if not good:
                why = recs[0].get("skipped") or recs[0].get("error", "?")
                lines.append(f"| {row} | {tool} | 0 | skipped: {why} | | | | | | | |")
                continue
            secs = [r["seconds"] for r in good]
            phase = {p: _median([r[f"{p}_s"] for r in good if f"{p}_s" in r]) for p in PHASES}
            ping = phase["ping"] if phase["ping"] is not None else phase["pingall"]
            med = _median(secs)
            cold = _median([r["seconds"] + r.get("import_s", 0.0) for r in good])
            ratio = ("1" if tool == OURS else
                     f"{med / ours_median:.1f}x" if med and ours_median else "-")
            failed = sum(1 for r in good if not r.get("ok", True))
            note = (f" ({failed} not ok)" if failed else "") + (
                f" (+{errors} failed)" if errors else "")
            lines.append(
                f"| {row} | {tool} | {len(good)}{note} | {_fmt(med)} | "
                f"{_fmt(min(secs))}-{_fmt(max(secs))} | {_fmt(phase['build'])} | "
                f"{_fmt(ping)} | {_fmt(phase['stop'])} | {_fmt(cold)} | {ratio} | "
                f"{_paired(good, by.get((row, OURS), [])) if tool != OURS else ''} |")
    lines.append("")
    lines += [f"- {row}: {ROW_TITLES.get(row, row)}" for row in rows]
    return "\n".join(lines)


def _paired(peer: list[Record], ours: list[Record]) -> str:
    """Median and range of peer/ours over runs of the same round: runs of one
    round are minutes apart at most, so a busy spell on the machine moves both
    sides of each ratio, which the ratio of the overall medians does not see."""
    mine = {r["round"]: r["seconds"] for r in ours if "seconds" in r and "round" in r}
    ratios = sorted(r["seconds"] / mine[r["round"]] for r in peer
                    if "seconds" in r and r.get("round") in mine and mine[r["round"]] > 0)
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.1f}x ({ratios[0]:.1f}-{ratios[-1]:.1f})"


def resource_table(records: list[Record]) -> str:
    keys = ("threads", "fds", "rss_kb", "peak_rss_kb", "helpers", "helpers_pss_kb", "reap_s")
    lines = ["| row | tool | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 2)]
    seen: dict[tuple[str, str], list[Record]] = {}
    for rec in records:
        if "seconds" in rec:
            seen.setdefault((rec["row"], rec["tool"]), []).append(rec)
    for (row, tool), recs in sorted(seen.items()):
        cells = []
        for key in keys:
            med = _median([r[key] for r in recs if key in r])
            cells.append("-" if med is None else f"{med:.1f}" if key == "reap_s" else f"{med:.0f}")
        lines.append(f"| {row} | {tool} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------


def main() -> int:
    default_signals()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of pair and star200")
    ap.add_argument("--big-rounds", type=int, default=3, help="rounds of star1000")
    ap.add_argument("--quick", action="store_true", help="2 rounds, and no star1000")
    ap.add_argument("--rows", help="comma-separated rows (default pair,star200,star1000)")
    ap.add_argument("--tools", default="pytest-netns,mininet,munet")
    ap.add_argument("--retries", type=int, default=2,
                    help="run a failed run again, at most this often (failures are counted)")
    ap.add_argument("--pingall", action="store_true", help="add pingall30 (30 nodes, all pairs)")
    ap.add_argument("--munet-1000", action="store_true", help="also run munet's star1000")
    ap.add_argument("--profile", metavar="DIR",
                    help="profile one run of each (tool, row) into DIR instead of timing rounds")
    ap.add_argument("--report", type=Path, metavar="JSONL",
                    help="print the tables of an earlier run's results file and exit")
    ap.add_argument("--out", type=Path, help="JSON lines of every run (default results/...)")
    ap.add_argument("--ours-python", default=os.environ.get("OURS_PYTHON") or _find_ours_python())
    ap.add_argument("--mininet-python", default=os.environ.get("PEER_MININET_PYTHON",
                                                               "/usr/bin/python3"))
    ap.add_argument("--munet-python", default=os.environ.get(
        "PEER_MUNET_PYTHON", str(HERE / ".venv-munet" / "bin" / "python")))
    args = ap.parse_args()

    if args.report:
        saved = [json.loads(line) for line in args.report.read_text().splitlines() if line]
        order = ["pair", "pair-warm", "star200", "star1000", "pingall30"]
        present = [r for r in order if any(rec["row"] == r for rec in saved)]
        print(table(saved, present))
        print()
        print(resource_table(saved))
        loads = [r["load1"] for r in saved if "load1" in r]
        if loads:
            print(f"\nload average (1 min) at the runs' starts: median "
                  f"{statistics.median(loads):.2f}, {min(loads):.2f}-{max(loads):.2f}")
        return 0
    rows = args.rows.split(",") if args.rows else (
        ["pair", "star200"] if args.quick else ["pair", "star200", "star1000"])
    if args.pingall and "pingall30" not in rows:
        rows.append("pingall30")
    rounds = 2 if args.quick else args.rounds
    wanted = set(args.tools.split(","))
    chosen = [t for t in tools(args) if t.name in wanted]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or HERE / "results" / f"run-{stamp}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".stderr.log")
    before = host_state()
    print(f"# {len(chosen)} tools, rows {rows}, load {load1():.2f}, "
          f"results -> {out}", flush=True)

    records: list[Record] = []
    plan: list[tuple[int, str, Tool]] = []
    for row in rows:
        n = args.big_rounds if row == "star1000" else rounds
        if args.profile:
            n = 1
        for r in range(n):
            turn = [t for t in chosen if row in t.rows]
            shift = r % len(turn) if turn else 0
            plan += [(r, row, t) for t in turn[shift:] + turn[:shift]]
    plan.sort(key=lambda item: item[0])  # round-major: every row once, then again
    for r, row, tool in plan:
        for attempt in range(1 + args.retries):
            settle()
            found = run_one(tool, row, log, args.profile)
            reap = round(settle(), 3)  # how long the kernel kept reaping after the run
            for rec in found:
                rec.update(round=r, attempt=attempt, reap_s=reap)
                records.append(rec)
                with out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
                shown = _fmt(rec.get("seconds")) if "seconds" in rec else (
                    rec.get("skipped") or rec.get("error"))
                print(f"  round {r} {rec['row']:16} {tool.name:13} {shown}", flush=True)
            if not any("error" in rec for rec in found):
                break

    after = host_state()
    if "pair" in rows:
        rows.insert(rows.index("pair") + 1, "pair-warm")
    print()
    print(table(records, rows))
    print()
    print(resource_table(records))
    if args.profile:
        for rec in records:
            if rec.get("commands"):
                print(f"\n{rec['tool']} {rec['row']}: profile {rec.get('profile')}; "
                      f"commands by total time (spawned {rec.get('processes_spawned', '-')}):")
                for c in rec["commands"]:
                    print(f"  {c['s']:8.3f} s  {c['n']:6d}x  {c['cmd']}")
    loads = [r["load1"] for r in records if "load1" in r]
    if loads:
        print(f"\nload average (1 min) at the runs' starts: median {statistics.median(loads):.2f},"
              f" {min(loads):.2f}-{max(loads):.2f}")
    changed = [k for k in before if before[k] != after[k]]
    if changed:
        print(f"WARNING: host state changed: {changed}")
        for k in changed:
            print(f"  before {k}: {before[k]}\n  after  {k}: {after[k]}")
        return 1
    print("host state (pm* links, guarded sysctls, qdiscs): unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
