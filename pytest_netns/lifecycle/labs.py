"""Labs that outlive the command that built them: up, find, down.

`pytest-netns up FILE` builds a lab and exits, and the lab stays up until
`pytest-netns down`. So a lab is a kept session: its objects carry a
session id of their own (namespaces, links and containers are named and
labelled with it, as for any topology), a kept marker tells the crash
watchdog and every start-of-session sweep to leave that session alone, and
its subnet reservations hold while the marker exists. `down` is a sweep of
that one session (`reaper.sweep`), which removes every object the lab's
commands made, whichever process made it, and whatever state it is in
(even half-built by an `up` that was killed). `cleanup` removes labs too.

The lab's record (`/run/pytest-netns/labs/<name>/lab.json`) is what later
commands (`exec`, `inspect`, `check`, `capture`, ...) start from, in any
shell: its backend, its session, and a snapshot of the built topology that
`labs.reattach` takes up again. A lab is known by the name in its
file, so a second `up` of the same lab is refused, naming it. The folder
also holds each namespace node's command output (`<node>.log`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import LabStateError
from ..ownership import (
    ALIAS_PREFIX,
    LABS_DIR,
    Session,
    lab_dir,
    lab_names,
    mark_kept,
    process_alive,
    process_start,
    read_lab,
    remove_lab,
    unmark_kept,
    write_lab,
)

if TYPE_CHECKING:
    from ..labs.lab import Detached
    from ..labs.labfile import LabSpec
    from ..topology.topology import Topology

#: how long `down` waits for the kernel to reap the host ends of the lab's veths
LINKS_GONE_TIMEOUT = 10.0


@dataclass
class Lab:
    """A lab's record: who built it, from which file, and what it is made of."""

    name: str
    record: dict[str, Any]

    @property
    def session(self) -> str:
        return str(self.record.get("session", ""))

    @property
    def pid(self) -> int:
        return int(self.record.get("pid") or 0)

    @property
    def state(self) -> str:
        """"up", or "building" (by a live `up`, or one that was interrupted)."""
        return str(self.record.get("state", "building"))

    @property
    def file(self) -> str:
        return str(self.record.get("file", ""))

    @property
    def backend(self) -> str:
        return str(self.record.get("backend", ""))

    @property
    def uses_docker(self) -> bool:
        """Whether any node is a container (or may be: a lab whose `up` did not finish)."""
        topo = self.record.get("topology")
        if self.state != "up" or topo is None:
            return True
        return any(node.get("container") for node in topo["nodes"])

    @property
    def builder_alive(self) -> bool:
        return process_alive(self.pid, int(self.record.get("start") or 0))

    @property
    def directory(self) -> str:
        return lab_dir(self.name)

    def topology(self) -> Topology:
        """The lab taken up again in this process (kept: never torn down by it)."""
        from ..labs.reattach import restore

        if self.state != "up":
            raise LabStateError(self._unfinished())
        topo = restore(self.record["topology"])
        return topo

    def save(self) -> None:
        write_lab(self.name, self.record)

    def _unfinished(self) -> str:
        if self.builder_alive:
            return f"lab {self.name} is still being built (by pid {self.pid}): wait for it"
        return (f"the `up` of lab {self.name} (pid {self.pid}) was interrupted before the lab "
                f"was complete: `pytest-netns down {self.name}` removes what it built")

    def __str__(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S",
                              time.localtime(float(self.record.get("created") or 0)))
        return (f"lab {self.name} ({self.state}, {self.backend} backend, from {self.file}, "
                f"session {self.session}, built by pid {self.pid} at {since})")


def find(name: str) -> Lab | None:
    record = read_lab(name)
    if record is None:
        return None if not os.path.isdir(lab_dir(name)) else Lab(name, {"state": "building"})
    return Lab(name, record)


def need(name: str) -> Lab:
    """The lab that is up under `name`, or LabStateError saying which are."""
    lab = find(name)
    if lab is None:
        up = ", ".join(lab_names()) or "none"
        raise LabStateError(f"lab {name} is not up (labs up: {up}); `pytest-netns up FILE` "
                            "builds it")
    return lab


