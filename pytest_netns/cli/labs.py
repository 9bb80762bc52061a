"""The lab commands: up, down, exec, inspect, graph, check, capture, impair, partition, heal.

Each takes a lab file (or the name of a lab that is up) and is a thin front
for the library: `labs.labfile` reads and checks the file,
`lifecycle.labs` builds, records and removes labs, and every other command
takes the lab up again from its record (`labs.reattach`) in its own
process, so they work from any shell, long after `up` has exited.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..choices import BACKEND_CHOICES
from ..errors import InvalidImpairmentError, LabStateError, MissingToolError
from .command import Command

if TYPE_CHECKING:
    from ..labs.labfile import LabSpec
    from ..lifecycle.labs import Lab
    from ..report.diagram import Diagram
    from ..topology.topology import Topology

_NAME = re.compile(r"[A-Za-z0-9_-]+")


# -- what a command is given ----------------------------------------------------------


def _target(text: str) -> tuple[str, LabSpec | None]:
    """A lab file (read and checked), or the name of a lab that is up."""
    from ..labs.labfile import load

    if not os.path.exists(text) and _NAME.fullmatch(text):
        return text, None
    spec = load(text)
    return spec.name, spec


def _lab(text: str) -> Lab:
    from ..lifecycle.labs import need

    name, _ = _target(text)
    return need(name)


def _spec_of(text: str) -> tuple[Lab, LabSpec]:
    """The lab that is up, and its file (read now: `expect:` may have been edited)."""
    from ..labs.labfile import load
    from ..lifecycle.labs import need

    name, spec = _target(text)
    lab = need(name)
    return lab, spec if spec is not None else load(lab.file)


def _topology(lab: Lab, spec: LabSpec | None = None) -> Topology:
    topo = lab.topology()
    if spec is not None:
        missing = [n for n in spec.members() if n not in topo.nodes]
        if missing:
            raise LabStateError(
                f"{spec.file} declares {', '.join(missing)}, which lab {lab.name} (up since "
                "before the file changed) does not have: take it down and up again")
    return topo


# -- up and down ------------------------------------------------------------------------


def up(args: argparse.Namespace) -> int:
    from ..labs.labfile import load
    from ..lifecycle.labs import up as build

    spec = load(args.file)
    lab, topo = build(spec, backend=args.backend, image=args.image)
    members = topo.members()
    switches = [s for s in topo.segments.values() if str(s.kind) == "switch"]
    print(f"lab {lab.name} is up: {len(members)} node(s), {len(switches)} switch(es), "
          f"{lab.backend} backend, built in {topo.build_seconds * 1000:.0f} ms "
          f"(session {lab.session})")
    for line in _node_table(lab, topo, args.file):
        print(line)
    if switches:
        print("switches: " + ", ".join(f"{s.name} {s.subnet}" for s in switches))
    print(f"check it: pytest-netns check {args.file}; take it down: pytest-netns down "
          f"{args.file}")
    return 0


def _node_table(lab: Lab, topo: Topology, file: str) -> list[str]:
    from ..report.describe import enter_commands

    enter = dict(enter_commands(topo))
    rows = [("NODE", "KIND", "ADDRESSES", "ENTER")]
    for name in topo.members():
        node = topo.nodes[name]
        addresses = ", ".join(
            f"{i.ifname} {' '.join(a for a in (i.ip, getattr(i, 'ip6', None)) if a)}"
            for i in node.interfaces if i.ip or getattr(i, "ip6", None)) or "-"
        kind = str(topo.roles[name])
        if kind == "node":
            kind = node.kind
        rows.append((name, kind, addresses, f"pytest-netns exec {file} {name}  "
                                            f"(or: {enter[name]})"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  "
            + r[3] for r in rows]


def down(args: argparse.Namespace) -> int:
    from ..lifecycle.labs import down as remove
    from ..lifecycle.labs import find, labs

    if args.all:
        targets = labs()
    elif args.file is None:
        raise LabStateError("say which lab: pytest-netns down FILE (or --all)")
    else:
        name, _ = _target(args.file)
        lab = find(name)
        if lab is None:
            print(f"lab {name} is not up: nothing to take down")
            return 0
        targets = [lab]
    for lab in targets:
        lines = remove(lab)
        if args.verbose:
            for line in lines:
                print(f"  {line}")
        print(f"lab {lab.name} is down ({len(lines)} object(s) removed)")
    if args.all and not targets:
        print("no lab is up")
    return 0


# -- looking at a lab ---------------------------------------------------------------------


def exec_in(args: argparse.Namespace) -> int:
    """Replace this process with the command (or a shell) inside the node."""
    from ..kernel.netns import setns

    lab = _lab(args.file)
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    record = _node_record(lab, args.node)
    if record.get("container"):
        docker = shutil.which("docker")
        if docker is None:
            raise MissingToolError(
                f"node {args.node!r} is a container, and entering one needs the docker CLI, "
                f"which is not installed: or use nsenter --net={record['netns']}")
        tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
        os.execv(docker, [docker, "exec", "-i", *tty, record["container"], *(argv or ["sh"])])
    env = dict(os.environ, **record.get("environment") or {}, PYTEST_NETNS_LAB=lab.name,
               PYTEST_NETNS_NODE=args.node)
    if not argv:
        argv = [os.environ.get("SHELL") or "/bin/sh"]
        env["PS1"] = f"[{lab.name}/{args.node}] \\w \\$ "
    fd = os.open(record["netns"], os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, record["netns"])  # this process is single-threaded: all of it moves
    finally:
        os.close(fd)
    _names_of(record["netns"])
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"pytest-netns exec: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached


def _names_of(netns: str) -> None:
    """The node's own /etc/hosts (the lab's names), as its own processes see it."""
    from ..kernel.mounts import detach_private_nsfs, private_mount_namespace
    from ..nodes.hosts import HOSTS, PrivateHosts

    hosts = PrivateHosts(os.path.basename(netns)).path
    if os.path.exists(hosts) and os.path.exists(HOSTS):
        # detaching happens inside the new mount namespace, and this thread stays there
        detach_private_nsfs(private_mount_namespace(hosts, HOSTS))


def _node_record(lab: Lab, name: str) -> dict[str, Any]:
    if lab.state != "up":
        lab.topology()  # raises, saying why
    nodes = {n["name"]: n for n in lab.record["topology"]["nodes"] if n["role"] != "hidden"}
    if name not in nodes:
        raise LabStateError(f"lab {lab.name} has no node {name!r}; its nodes: "
                            f"{', '.join(nodes)}")
    node: dict[str, Any] = nodes[name]
    return node


def lab_json(lab: Lab) -> dict[str, Any]:
    """What `inspect --json` prints for one lab, from its record alone."""
    out: dict[str, Any] = {"name": lab.name, "state": lab.state, "file": lab.file,
                           "backend": lab.backend, "session": lab.session, "pid": lab.pid,
                           "created": lab.record.get("created"), "nodes": {},
                           "switches": {}, "links": [], "host": []}
    topo = lab.record.get("topology")
    if topo is None:
        return out
    faults = lab.record.get("faults") or {}
    for node in topo["nodes"]:
        if node["role"] not in ("node", "router"):
            continue
        ifaces = node["interfaces"]
        out["nodes"][node["name"]] = {
            "ip": next((i["ip"] for i in ifaces if i.get("ip")), None),
            "ip6": next((i["ip6"] for i in ifaces if i.get("ip6")), None),
            "kind": node["role"],
            "backend": "container" if node["container"] else "namespace",
            "netns": node["netns"], "container": node["container"],
            "interfaces": [{k: i.get(k) for k in ("ifname", "ip", "prefixlen", "ip6",
                                                  "prefixlen6", "segment")} for i in ifaces],
            "routes": node["routes"],
            "command_pid": (lab.record.get("processes") or {}).get(node["name"]),
        }
    for seg in topo["segments"]:
        if seg["kind"] == "switch":
            out["switches"][seg["name"]] = {
                "subnet": seg["subnet"], "subnet6": seg.get("subnet6"),
                "members": [m["node"] for m in seg["members"]]}
    for link in topo["links"]:
        ends = link["ends"]
        out["links"].append({"segment": link["state"]["segment"],
                             "endpoints": [e["node"] for e in ends],
                             "ends": [{k: e.get(k) for k in ("node", "ifname", "ip", "ip6")}
                                      for e in ends],
                             "impairment": faults.get("impairments", {}).get(
                                 "<->".join(e["node"] for e in ends), {})})
    out["host"] = [{k: i.get(k) for k in ("ifname", "ip", "prefixlen", "ip6", "segment")}
                   for i in topo["host_interfaces"]]
    out["partitions"] = faults.get("partitions", [])
    return out


def inspect(args: argparse.Namespace) -> int:
    from ..lifecycle.labs import labs
    from ..report.describe import describe_topology, enter_commands

    if args.file is None:
        found = labs()
        if args.json:
            print(json.dumps({"labs": [lab_json(lab) for lab in found]}, indent=2))
            return 0
        if not found:
            print("no lab is up")
        for lab in found:
            nodes = len(lab_json(lab)["nodes"])
            print(f"{lab.name}: {lab.state}, {nodes} node(s); {lab}")
        return 0
    lab = _lab(args.file)
    if args.json:
        print(json.dumps(lab_json(lab), indent=2))
        return 0
    topo = _topology(lab)
    print(lab)
    for line in describe_topology(topo):
        print(line)
    faults = lab.record.get("faults") or {}
    for pair in faults.get("impairments") or {}:
        print("impaired: " + _impairment_line(lab, *pair.split("<->")).split(": ", 1)[1]
              .replace("of lab", "").strip())
    for part in faults.get("partitions") or []:
        sep = " -> " if part["oneway"] else " | "
        print("partitioned: " + sep.join(f"[{', '.join(g)}]" for g in part["groups"]))
    print("enter:")
    for name, command in enter_commands(topo):
        print(f"  {name}: pytest-netns exec {args.file} {name}  (or: {command})")
    return 0


def graph(args: argparse.Namespace) -> int:
    from ..labs.labfile import load
    from ..lifecycle.labs import find
    from ..report.diagram import build, from_lab, render_dot, render_mermaid, render_svg

    name, spec = _target(args.file)
    lab = find(name)
    if lab is not None and lab.state == "up":
        picture = _with_faults(build([_topology(lab)], [], {}), lab)
    else:
        picture = from_lab(spec if spec is not None else load(args.file))
    if args.format == "mermaid":
        text = render_mermaid(picture).encode()
    elif args.format == "dot":
        text = render_dot(picture).encode()
    else:
        text = _svg(render_dot(picture), render_svg)
    if args.output in (None, "-"):
        sys.stdout.buffer.write(text)
    else:
        with open(args.output, "wb") as f:
            f.write(text)
    return 0


def _with_faults(picture: Diagram, lab: Lab) -> Diagram:
    """The lab's faults, as its record says them, drawn as the failure report draws them
    (another process set them: this one's topology knows nothing of them)."""
    import dataclasses

    from ..kernel.impairment import Impairment
    from ..report.diagram import Edge, node_id

    faults = lab.record.get("faults") or {}
    impaired: dict[frozenset[str], str] = {}
    for pair, directions in (faults.get("impairments") or {}).items():
        a, b = pair.split("<->")
        impaired[frozenset((node_id(0, a), node_id(0, b)))] = "; ".join(
            f"{d} {Impairment.parse(**v).describe()}" for d, v in directions.items())
    edges = []
    for edge in picture.edges:
        summary = impaired.get(frozenset((edge.src, edge.dst)), "")
        if summary and edge.style == "link":
            label = f"{edge.label}\n{summary}" if edge.label else summary
            edge = dataclasses.replace(edge, label=label, style="impaired")
        edges.append(edge)
    for part in faults.get("partitions") or []:
        firsts = [node_id(0, group[0]) for group in part["groups"]]
        sep = " -> " if part["oneway"] else " | "
        label = "partition " + sep.join(f"[{', '.join(g)}]" for g in part["groups"])
        pairs = ([(firsts[0], f) for f in firsts[1:]] if part["oneway"]
                 else [(a, b) for n, a in enumerate(firsts) for b in firsts[n + 1:]])
        edges += [Edge(a, b, label, "cut1" if part["oneway"] else "cut") for a, b in pairs]
    return dataclasses.replace(picture, edges=edges)


def _svg(dot: str, render: Callable[[str, str], str | None]) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pytest-netns-graph-") as tmp:
        source, target = os.path.join(tmp, "lab.dot"), os.path.join(tmp, "lab.svg")
        with open(source, "w") as f:
            f.write(dot)
        if render(source, target) is None:
            raise MissingToolError("--format svg needs Graphviz's `dot` (apt-get install "
                                   "graphviz); --format dot or mermaid need nothing")
        with open(target, "rb") as f:
            return f.read()


def check(args: argparse.Namespace) -> int:
    from ..labs.lab import check as probe

    lab, spec = _spec_of(args.file)
    if not spec.expect:
        print(f"{spec.file} has no `expect:` section: nothing to check")
        return 0
    result = probe(_topology(lab, spec), spec, timeout=args.timeout)
    print(result)
    return 0 if result.ok else 1


def capture(args: argparse.Namespace) -> int:
    """Frames of one link until Ctrl-C, --count or --duration: to a pcap, or as text."""
    from ..report.capture import LinkTap
    from ..report.frames import describe
    from ..report.pcap import PcapWriter

    lab = _lab(args.file)
    topo = _topology(lab)
    tap = LinkTap(topo, topo.link(args.x, args.y))
    to_stdout = args.write == "-" or (args.write is None and not sys.stdout.isatty())
    out = sys.stdout.buffer if to_stdout else None
    writer = None
    if args.write not in (None, "-") or out is not None:
        writer = PcapWriter(args.write if out is None else out, flush=True)
    where = f"link {args.x}-{args.y} of lab {lab.name} (on {tap.where})"
    print(f"capturing {where}" + (f" into {writer.path}" if writer else "") +
          "; Ctrl-C stops", file=sys.stderr, flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    deadline = time.monotonic() + args.duration if args.duration else None
    frames = 0
    try:
        while not stop["now"] and (args.count is None or frames < args.count):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            for sec, usec, frame, length in tap.frames(min(left or 0.2, 0.2)):
                if writer is not None:
                    writer.write(sec, usec, frame, length)
                else:
                    print(describe(sec, usec, frame, length), flush=True)
                frames += 1
                if args.count is not None and frames >= args.count:
                    break
    finally:
        drops = tap.drops
        tap.close()
        if writer is not None:
            writer.close()
    print(f"{frames} frame(s) captured on {where}"
          + (f", {drops} dropped by the kernel" if drops else ""), file=sys.stderr)
    return 0


# -- faults -------------------------------------------------------------------------------

IMPAIRMENTS = ("delay", "jitter", "loss", "rate", "duplicate", "corrupt", "reorder")


def impair(args: argparse.Namespace) -> int:
    """Impair (or with --clear, clear) the link between X and Y of a live lab."""
    from ..lifecycle.labs import change_faults

    lab = _lab(args.file)
    topo = _topology(lab)
    link = topo.link(args.x, args.y)  # an unknown pair fails before anything changes
    values = {k: getattr(args, k) for k in IMPAIRMENTS if getattr(args, k) is not None}
    if args.distribution:
        values["distribution"] = args.distribution
    if not values and not args.clear:
        raise InvalidImpairmentError(
            "say how to impair the link: --delay 50ms, --jitter 10ms, --loss 1, --rate "
            "10mbit, --duplicate 1, --corrupt 1, --reorder 25 (or --clear)")
    if args.clear and values:
        raise InvalidImpairmentError("--clear takes no values: clear first, then impair")
    from ..kernel.impairment import Impairment
    from ..topology.faults import parse_direction

    Impairment.parse(**values)  # bad values fail here, before the lab changes
    parse_direction(args.direction, (link.ends[0].node, link.ends[1].node))

    def change(topo: Topology) -> None:
        target = topo.link(args.x, args.y)
        if args.clear:
            target.clear()
        else:
            target.impair(direction=args.direction, **values)

    change_faults(lab, topo, change)
    print(_impairment_line(lab, link.ends[0].node, link.ends[1].node))
    return 0


def _impairment_line(lab: Lab, a: str, b: str) -> str:
    from ..kernel.impairment import Impairment

    now = ((lab.record.get("faults") or {}).get("impairments") or {}).get(f"{a}<->{b}", {})
    if not now:
        return f"link {a}-{b} of lab {lab.name}: not impaired"
    parts = [f"{d}: {Impairment.parse(**v).describe()}" for d, v in now.items()]
    return f"link {a}-{b} of lab {lab.name}: " + "; ".join(parts)


def partition(args: argparse.Namespace) -> int:
    """Drop traffic between groups of nodes (`a,b c`) of a live lab."""
    from ..lifecycle.labs import change_faults

    lab = _lab(args.file)
    topo = _topology(lab)
    groups = [[n for n in group.split(",") if n] for group in args.groups]
    known = [*topo.members(), "host"]
    for name in (n for group in groups for n in group):
        if name not in known:  # before the lab changes
            raise InvalidImpairmentError(f"no node {name!r} in lab {lab.name}; its nodes: "
                                         f"{', '.join(known)}")
    change_faults(lab, topo, lambda topo: topo.partition(*groups, oneway=args.oneway))
    for part in (lab.record.get("faults") or {}).get("partitions") or []:
        sep = " -> " if part["oneway"] else " | "
        print(f"partition of lab {lab.name}: "
              + sep.join(f"[{', '.join(g)}]" for g in part["groups"]))
    return 0


def heal(args: argparse.Namespace) -> int:
    """Heal every partition of a live lab (impairments stay: `impair --clear` ends them)."""
    from ..lifecycle.labs import change_faults

    lab = _lab(args.file)
    before = len((lab.record.get("faults") or {}).get("partitions") or [])

    def change(topo: Topology) -> None:
        for part in topo.faults.active_partitions():
            part.heal()

    change_faults(lab, _topology(lab), change)
    print(f"lab {lab.name}: {before} partition(s) healed")
    return 0


# -- the command line ---------------------------------------------------------------------

FILE_HELP = "the lab file (YAML or JSON), or the name of a lab that is up"


def _up_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help="the lab file (YAML or JSON)")
    cmd.add_argument("--backend", choices=BACKEND_CHOICES,
                     help="what nodes are made of (wins over the file's `backend:`)")
    cmd.add_argument("--image", help="image for container nodes that name none")


def _down_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", nargs="?", help=FILE_HELP)
    cmd.add_argument("--all", action="store_true", help="every lab that is up")
    cmd.add_argument("-v", "--verbose", action="store_true", help="list what was removed")


def _exec_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)
    cmd.add_argument("node", help="a node, router or switch of the lab")
    cmd.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                     help="the command and its arguments (a shell when none is given)")


