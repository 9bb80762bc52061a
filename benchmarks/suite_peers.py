"""pytest-netns side by side with its peers, Mininet and munet (`benchmarks/peers/`).

The rows are measured by `benchmarks/peers/run_all.py`, which runs every
tool's row in a fresh process of its own interpreter (Mininet under
Debian's python3, munet in its venv, pytest-netns in this one), takes
turns in an order that rotates each round, and waits for the kernel to
finish reaping namespaces before each run. The peers are installed by
`benchmarks/peers/setup_peers.sh` (which this suite runs first), never as
dependencies; a peer that is missing skips its rows with the reason. See
`benchmarks/peers/README.md` (the prototype's findings) for what each peer is
made to do and why.

Rows: a 2-node switch, built, pinged both ways and stopped, in a fresh
process (and again as the second topology of that process); 200 and 1000
nodes on one switch, built and stopped. munet is compared on the 2-node
lab only (its 200-node build takes minutes). Mininet's all-pairs `pingAll`
is not run at 200 nodes: its 40,000 neighbour entries overflow the
kernel's neighbour table, which all namespaces of the host share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from .context import Context
from .harness import Row, Sample, compare, fmt_s

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")
TITLES = {
    "pair": "2 hosts + 1 switch: build, ping both ways, stop (fresh process)",
    "pair-warm": "2 hosts + 1 switch: build, ping both ways, stop (second in a process)",
    "star200": "200 hosts on one switch: build, stop",
    "star1000": "1000 hosts on one switch: build, stop",
}
TARGETS = {("mininet", "pair"): 8, ("munet", "pair"): 20, ("mininet", "star200"): 20,
           ("mininet", "star1000"): 40}


def _run_all(rows: str, tools: str, rounds: int, big_rounds: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="pn-peers-") as tmp:
        out = os.path.join(tmp, "runs.jsonl")
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "run_all.py"), "--rows", rows, "--tools", tools,
             "--rounds", str(rounds), "--big-rounds", str(big_rounds), "--out", out,
             "--ours-python", sys.executable],
            capture_output=True, text=True, timeout=3600)
        print("\n".join("    " + line for line in done.stdout.splitlines()
                        if line.startswith("  round")), flush=True)
        if not os.path.exists(out):
            raise RuntimeError(f"run_all.py wrote nothing:\n{done.stdout[-2000:]}"
                               f"{done.stderr[-2000:]}")
        with open(out) as f:
            records = [json.loads(line) for line in f if line.strip()]
        if done.returncode != 0:
            raise RuntimeError(f"run_all.py: the host's state changed:\n{done.stdout[-2000:]}")
        return records


def _set_up_peers() -> None:
    """Install the peers (idempotent; a peer that cannot be installed skips its rows)."""
    done = subprocess.run(["sh", os.path.join(HERE, "setup_peers.sh")], capture_output=True,
                          text=True, timeout=1800)
    print("\n".join("    " + line for line in done.stdout.splitlines()), flush=True)


def peers(ctx: Context) -> None:
    _set_up_peers()
    quick = ctx.rounds < 10
    records = _run_all("pair", "pytest-netns,mininet,munet", 2 if quick else 5, 1)
    if not quick:
        records += _run_all("star200,star1000", "pytest-netns,mininet", 3, 2)
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        by.setdefault((rec["tool"], rec["row"]), []).append(rec)
    for row, title in TITLES.items():
        ours = Sample([r["seconds"] for r in by.get(("pytest-netns", row), []) if "seconds" in r])
        for tool in ("mininet", "munet"):
            recs = by.get((tool, row), [])
            if not recs:
                continue
            theirs = Sample([r["seconds"] for r in recs if "seconds" in r])
            what = f"{title} vs {'Mininet' if tool == 'mininet' else 'munet'}"
            if not theirs.times or not ours.times:
                why = recs[0].get("skipped") or recs[0].get("error") or "no successful run"
                ctx.add(Row("peers", what, "", "", None, "", None, f"skipped: {why}"))
                continue
            failed = sum(1 for r in recs if "error" in r)
            note = f"{len(theirs.times)} runs" + (f", {failed} failed" if failed else "")
            if row == "pair":  # imports are timed apart for every tool: say what they took
                imports = {who: Sample([r["import_s"] for r in group if "import_s" in r])
                           for who, group in (("ours", by.get(("pytest-netns", row), [])),
                                              ("theirs", recs))}
                if all(sample.times for sample in imports.values()):
                    note += (f"; imports, timed apart: ours {fmt_s(imports['ours'].median)}, "
                             f"theirs {fmt_s(imports['theirs'].median)}")
            ctx.add(compare("peers", what, ours, theirs, TARGETS.get((tool, row)), note))
