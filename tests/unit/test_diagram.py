"""The diagram writers: one picture, two languages, checked by Graphviz itself (no root).

The picture (`Diagram`) is plain data, so the writers are tested on it
directly; where Graphviz is installed, its own parser must accept the DOT.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pytest_netns.report.diagram import Box, Diagram, Edge, render_dot, render_mermaid


def picture() -> Diagram:
    return Diagram(
        clusters=['bridged_pair (up) "quoted"'],
        boxes=[Box("t0:a", ("a (node, netns)", "eth1 10.64.0.2/24"), "node", 0),
               Box("t0:r", ("r (router, netns)",), "router", 0),
               Box("t0:switch", ("switch", "switch", "10.64.0.0/24"), "switch", 0),
               Box("t0:stub0", ("stub0: guest-only ifb", "eth1 172.16.0.10/24"), "stub"),
               Box("host", ("host (root netns)", "pn1h 10.64.1.1/30"), "host"),
               Box("other:8.8.8.8", ("8.8.8.8 (not in a topology)",), "other")],
        edges=[Edge("t0:a", "t0:switch", "eth1", "link"),
               Edge("t0:a", "t0:stub0", "", "stub"),
               Edge("t0:a", "host", "icmp reply ok", "ok"),
               Edge("t0:a", "other:8.8.8.8", "tcp/80 filtered FAIL", "fail")],
    )


def test_dot_has_every_box_and_edge() -> None:
    dot = render_dot(picture())
    assert dot.startswith("digraph network {") and dot.rstrip().endswith("}")
    assert 'subgraph cluster_0' in dot and 'label="bridged_pair (up) \\"quoted\\""' in dot
    for ident in ("t0:a", "t0:r", "t0:switch", "t0:stub0", "host", "other:8.8.8.8"):
        assert f'"{ident}" [label=' in dot
    assert 'shape=octagon' in dot and 'shape=ellipse' in dot and 'style=dotted' in dot
    assert dot.count(" color=darkgreen") == 1 and dot.count(" color=red3") == 1


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_parses_the_dot() -> None:
    done = subprocess.run(["dot", "-Tcanon"], input=render_dot(picture()), text=True,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "t0:stub0" in done.stdout


def test_mermaid_has_every_box_and_edge() -> None:
    mmd = render_mermaid(picture())
    lines = mmd.splitlines()
    assert lines[0] == "flowchart LR"
    assert lines.count("  end") == 1 and any(ln.startswith("  subgraph c0[") for ln in lines)
    assert 'n_t0_r{{"r (router, netns)"}}' in mmd
    assert 'n_t0_switch(["switch<br/>switch<br/>10.64.0.0/24"])' in mmd
    assert "#quot;quoted#quot;" in mmd  # quotes cannot appear raw in a label
    edges = [ln for ln in lines if ln.startswith("  n_") and ln.split()[1][0] == "-"]
    assert [e.split()[1][:4] for e in edges] == ["---|", "-.-", "-.->", "-.-x"]
    assert [ln.split()[1] for ln in lines if ln.startswith("  linkStyle")] == ["2", "3"]


def faulty() -> Diagram:
    boxes = [Box(f"t0:{n}", (n,), "node", 0) for n in ("a", "b", "c")]
    return Diagram(
        clusters=["faults (up)"], boxes=[*boxes, Box("t0:sw", ("sw",), "switch", 0)],
        edges=[Edge("t0:a", "t0:sw", "eth1\n40 ms, 1 % loss", "impaired"),
               Edge("t0:b", "t0:sw", "eth1\nDOWN", "down"),
               Edge("t0:a", "t0:c", "partition [a] | [c]", "cut"),
               Edge("t0:b", "t0:c", "partition [b] -> [c] (one way)", "cut1")],
    )


def test_faults_are_drawn_in_both_languages() -> None:
    """Impaired links carry what they do, cut links and partitions stand out in red."""
    dot = render_dot(faulty())
    assert 'label="eth1\\n40 ms, 1 % loss", color=darkorange' in dot
    assert 'label="eth1\\nDOWN", color=red3' in dot and "style=dashed" in dot
    assert dot.count("arrowhead=tee") == 2 and dot.count("arrowtail=tee") == 1
    mmd = render_mermaid(faulty())
    assert 'n_t0_a ===|"eth1<br/>40 ms, 1 % loss"| n_t0_sw' in mmd
    assert 'n_t0_a x--x|"partition [a] #124; [c]"| n_t0_c' in mmd  # "|" would end the label
    assert 'n_t0_b --x|"partition [b] -> [c] (one way)"| n_t0_c' in mmd
    assert mmd.count("linkStyle") == 4  # each fault has its colour


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_parses_the_faults() -> None:
    done = subprocess.run(["dot", "-Tcanon"], input=render_dot(faulty()), text=True,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
