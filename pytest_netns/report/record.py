"""What one test's network looked like and did, told when the test fails.

`TestRecord` collects, for one test, its topologies, every probe it sent
and every matrix it computed (the plugin makes one per test that uses
topologies), starts the captures, and on failure writes the report section,
the diagram and the report file into the test's artifacts directory; the
session's tally (`summary.SESSION`) adds it up for the terminal summary.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from ..choices import CAPTURE_MODES
from ..errors import InvalidArgumentError
from ..ownership import Session, mark_kept
from .describe import (
    describe_faults,
    describe_probes,
    describe_processes,
    describe_topology,
    enter_commands,
)
from .summary import SESSION, relative

if TYPE_CHECKING:
    from ..probes.matrix import ReachabilityMatrix
    from ..probes.result import ProbeResult
    from ..probes.series import PingStats
    from ..topology.topology import Topology
    from .capture import LinkCapture, TopologyCapture


def artifact_dir(root: str, nodeid: str) -> str:
    """`<root>/<test id>`, the id made safe for a file name (and unique when cut short)."""
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", nodeid).strip("_") or "test"
    if len(name) > 120:
        import hashlib

        name = f"{name[:110]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"
    return os.path.join(root, name)


class TestRecord:
    """The topologies, probes, matrices and captures of one test."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, nodeid: str, capture: str = "off", artifacts: str = ".netns-artifacts"
    ) -> None:
        if capture not in CAPTURE_MODES:
            raise InvalidArgumentError(
                f"unknown capture mode {capture!r}: expected one of {CAPTURE_MODES}"
            )
        self.nodeid = nodeid
        self.capture = capture
        self.directory = artifact_dir(artifacts, nodeid)
        self.topologies: list[Topology] = []
        self.probes: list[ProbeResult] = []
        self.matrices: list[ReachabilityMatrix] = []
        self.ping_stats: list[PingStats] = []
        self.captures: list[TopologyCapture] = []
        self.links: list[LinkCapture] = []
        self.svg_path: str | None = None
        self.failed = False
        self._building = 0
        self._fresh = False
        self._subscribed: list[Callable[[object], None]] | None = None

    def _prepare_directory(self) -> None:
        """Empty this test's folder once, so nothing from an earlier run is mistaken for ours."""
        if not self._fresh:
            shutil.rmtree(self.directory, ignore_errors=True)
            os.makedirs(self.directory, exist_ok=True)
            self._fresh = True

    # -- collecting -------------------------------------------------------

    def add_topology(self, topo: Topology) -> None:
        """A topology of this test; its capture (if on) starts now, before it carries traffic."""
        if topo in self.topologies:
            return
        self.topologies.append(topo)
        if topo.scoped:
            topo.tests_seen += 1
        if self.capture == "off":
            return
        from .capture import start_capture

        self._prepare_directory()
        labels = [t.label for t in self.topologies]
        prefix = topo.label if labels.count(topo.label) == 1 else f"{topo.label}{len(labels)}"
        started = time.perf_counter()
        self.captures.append(start_capture(topo, self.directory, prefix))
        SESSION.capture_seconds += time.perf_counter() - started

    @contextmanager
    def building(self) -> Iterator[None]:
        """Probes sent while a topology verifies itself are not the test's own."""
        self._building += 1
        try:
            yield
        finally:
            self._building -= 1

    def observe(self, obj: object) -> None:
        """Observer of the probes: every probe result, reachability matrix and ping series."""
        from ..probes.matrix import ReachabilityMatrix
        from ..probes.result import ProbeResult
        from ..probes.series import PingStats

        if self._building:
            return
        if isinstance(obj, ReachabilityMatrix):
            self.matrices.append(obj)
        elif isinstance(obj, PingStats):
            self.ping_stats.append(obj)
        elif isinstance(obj, ProbeResult):
            self.probes.append(obj)

    def subscribe(self) -> None:
        from ..probes.engine import observers

        observers.append(self.observe)
        self._subscribed = observers

    def unsubscribe(self) -> None:
        if self._subscribed is not None:
            with suppress(ValueError):
                self._subscribed.remove(self.observe)
            self._subscribed = None

    # -- at failure -------------------------------------------------------

    def failure_section(self, keep: bool = False) -> str:
        """The report section; also writes the diagram next to the captures."""
        self.failed = True
        lines: list[str] = []
        for topo in self.topologies:
            lines += describe_topology(topo)
            lines.append("")
            faults = describe_faults(topo)
            if faults:
                lines += [*faults, ""]
            processes = describe_processes(topo)
            if processes:
                lines += [*processes, ""]
        lines += describe_probes(self.probes)
        if self.ping_stats:
            lines.append(f"ping series ({len(self.ping_stats)})")
            lines += [f"  {stats}" for stats in self.ping_stats[-20:]]
        for matrix in self.matrices:
            lines += ["", "reachability matrix"]
            lines += ["  " + ln for ln in str(matrix).splitlines()]
        lines.append("")
        lines += self._write_diagram()
        if self.captures:
            names = ", ".join(os.path.basename(c) for cap in self.captures for c in cap.paths)
            lines.append(f"  pcaps (complete once the test is torn down): {names}")
        if keep:
            lines.append("kept for debugging (--netns-keep); enter with:")
            for topo in self.topologies:
                if not topo.closed:
                    lines += [f"  {name}: {cmd}" for name, cmd in enter_commands(topo)]
        if self.directory not in SESSION.failed_tests:
            SESSION.failed_tests.append(self.directory)
        text = "\n".join(lines).rstrip() + "\n"
        with open(os.path.join(self.directory, "report.txt"), "w") as f:
            f.write(f"{self.nodeid}\n\n{text}")
        return text

    def _write_diagram(self) -> list[str]:
        from .diagram import reach_edges, render_svg, to_dot, to_mermaid

        self._prepare_directory()
        edges, unknown = reach_edges(self.topologies, self.probes, self.matrices)
        files = ["report.txt", "network.dot", "network.mmd"]
        with open(os.path.join(self.directory, "network.dot"), "w") as f:
            f.write(to_dot(self.topologies, edges, unknown))
        with open(os.path.join(self.directory, "network.mmd"), "w") as f:
            f.write(to_mermaid(self.topologies, edges, unknown))
        where = f"artifacts in {relative(self.directory)}/"
        try:
            self.svg_path = render_svg(os.path.join(self.directory, "network.dot"),
                                       os.path.join(self.directory, "network.svg"))
        except Exception as exc:
            return [f"{where}: {', '.join(files)} (no SVG: {exc})"]
        if self.svg_path:
            files.append(os.path.basename(self.svg_path))
        return [f"{where}: {', '.join(files)}"]

    def svg_base64(self) -> str | None:
        """The diagram for pytest-html's report, which takes images base64-encoded."""
        if not self.svg_path:
            return None
        with open(self.svg_path, "rb") as f:
            return base64.b64encode(f.read()).decode()

    # -- at the end of the test --------------------------------------------

    def stop_captures(self) -> None:
        started = time.perf_counter()
        for cap in self.captures:
            self.links += [ln for ln in cap.stop() if ln not in self.links]
            # a shared topology outlives this test: its close need not stop this capture
            cap.topology.forget_close_hook(cap.stop)
        SESSION.capture_seconds += time.perf_counter() - started

    def finish(self, failed: bool) -> None:
        """After teardown: keep the captures of a failed test (or all), drop the rest."""
        self.stop_captures()
        self.failed = self.failed or failed
        if self.capture == "on-failure" and not self.failed:
            for link in self.links:
                with suppress(FileNotFoundError):
                    os.unlink(link.path)
            with suppress(OSError):
                os.rmdir(self.directory)
        elif self.links:
            SESSION.pcaps += len(self.links)
            SESSION.frames += sum(link.frames for link in self.links)
            SESSION.drops += sum(link.drops for link in self.links)
        self.captures = []

    def keep(self, session: Session) -> None:
        """Leave this test's topologies up after the process exits, for debugging."""
        kept = [t for t in self.topologies if not t.closed]
        objects = [f"{t.label}/{name}: {cmd}" for t in kept for name, cmd in enter_commands(t)]
        mark_kept(session, objects)
        for topo in kept:
            topo.kept = True
            SESSION.kept.append((self.nodeid, topo.label, enter_commands(topo)))
        self.finish(True)