def _inspect_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", nargs="?", help=FILE_HELP)
    cmd.add_argument("--json", action="store_true", help="one JSON object")


def _graph_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)
    cmd.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid")
    cmd.add_argument("-o", "--output", help="write here instead of to standard output")


def _check_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)
    cmd.add_argument("--timeout", type=float, default=1.0,
                     help="seconds a probe waits for an answer (default 1)")


def _capture_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)
    cmd.add_argument("x", help="one end of the link (a node, switch or host)")
    cmd.add_argument("y", help="the other end")
    cmd.add_argument("-w", "--write", metavar="PCAP",
                     help="write a pcap file (- for standard output)")
    cmd.add_argument("-c", "--count", type=int, help="stop after this many frames")
    cmd.add_argument("--duration", type=float, help="stop after this many seconds")


def _impair_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)
    cmd.add_argument("x", help="one end of the link (a node, switch or host)")
    cmd.add_argument("y", help="the other end")
    for name, example in (("delay", "50ms"), ("jitter", "10ms"), ("loss", "1 (percent)"),
                          ("rate", "10mbit"), ("duplicate", "1 (percent)"),
                          ("corrupt", "1 (percent)"), ("reorder", "25 (percent)")):
        cmd.add_argument(f"--{name}", metavar="VALUE", help=f"e.g. {example}")
    cmd.add_argument("--distribution", choices=("uniform", "normal"),
                     help="how jitter spreads around the delay (default uniform)")
    cmd.add_argument("--direction", default="both",
                     help="both (default), or X->Y for one direction")
    cmd.add_argument("--clear", action="store_true", help="remove the link's impairments")


