"""Did the run leave anything behind? Only this run's objects are looked at.

Other people run tests on the same machine at the same time, so the host's
state as a whole changes under us. Every object this run makes carries
either the run's tag (hand-made links, namespaces, Docker networks and
containers) or the pytest-netns session id (everything the library makes),
so the check compares only lines that mention one of the two.
"""

from __future__ import annotations

import os
import subprocess

from .context import Context

# the shared tool sits beside the checkout (../shared), as CI lays it out
NETSTATE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "tools", "netstate")


def _lines() -> set[str]:
    if os.access(NETSTATE, os.X_OK):
        done = subprocess.run([NETSTATE], capture_output=True, text=True, check=False)
        return set(done.stdout.splitlines())
    # without the shared tool: links and namespaces, which is what matters most
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    lines = {f"link {ln.split(':')[1].strip()}" for ln in out.splitlines() if ":" in ln}
    if os.path.isdir("/run/netns"):
        lines |= {f"netns {n}" for n in os.listdir("/run/netns")}
    return lines


def _ours(ctx: Context, lines: set[str]) -> set[str]:
    marks = (ctx.tag, ctx.session.id)
    found = {ln for ln in lines if any(m in ln for m in marks)}
    if ctx.docker is not None:
        from .docker_native import leftovers

        found |= set(leftovers(ctx.docker, ctx.tag))
        for ctr in ctx.docker.containers.list(
                all=True, filters={"label": f"pytest-netns.session={ctx.session.id}"}):
            found.add(f"container {ctr.name}")
    return found


def snapshot(ctx: Context) -> set[str]:
    return _ours(ctx, _lines())


def compare(ctx: Context, before: set[str]) -> list[str]:
    """This run's objects that exist now and did not before."""
    return sorted(_ours(ctx, _lines()) - before)
