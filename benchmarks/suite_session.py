"""A whole test session: 30 container tests, each a bridged_pair and two probes.

Each contender is a `python -m pytest` subprocess over the same 30 tests on
the Docker backend, timed from start to exit (collection, the session's
start and end, every setup and teardown included, as a CI job pays it):

- ours: containers started ahead (`--netns-prefetch`, default 2): the next
  test's containers start while this one runs;
- theirs: the same session with `--netns-prefetch=0`, every topology
  starting its own containers when it is built, as before the second wave.

The sessions alternate, so drift on the shared machine hits both alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

from .context import Context
from .harness import compare, interleave, settle_kernel

TESTS = textwrap.dedent('''
    import pytest

    from pytest_netns.probes.api import ping


    @pytest.mark.parametrize("i", range(30))
    def test_pair(bridged_pair, i):
        assert ping(bridged_pair.a, bridged_pair.b_ip).ok
        assert ping(bridged_pair.b, bridged_pair.a_ip).ok
''')


def thirty_tests(ctx: Context) -> None:
    with tempfile.TemporaryDirectory(prefix=f"{ctx.tag}-") as tmp:
        with open(os.path.join(tmp, "test_thirty.py"), "w") as f:
            f.write(TESTS)

        def session(prefetch: int) -> float:
            settle_kernel()
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "--netns-backend=docker", f"--netns-prefetch={prefetch}", "test_thirty.py"],
                cwd=tmp, capture_output=True, text=True, timeout=900,
                env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
            took = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"the 30-test session failed:\n{done.stdout[-3000:]}")
            return took

        rounds = 1 if ctx.slow_rounds < 5 else 3
        samples = interleave(rounds, 0, ahead=lambda: session(2), cold=lambda: session(0))
    ctx.add(compare("session", "30 container tests (bridged_pair + 2 probes each), "
                    "containers started ahead vs each test starting its own",
                    samples["ahead"], samples["cold"], 1.5))
