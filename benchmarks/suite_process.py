"""Costs paid by the pytest process: start-up time with the plugin, and peak memory.

Both are measured on fresh `python -m pytest` subprocesses, because that is
what a user pays: the plugin loads through its pytest11 entry point, and
heavy imports (docker, scapy, pyroute2) must wait until a fixture needs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

from .context import Context
from .harness import Sample, absolute, fmt_s

PYTHON = sys.executable

RSS_TEST = textwrap.dedent('''
    from pytest_netns.probes.api import ping
    from pytest_netns.probes.matrix import reachability_matrix


    def test_pair_talks(bridged_pair):
        assert ping(bridged_pair.a, bridged_pair.b_ip).ok
        assert ping(bridged_pair.b, bridged_pair.a_ip).ok
        matrix = reachability_matrix([bridged_pair.a, bridged_pair.b])
        assert matrix.reachable(bridged_pair.a, bridged_pair.b)
''')


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pytest(args: list[str], cwd: str, env_extra: dict[str, str] | None = None,
            ) -> tuple[float, int, str, float]:
    """Run pytest in a subprocess: (seconds, exit code, output, CPU seconds)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env_extra or {}))
    started = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-m", "pytest", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return took, proc.returncode, out.decode(errors="replace"), usage.ru_utime + usage.ru_stime


def import_overhead(ctx: Context) -> None:
    """`pytest --co -q` in an empty directory, with the plugin and with `-p no:netns`.

    Runs come in pairs, in alternating order (with/without, then without/with),
    and the figure is the median of the per-pair differences, which cancels
    most of the drift a shared machine adds. CPU time (user + system of the
    child) is reported too: the plugin's cost is imports, i.e. CPU, and CPU
    time barely moves with the machine's load.
    """
    group = "start-up"
    runs = max(ctx.rounds, 10) * 2
    wall, cpu, with_plugin, without = Sample(), Sample(), Sample(), Sample()
    with tempfile.TemporaryDirectory(prefix=f"{ctx.tag}-") as empty:
        base = ["--co", "-q", "-p", "no:cacheprovider"]
        for i in range(runs + 2):  # the first two pairs warm the page cache
            order = [base, [*base, "-p", "no:netns"]]
            if i % 2:
                order.reverse()
            got = {}
            for args in order:
                took, code, out, used = _pytest(args, empty)
                # exit code 5: no tests collected, as expected in an empty directory
                if code not in (0, 5):
                    raise RuntimeError(f"pytest --co failed: {out[-500:]}")
                got["without" if "no:netns" in args else "with"] = (took, used)
            if i >= 2:
                wall.times.append(got["with"][0] - got["without"][0])
                cpu.times.append(got["with"][1] - got["without"][1])
                with_plugin.times.append(got["with"][0])
                without.times.append(got["without"][0])
    ctx.add(absolute(group, f"time the plugin adds to `pytest --co -q` (median of {runs} "
                     "paired differences)", wall.median, 0.150,
                     note=f"CPU time added {fmt_s(cpu.median)}; whole run "
                     f"{fmt_s(with_plugin.median)} with, {fmt_s(without.median)} without"))
    ctx.notes.append(_importtime(ctx))


def _import_rows() -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the pytest_netns modules, pytest loaded first."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "import pytest; import pytest_netns.plugin"],
        capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2].strip()
        if name.startswith("pytest_netns"):
            rows.append((int(parts[1]), name))
    return rows


def _importtime(ctx: Context) -> str:
    """The plugin's import cost (a row), and which modules it is spent in (a note)."""
    runs = [_import_rows() for _ in range(7)]
    plugin = Sample([next(us for us, name in rows if name == "pytest_netns.plugin") / 1e6
                     for rows in runs])
    ctx.add(absolute("start-up", "`import pytest_netns.plugin` with pytest already loaded "
                     "(-X importtime, median of 7)", plugin.median, None))
    runs.sort(key=lambda rows: next(us for us, name in rows if name == "pytest_netns.plugin"))
    top = sorted(runs[len(runs) // 2], key=lambda r: -r[0])[:8]  # the median run's modules
    lines = ["`python -X importtime -c \"import pytest; import pytest_netns.plugin\"`, the "
             "pytest_netns modules (microseconds, cumulative: each includes what it imports):",
             "", "| module | cumulative us |", "|---|---|"]
    lines += [f"| `{name}` | {cum} |" for cum, name in top]
    return "\n".join(lines)


def peak_rss(ctx: Context) -> None:
    """Peak RSS of a pytest process running one bridged_pair test that sends probes."""
    group = "memory"
    with tempfile.TemporaryDirectory(prefix=f"{ctx.tag}-") as tmp:
        with open(os.path.join(tmp, "test_rss.py"), "w") as f:
            f.write(RSS_TEST)
        peaks = []
        hwm = os.path.join(tmp, "hwm")
        for _ in range(max(ctx.slow_rounds // 4, 2)):
            _, code, out, _ = _pytest(
                ["-q", "-p", "no:cacheprovider", "-p", "benchmarks.hwm_plugin", "test_rss.py"],
                tmp, {"PYTEST_NETNS_BENCH_HWM": hwm, "PYTHONPATH": REPO})
            if code != 0:
                raise RuntimeError(f"the RSS test run failed:\n{out[-2000:]}")
            with open(hwm) as f:
                peaks.append(int(f.read()))
    backend = "docker" if ctx.docker is not None else "namespace"
    peak_mb = max(peaks) / 1024
    ctx.add(absolute(group, f"peak RSS, pytest + one bridged_pair test with probes "
                     f"({backend})", peak_mb, 100, unit="MB",
                     note="VmHWM of the pytest process, read by the process itself at "
                     "pytest_unconfigure"))
    ctx.notes.append(_rss_breakdown())


def _rss_breakdown() -> str:
    """Peak RSS of a bare interpreter after importing each layer, for the reasons section."""
    steps = [
        ("python + pytest", "import pytest"),
        ("+ pytest_netns.plugin", "import pytest, pytest_netns.plugin"),
        ("+ docker SDK (Docker backend)", "import pytest, pytest_netns.plugin, docker"),
        ("+ probes (the first probe imports scapy's inet layers)",
         "import pytest, pytest_netns.plugin, docker, pytest_netns.probes, scapy.layers.inet"),
        ("+ pyroute2 (only if something lists links or routes)",
         "import pytest, pytest_netns.plugin, docker, pytest_netns.probes, scapy.layers.inet, "
         "pyroute2"),
    ]
    lines = ["Peak RSS (VmHWM) of a fresh interpreter after each import, in MB:", "",
             "| imports | peak RSS |", "|---|---|"]
    for label, code in steps:
        script = (f"{code}\nfrom benchmarks.hwm_plugin import vm_hwm_kib\n"
                  "print(vm_hwm_kib())")
        done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True,
                              cwd=REPO)
        value = f"{int(done.stdout.split()[-1]) / 1024:.0f}" if done.returncode == 0 else "n/a"
        lines.append(f"| {label} | {value} |")
    return "\n".join(lines)
