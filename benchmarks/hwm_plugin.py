"""A pytest plugin for the memory benchmark: record the process's peak RSS at exit.

`ru_maxrss` of a child is useless here: Linux folds the parent's peak into
it at fork and exec, so a pytest started by the benchmark process would
report at least the benchmark's own size. VmHWM belongs to the child's own
address space, so the child reads it itself, as late as pytest allows.
"""

from __future__ import annotations

import os

import pytest


def vm_hwm_kib() -> int:
    """This process's peak resident set (VmHWM), in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.get("PYTEST_NETNS_BENCH_HWM")
    if path:
        with open(path, "w") as f:
            f.write(str(vm_hwm_kib()))