def _partition_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)
    cmd.add_argument("groups", nargs="+", metavar="GROUP",
                     help="nodes separated by commas (a,b c: a and b apart from c); host "
                     "is a node too")
    cmd.add_argument("--oneway", action="store_true",
                     help="drop only what the first group sends to the others")


def _heal_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("file", help=FILE_HELP)


def _commands() -> dict[str, Command]:
    return {
        "up": Command("build a lab file's network and leave it up", up, _up_arguments,
                      "Build the lab and leave it up; print each node with its addresses and "
                      "how to enter it."),
        "down": Command("remove a lab (or every lab with --all)", down, _down_arguments,
                        "Remove everything of a lab: namespaces, links, containers, the "
                        "processes in its nodes, its record."),
        "exec": Command("run a command (or a shell) inside a node of a lab", exec_in,
                        _exec_arguments,
                        "Run CMD inside NODE (in its container, or inside its namespace on "
                        "the host's filesystem); a shell without CMD. The exit status is "
                        "CMD's."),
        "inspect": Command("the labs that are up, or one lab in detail", inspect,
                           _inspect_arguments,
                           "Without FILE: the labs that are up. With FILE: its nodes, links, "
                           "addresses, routes and impairments."),
        "graph": Command("draw a lab (Mermaid, DOT or SVG)", graph, _graph_arguments,
                         "Draw a lab: as built if it is up, as declared if not."),
        "check": Command("probe a lab's `expect:` section (exit 1 on a difference)", check,
                         _check_arguments,
                         "Probe every expectation of the file's `expect:` on the live lab, "
                         "print the matrices and the differences; exit 1 if any cell "
                         "differs."),
        "capture": Command("capture one link of a lab (pcap or text)", capture,
                           _capture_arguments,
                           "Capture every frame of the link between X and Y. With -w FILE a "
                           "pcap (tcpdump, Wireshark); to a pipe a pcap stream (| tcpdump -r "
                           "-); to a terminal one line per frame."),
        "impair": Command("impair a link of a live lab (delay, loss, rate, ...)", impair,
                          _impair_arguments,
                          "Impair the link between X and Y, replacing what its direction(s) "
                          "had: units as tc writes them (50ms, 10mbit, percentages 0-100). "
                          "It lasts until cleared, healed or the lab is taken down."),
        "partition": Command("drop traffic between groups of nodes of a live lab", partition,
                             _partition_arguments,
                             "Drop traffic between the groups (a,b c: a and b keep talking, "
                             "neither talks to c); traffic inside a group is untouched."),
        "heal": Command("heal every partition of a live lab", heal, _heal_arguments),
    }


LAB_COMMANDS = _commands()
