"""The opt-in real uplink: a NAT router that may reach beyond this machine.

This is the "Internet access" scenario of the article the fixtures come
from ("Advanced Docker networking"), and the one place pytest-netns
changes the host. It happens only when a test asks for it
(`make_nat_uplink(real_uplink=True)`), and every change is recorded first
in /run/pytest-netns/uplink-<session>.json, so that `restore()`, a sweep
after a crash, or `pytest-netns cleanup` can put the host back exactly:

1. `net.ipv4.ip_forward` is set to 1 if it was 0 (restored to its old value);
2. iptables rules, each tagged with the comment `pytest-netns:<session>`:
   - nat POSTROUTING: masquerade the upstream subnet leaving the default
     route's interface;
   - filter FORWARD (inserted first, ahead of Docker's DROP policy): accept
     from the upstream link to that interface, and established replies back.
3. The router namespace gets a default route via the host end of the link.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field

from ..errors import MissingToolError, NetnsError
from ..ownership import STATE_DIR
from .rtnl import Rtnl

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


@dataclass
class UplinkChanges:
    """Everything done to the host, in the order it was done."""

    session: str
    ip_forward_before: str | None = None
    rules: list[list[str]] = field(default_factory=list)  # iptables argv after the table

    @property
    def path(self) -> str:
        return state_file(self.session)

    def save(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        with open(self.path, "w") as f:
            json.dump(asdict(self), f)


def state_file(session_id: str) -> str:
    return os.path.join(STATE_DIR, f"uplink-{session_id}.json")


def default_route_interface() -> str:
    """The host's default route interface (where the uplink's traffic leaves)."""
    rt = Rtnl()
    try:
        names = {link.index: link.ifname for link in rt.links()}
        for route in rt.routes():
            if route.is_default and route.oif in names:
                return names[route.oif]
    finally:
        rt.close()
    raise NetnsError(
        "real_uplink=True needs a default route on the host, and there is none; "
        "leave real_uplink off to keep the NAT uplink on this machine"
    )


def _iptables() -> str:
    found = shutil.which("iptables")
    if not found:
        raise MissingToolError("real_uplink=True needs iptables: apt-get install iptables")
    return found


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {done.stderr.strip()}")


def install(session_id: str, upstream_iface: str, upstream_subnet: str) -> UplinkChanges:
    """Open the host for the uplink; record each change before making it."""
    out_iface = default_route_interface()
    tag = f"pytest-netns:{session_id}"
    changes = UplinkChanges(session_id)
    try:
        with open(IP_FORWARD) as f:
            before = f.read().strip()
        if before != "1":
            changes.ip_forward_before = before
            changes.save()
            with open(IP_FORWARD, "w") as f:
                f.write("1")
        wanted = [
            ["nat", "POSTROUTING", "-s", upstream_subnet, "-o", out_iface],
            ["filter", "FORWARD", "-i", upstream_iface, "-o", out_iface],
            ["filter", "FORWARD", "-i", out_iface, "-o", upstream_iface,
             "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"],
        ]
        for spec in wanted:
            table, chain, *match = spec
            target = "MASQUERADE" if table == "nat" else "ACCEPT"
            rule = [table, chain, *match, "-m", "comment", "--comment", tag, "-j", target]
            changes.rules.append(rule)
            changes.save()
            op = "-A" if table == "nat" else "-I"
            _run([_iptables(), "-t", table, op, chain, *rule[2:]])
    except BaseException:
        restore(changes)
        raise
    return changes


def restore(changes: UplinkChanges) -> list[str]:
    """Undo what `install` did, newest first; return what was undone."""
    undone = []
    for rule in reversed(changes.rules):
        table, chain, *rest = rule
        done = subprocess.run([_iptables(), "-t", table, "-D", chain, *rest],
                              capture_output=True, timeout=30, check=False)
        if done.returncode == 0:
            undone.append(f"removed iptables rule -t {table} {chain} {' '.join(rest)}")
    if changes.ip_forward_before is not None:
        with open(IP_FORWARD, "w") as f:
            f.write(changes.ip_forward_before)
        undone.append(f"restored net.ipv4.ip_forward={changes.ip_forward_before}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(changes.path)
    return undone


def restore_session(session_id: str) -> list[str]:
    """Undo a (possibly crashed) session's uplink from its state file."""
    try:
        with open(state_file(session_id)) as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    return restore(UplinkChanges(**data))