def labs() -> list[Lab]:
    return [lab for lab in (find(n) for n in lab_names()) if lab is not None]


# -- up -------------------------------------------------------------------------------


def _claim(spec: LabSpec) -> None:
    """Take the lab's name (mkdir is atomic), or say who holds it."""
    os.makedirs(LABS_DIR, exist_ok=True)
    try:
        os.mkdir(lab_dir(spec.name))
        return
    except FileExistsError:
        pass
    lab = find(spec.name)
    assert lab is not None
    if lab.state == "up":
        raise LabStateError(
            f"{lab} is already up: `pytest-netns down {spec.name}` removes it (or give this "
            "file another `name:`)"
        )
    raise LabStateError(lab._unfinished())


def up(spec: LabSpec, backend: str | None = None, image: str | None = None) -> tuple[Lab,
                                                                                     Topology]:
    """Build the lab as a kept session and record it; on failure, nothing stays."""
    from ..kernel.privileges import require_privileges
    from ..labs.lab import describe
    from ..labs.reattach import snapshot
    from ..topology.builder import TopologyBuilder
    from .backend import resolve_backend

    require_privileges()
    chosen = resolve_backend(backend or spec.backend or "auto")
    _claim(spec)
    session = Session()
    lab = Lab(spec.name, {
        "name": spec.name, "file": os.path.abspath(spec.file) if spec.file else None,
        "backend": chosen, "session": session.id, "pid": session.pid,
        "start": process_start(session.pid) or 0, "created": time.time(), "state": "building",
    })
    try:
        # the marker first: a record without it would be a dead, unkept session's to sweeps
        mark_kept(session, [f"lab {spec.name}"])
        lab.save()

        def make_builder(**kw: Any) -> TopologyBuilder:
            return TopologyBuilder(session=session, **kw)

        builder, later = describe(spec, make_builder, backend=chosen, image=image,
                                  detached=True)
        topo = builder.build()
        processes = _start_detached(topo, later.commands, lab.directory)
        _settle(topo)
        lab.record.update(state="up", topology=snapshot(topo), processes=processes)
        if later.impairments:
            change_faults(lab, topo, later.impair)
        lab.save()
    except BaseException:
        _undo(lab, session)
        raise
    return lab, topo


def _start_detached(topo: Topology, commands: list[Detached],
                    directory: str) -> dict[str, int | None]:
    """Start namespace nodes' commands, their output in `<node>.log` (not a pipe: the
    `up` that starts them exits, and a write to a pipe without a reader kills)."""
    from ..nodes.namespace import NamespaceNode

    pids: dict[str, int | None] = {}
    for command in commands:
        node = topo.nodes[command.node]
        assert isinstance(node, NamespaceNode)
        pids[command.node] = node.start_detached(
            command.argv, os.path.join(directory, f"{command.node}.log"))
    return pids


def _settle(topo: Topology) -> None:
    """Before `up` exits: every namespace node has its hosts file (a later `exec`, in
    another process, mounts it), and what its processes hold is settled."""
    from ..nodes.namespace import NamespaceNode

    for name in topo.members():
        node = topo.nodes[name]
        if isinstance(node, NamespaceNode):
            node.hosts.write()
            node.hosts.settle()


# -- faults ---------------------------------------------------------------------------


