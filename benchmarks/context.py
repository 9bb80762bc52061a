"""What every benchmark suite shares: repetitions, the Docker client, names, results.

One `Context` per run. Everything a suite creates is named with the run's
`tag` (links, namespaces, containers, docker networks) or made through the
pytest-netns session (which tags its own objects), so the final leak check
looks only at this run's objects, never at other people's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .harness import Row

IMAGE = "pytest-netns/busybox:1"
SLEEP = ["/bin/busybox", "sleep", "3600"]


@dataclass
class Context:
    rounds: int  # repetitions of a fast measurement (tens of milliseconds)
    slow_rounds: int  # repetitions of a slow one (containers, hundreds of ms)
    docker: Any = None  # docker SDK client, or None without an engine
    session: Any = None  # the pytest-netns session the benchmark runs in
    tag: str = field(default_factory=lambda: "pb" + secrets.token_hex(2))
    rows: list[Row] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)  # Markdown sections
    notes: list[str] = field(default_factory=list)  # extra lines for RESULTS.md
    counter: int = 0

    def next(self) -> int:
        """A fresh number for names made in this run."""
        self.counter += 1
        return self.counter

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print("  " + " | ".join(x for x in (
            f"{row.group}: {row.what}", row.ours, row.theirs, row.ratio_text, row.target,
            row.met_text) if x), flush=True)

    def reserve_subnet(self) -> Any:
        """A /24 nobody else uses, for the hand-made (CLI) recipes; `release` it after."""
        from pytest_netns.topology.subnets import reserve

        (net,) = reserve([24], owner=f"benchmark:{self.tag}")
        return net

    def release_subnet(self, net: Any) -> None:
        from pytest_netns.topology.subnets import release

        release([net])

    def running_container(self, **kw: Any) -> Any:
        """A started container of this run (the caller removes it)."""
        from .docker_native import LABEL

        ctr = self.docker.containers.run(IMAGE, SLEEP, detach=True, init=True,
                                         name=f"{self.tag}-ctr{self.next()}",
                                         labels={LABEL: self.tag}, **kw)
        ctr.reload()
        return ctr
