"""The package's shape: one-way dependencies between layers, no cycles, no pytest in the library.

The layers, lowest first, each importing only from itself and those below:

    errors, ownership, choices,  the base every layer may use
    units
    kernel                       namespaces, rtnetlink, sysctls, NAT, the host uplink
    nodes                        containers, bare namespaces, the host
    probes                       packets sent from inside nodes
    topology                     describe, plan, build, close
    labs                         networks declared in files
    report                       failure reports, diagrams, captures
    lifecycle                    session start and end, crash recovery
    plugin, cli, doctor          the front ends

Every import counts, at module level or inside a function; imports under
`if TYPE_CHECKING` count for the layer rule (they are still a dependency)
but not as cycles (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_netns"
LAYERS = [
    {"errors", "ownership", "choices", "units"},
    {"kernel"},
    {"nodes"},
    {"probes"},
    {"topology"},
    {"labs"},
    {"report"},
    {"lifecycle"},
    {"plugin", "cli", "doctor"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def modules() -> dict[str, Path]:
    """Dotted module name (without the package) -> file, for every module but the facade."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the public facade names everything, lazily
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module inside the package, whether only for type checking) of one module."""
    tree = ast.parse(path.read_text())
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("pytest_netns"):
                target = node.module.removeprefix("pytest_netns").lstrip(".")
            else:
                continue
            names = [f"{target}.{a.name}" if target else a.name for a in node.names]
            found += [(n, id(node) in typing_only) for n in [target, *names] if n]
        elif isinstance(node, ast.Import):
            found += [(a.name.removeprefix("pytest_netns").lstrip("."), id(node) in typing_only)
                      for a in node.names if a.name.startswith("pytest_netns.")]
    known = modules()
    return [(t, typing) for t, typing in found if t in known and t != name]


def layer(name: str) -> int:
    return RANK[name.split(".")[0]]


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted(n for n in modules() if n.split(".")[0] not in RANK)
    assert not unknown, f"modules in no layer (add them to LAYERS): {unknown}"


def test_no_layer_imports_from_a_layer_above_it() -> None:
    upward = [f"{name} -> {target}" for name, path in modules().items()
              for target, _ in imports(name, path) if layer(target) > layer(name)]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = {name: {t for t, typing in imports(name, path) if not typing}
             for name, path in modules().items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(n for n in modules() if n != "plugin"))
def test_the_library_never_imports_pytest(name: str) -> None:
    tree = ast.parse(modules()[name].read_text())
    used = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
            for a in node.names}
    used |= {node.module.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert not used & {"pytest", "_pytest", "pluggy"}