def change_faults(lab: Lab, topo: Topology, change: Callable[[Topology], object]) -> None:
    """Apply `change` (an impairment, a partition, a heal) to the lab's faults, so that
    they outlive this process, and record what is set now.

    Faults are kernel state on the lab's interfaces (qdiscs, filters) and,
    for delays here, a forwarder process; what a process knows of them ends
    with it. So each change starts from nothing: the lab's forwarder is
    ended, every qdisc and filter a fault put on its interfaces is removed,
    and what the record says is set again, the change on top, by a detached
    forwarder that outlives this process (`topo.kept`).
    """
    from ..labs.lab import restore_faults

    wanted = lab.record.get("faults") or {}
    _clear_faults(lab, topo)
    block = int(lab.record.get("name_block") or 0) + 1
    lab.record.update(name_block=block, faults={})
    lab.save()
    topo.session.numbers_from(block * NAMES_PER_PROCESS)  # apart from earlier sinks' names
    topo.kept = True
    try:
        restore_faults(topo, wanted)
        change(topo)
    finally:  # what is set now, whatever failed
        lab.record["faults"] = _faults_now(topo)
        lab.save()


#: names each process that changes a lab's faults may give (sinks, retired links)
NAMES_PER_PROCESS = 36 ** 3


def _faults_now(topo: Topology) -> dict[str, Any]:
    from ..labs.lab import faults_of

    faults = faults_of(topo)
    pid = topo.fault_state.forwarder_pid if topo.fault_state is not None else None
    if pid is not None:
        faults["forwarder"] = {"pid": pid, "start": process_start(pid) or 0}
    return faults


def _clear_faults(lab: Lab, topo: Topology) -> None:
    """End the lab's forwarder and take every fault off its interfaces."""
    from ..kernel import tc
    from ..kernel.proctree import ProcessTree, end_processes

    forwarder = (lab.record.get("faults") or {}).get("forwarder")
    if forwarder:  # by PID and start time: never a process that took its PID since
        tree = ProcessTree(int(forwarder["pid"]), int(forwarder["start"]) or None)
        end_processes(tree.members, 0)  # its namespace, and so its sinks, go with it

    def clear(rt: Any, index: int) -> None:
        tc.delete_qdisc(rt, index, tc.TC_H_ROOT)
        tc.delete_qdisc(rt, index, tc.TC_H_CLSACT, tc.CLSACT_HANDLE)

    for link in topo.links:
        if len(link.ends) == 2:
            for end in link.ends:
                topo.faults.endpoint(end).run(f"clear the faults of {end.node}:{end.ifname}",
                                              clear, missing_ok=True)


def _undo(lab: Lab, session: Session) -> None:
    """After a failed build: the builder closed what it made; finish that, and forget it."""
    from ..kernel.janitor import janitor, wait_for_links_gone

    janitor().drain()
    wait_for_links_gone(f"{ALIAS_PREFIX}{session.id}:", LINKS_GONE_TIMEOUT)
    unmark_kept(session.id)
    remove_lab(lab.name)


# -- down -----------------------------------------------------------------------------


def down(lab: Lab) -> list[str]:
    """Remove every object of the lab's session, then its record; one line per object."""
    from ..kernel.janitor import wait_for_links_gone
    from ..kernel.privileges import require_privileges
    from .reaper import sweep

    require_privileges()
    if lab.state != "up" and lab.builder_alive:
        raise LabStateError(lab._unfinished())
    lines = []
    if lab.session:
        lines = sweep(include_kept=True, session_id=lab.session, containers=lab.uses_docker)
        left = wait_for_links_gone(f"{ALIAS_PREFIX}{lab.session}:", LINKS_GONE_TIMEOUT)
        forwarder = (lab.record.get("faults") or {}).get("forwarder")
        deadline = time.monotonic() + LINKS_GONE_TIMEOUT
        while forwarder and process_alive(int(forwarder["pid"]), int(forwarder["start"])) \
                and time.monotonic() < deadline:  # the sweep ended it; its namespace goes too
            time.sleep(0.005)
        failed = [line for line in lines if line.startswith("could not")]
        if failed or left:
            problems = "; ".join(failed + [f"links still present: {left}"] * bool(left))
            raise LabStateError(f"lab {lab.name} is not completely down ({problems}); run "
                                f"`pytest-netns down {lab.name}` again")
    if os.path.isdir(lab.directory):
        remove_lab(lab.name)
        lines.append(f"removed lab {lab.name}")
    return lines

