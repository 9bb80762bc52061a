"""Failures show the network: report section, diagram, keep, terminal summary.

Each test runs a small test file in a pytest subprocess (as a user would),
with one deliberately failing probe: node `a` pings node `c` through router
`r`, and `c` has been told to ignore echo requests, so the packets travel
the whole path and no answer comes back.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest

FAILING = '''
import json

import pytest


def build(make_topology, label):
    t = make_topology(label=label)
    for name in ("a", "b", "c"):
        t.node(name)
    t.router("r")
    lan = t.switch("lan")
    for name in ("a", "b", "r"):
        t.connect(name, lan)
    t.connect("r", "c")
    return t.build()


def addresses(net):
    out = {}
    for seg in net.segments.values():
        for node, ifname, ip in seg.members:
            out.setdefault(node, []).append([ifname, ip])
    return out


def test_unreachable(make_topology):
    net = build(make_topology, "office")
    net["c"].netlink.sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    with open("expected.json", "w") as f:
        json.dump({"addresses": addresses(net), "c": net["c"].ip,
                   "a": net["a"].ip, "r_lan": net.segments["lan"].ip_of("r")}, f)
    from pytest_netns.probes.api import assert_reachable, ping
    from pytest_netns.probes.matrix import reachability_matrix

    server = net["b"].spawn(["busybox", "sh", "-c", "echo hello from b; busybox sleep 600"])
    while "hello" not in server.output():
        pass
    assert ping(net["a"], net["b"]).ok  # one probe that works
    reachability_matrix([net["a"], net["b"], net["c"]], timeout=0.5)
    assert_reachable(net["a"], net["c"])


def test_fine(make_topology):
    t = make_topology(label="fine")
    t.node("x")
    t.node("y")
    t.connect("x", "y")
    net = t.build()
    from pytest_netns.probes.api import assert_reachable

    assert_reachable(net["x"], net["y"])
'''


def run(pytester: pytest.Pytester, backend: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_net=FAILING)
    return pytester.runpytest_subprocess(
        f"--netns-backend={backend}", "-p", "no:cacheprovider", *args
    )


def section(result: pytest.RunResult) -> list[str]:
    """The lines of the pytest-netns report section of the (one) failure."""
    out = result.stdout.lines
    start = next(i for i, ln in enumerate(out) if "pytest-netns: the network at failure" in ln)
    end = next(i for i in range(start + 1, len(out)) if re.match(r"^[=_-]{5,}", out[i]))
    return out[start + 1 : end]


def node_rows(lines: list[str], name: str) -> list[str]:
    """The table rows of one node: its first row and the continuation rows below it."""
    start = next(i for i, ln in enumerate(lines) if re.match(rf"^  {name}\s", ln))
    rows = [lines[start]]
    for ln in lines[start + 1 :]:
        if not ln.startswith("  " + " " * len(name)) or not ln.strip():
            break
        rows.append(ln)
    return rows


def expected(pytester: pytest.Pytester) -> dict[str, object]:
    return json.loads((pytester.path / "expected.json").read_text())  # type: ignore[no-any-return]


def test_failure_report_names_every_node_with_its_addresses(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    result = run(pytester, netns_backend)
    result.assert_outcomes(failed=1, passed=1)
    lines = section(result)
    exp = expected(pytester)
    addresses: dict[str, list[list[str]]] = exp["addresses"]  # type: ignore[assignment]
    for name in ("a", "b", "c", "r"):
        rows = "\n".join(node_rows(lines, name))
        for ifname, ip in addresses[name]:
            assert re.search(rf"{ifname}\s+{re.escape(ip)}/24\s+up", rows), (name, rows)
        assert "routes" in rows
    # a's route to c goes through the router, as built
    assert f"default via {exp['r_lan']} dev eth1" in "\n".join(node_rows(lines, "a"))
    assert re.search(r"^  r\s+router\s", "\n".join(lines), re.M)
    switch = node_rows(lines, "lan")[0]
    assert "switch" in switch
    assert all(f"{n}:eth1={addresses[n][0][1]}" in switch for n in ("a", "b"))
    # every probe, with its outcome: the working one and the failing one
    text = "\n".join(lines)
    assert re.search(r"ok\s+a -> b .*icmp: reply", text), text
    assert re.search(rf"FAIL\s+a -> c \({re.escape(str(exp['c']))}\) icmp: timeout", text), text
    # the matrix the test computed, as its own table
    matrix = lines[lines.index("reachability matrix") + 1 :]
    assert re.match(r"  reachability \(icmp, timeout 0.5 s\): 6 probes in", matrix[0])
    assert re.match(r"  from \\ to\s+a\s+b\s+c$", matrix[1]), matrix[1]
    assert re.match(r"  a\s+-\s+yes\s+timeout$", matrix[2]), matrix[2]
    assert re.match(r"  c\s+yes\s+yes\s+-$", matrix[4]), matrix[4]
    # what the test spawned, with its output
    spawned = lines[lines.index("processes started in office") + 1 :]
    assert re.match(r"  b: `busybox sh -c 'echo hello from b; busybox sleep 600'` \(pid \d+\) "
                    r"running$", spawned[0]), spawned
    assert spawned[1] == "      hello from b"
    # the passing test gets no section; the summary counts what was built
    assert result.stdout.str().count("pytest-netns: the network at failure") == 1
    result.stdout.fnmatch_lines(
        ["*= pytest-netns =*", "2 topologies built in * s, torn down in * s; * probes sent"]
    )


def test_failure_writes_a_diagram_of_nodes_links_and_probed_pairs(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    result = run(pytester, netns_backend)
    result.assert_outcomes(failed=1, passed=1)
    folder = pytester.path / ".netns-artifacts" / "test_net.py_test_unreachable"
    result.stdout.fnmatch_lines(["artifacts in .netns-artifacts/test_net.py_test_unreachable/: *"])
    dot = (folder / "network.dot").read_text()
    exp = expected(pytester)
    addresses: dict[str, list[list[str]]] = exp["addresses"]  # type: ignore[assignment]
    for name, ifaces in addresses.items():
        for ifname, ip in ifaces:
            assert f"{ifname} {ip}/24" in dot, (name, ip)
    assert re.search(r'"t0:a" -> "t0:c" \[label="icmp timeout FAIL", color=red3', dot), dot
    assert re.search(r'"t0:a" -> "t0:b" \[label="icmp reply ok", color=darkgreen', dot), dot
    # pairs only the matrix probed
    assert re.search(r'"t0:b" -> "t0:c" \[label="matrix FAIL", color=red3', dot), dot
    assert re.search(r'"t0:c" -> "t0:a" \[label="matrix ok", color=darkgreen', dot), dot
    assert '"t0:r" -> "t0:c"' in dot  # the r-c link
    assert '"t0:a" -> "t0:lan"' in dot  # a's switch port
    # the report itself, as text, next to the diagram
    report = (folder / "report.txt").read_text()
    assert report.startswith("test_net.py::test_unreachable\n")
    assert "\n".join(section(result)).strip() in report
    # Graphviz is installed here: the SVG is rendered and names every node
    svg = ET.parse(folder / "network.svg").getroot()
    assert svg.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    for name in ("a", "b", "c", "r", "lan"):
        assert re.search(rf"\b{name}\b", texts)
    assert not (pytester.path / ".netns-artifacts" / "test_net.py_test_fine").exists()


def test_diagram_is_embedded_in_pytest_html(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html")
    result = run(pytester, "namespace", "--html=report.html", "--self-contained-html")
    result.assert_outcomes(failed=1, passed=1)
    html = (pytester.path / "report.html").read_text()
    svg = (pytester.path / ".netns-artifacts/test_net.py_test_unreachable/network.svg").read_bytes()
    assert base64.b64encode(svg).decode() in html


def run_inside(command: str, *argv: str) -> str:
    """Run argv through the printed way in: `nsenter --net=...` or `docker exec -it ID sh`."""
    words = command.split()
    if words[0] == "docker":
        words = ["docker", "exec", words[-2]]  # no tty here, and no shell
    done = subprocess.run([*words, *argv], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def test_keep_leaves_the_failed_topology_up_and_says_how_to_enter(
    pytester: pytest.Pytester, netns_backend: str
) -> None:
    from pytest_netns.lifecycle.reaper import sweep
    from pytest_netns.ownership import KEPT_DIR

    result = run(pytester, netns_backend, "--netns-keep", "-k", "unreachable")
    result.assert_outcomes(failed=1, deselected=1)
    out = result.stdout.str()
    block = out[out.index("kept office of test_net.py::test_unreachable for debugging") :]
    block = block[: block.index("remove kept topologies with: pytest-netns cleanup")]
    enter = dict(re.findall(r"^  (\w+): (.+)$", block, re.M))
    assert set(enter) == {"a", "b", "c", "r", "lan"}
    # the same lines are in the failure report
    assert f"  c: {enter['c']}" in "\n".join(section(result))
    router = re.fullmatch(r"nsenter --net=(/run/netns/pytest-netns-(\w+)-\d+-\d+-router)",
                          enter["r"])
    assert router, enter["r"]
    session_id = router[2]
    if netns_backend == "docker":
        assert re.fullmatch(r"docker exec -it [0-9a-f]{12} sh", enter["c"]), enter["c"]
    else:
        assert enter["c"].startswith("nsenter --net=/run/netns/pytest-netns-")
    addresses: dict[str, list[list[str]]] = expected(pytester)["addresses"]  # type: ignore[assignment]
    try:
        # pytest has exited; every node is still there, addressed as it was built
        assert os.path.exists(os.path.join(KEPT_DIR, session_id))
        for name in ("a", "b", "c", "r"):
            seen = run_inside(enter[name], "ip", "-4", "-o", "addr")
            for ifname, ip in addresses[name]:
                assert re.search(rf"{ifname}\s+inet {re.escape(ip)}/24", seen), (name, seen)
        assert "br0" in run_inside(enter["lan"], "ip", "-o", "link")
    finally:
        removed = sweep(include_kept=True, session_id=session_id)
    assert any("kept marker" in line for line in removed), removed
    assert not os.path.exists(router[1])
    for name, command in enter.items():
        if command.startswith("nsenter"):
            assert not os.path.exists(command.split("=", 1)[1]), name
        else:
            words = command.split()
            gone = subprocess.run(["docker", "inspect", words[-2]], capture_output=True,
                                  check=False)
            assert gone.returncode != 0, name


def test_summary_under_xdist_comes_from_every_worker(pytester: pytest.Pytester) -> None:
    """xdist workers print nothing themselves: the controller shows their summaries."""
    pytester.makepyfile(test_two='''
import pytest

@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_pair(make_topology, n):
    t = make_topology(label=f"pair{n}")
    t.connect(t.node("a"), t.node("b"))
    t.build()
''')
    result = pytester.runpytest_subprocess(
        "--netns-backend=namespace", "-p", "no:cacheprovider", "-n", "2"
    )
    result.assert_outcomes(passed=4)
    lines = [ln for ln in result.stdout.lines if re.match(r"^\[gw\d\] \d+ topolog", ln)]
    built = sum(int(re.match(r"^\[gw\d\] (\d+)", ln).group(1)) for ln in lines)  # type: ignore[union-attr]
    assert built == 4, result.stdout.str()
