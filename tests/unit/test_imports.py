"""Importing pytest-netns costs nothing it does not need (no root needed).

pytest imports the plugin in every run where it is installed, most of which
build no topology: the import must load no heavy dependency, start no
thread, open no file and load no C library.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import json, os, sys, threading
fds = set(os.listdir("/proc/self/fd"))
before = set(sys.modules)
{statement}
print(json.dumps({{
    "modules": sorted(set(sys.modules) - before),
    "threads": threading.active_count(),
    "new_fds": len(set(os.listdir("/proc/self/fd")) - fds),
}}))
"""


def loaded(statement: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(statement=statement)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_importing_the_package_loads_nothing_else() -> None:
    got = loaded("import pytest_netns")
    ours = [m for m in got["modules"] if m.startswith("pytest_netns")]  # type: ignore[attr-defined]
    assert ours == ["pytest_netns"]
    assert got["threads"] == 1 and got["new_fds"] == 0


def test_loading_the_plugin_loads_only_its_wiring() -> None:
    got = loaded("import pytest\nbefore = set(sys.modules)\nimport pytest_netns.plugin")
    assert got["modules"] == ["pytest_netns", "pytest_netns.choices", "pytest_netns.plugin"]


@pytest.mark.parametrize("heavy", ["scapy", "docker", "pyroute2", "yaml"])
def test_no_module_of_the_package_imports_a_heavy_dependency_when_loaded(heavy: str) -> None:
    """Every module may be imported for its names; the heavy libraries load only when used."""
    got = loaded("import pkgutil, importlib, pytest_netns\n"
                 "for m in pkgutil.walk_packages(pytest_netns.__path__, 'pytest_netns.'):\n"
                 "    if m.name != 'pytest_netns.plugin':\n"
                 "        importlib.import_module(m.name)")
    assert not [m for m in got["modules"] if m == heavy or m.startswith(heavy + ".")]  # type: ignore[attr-defined]
    assert got["threads"] == 1 and got["new_fds"] == 0


def test_public_names_resolve_lazily() -> None:
    import pytest_netns

    for name in pytest_netns.__all__:
        assert getattr(pytest_netns, name) is not None
    assert pytest_netns.__version__
    with pytest.raises(AttributeError, match="no_such_name"):
        pytest_netns.no_such_name  # noqa: B018
