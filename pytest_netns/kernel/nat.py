"""Masquerade inside a router namespace.

The rules live in the router's own namespace, whose ruleset starts empty and
disappears with it, so the host's firewall is never touched. The table (or
rule comment) carries the session id so a sweep can recognise it.
nftables is used when `nft` is installed, iptables otherwise; both run as a
child forked from the router's namespace thread, never on a hot path.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from ..errors import MissingToolError, TopologyBuildError

log = logging.getLogger(__name__)

#: runs a host program inside the router's namespace: (argv, stdin) -> (status, output)
ToolRunner = Callable[[list[str], "bytes | None"], tuple[int, str]]


def masquerade_ruleset(table: str, out_iface: str, ipv6: bool = False) -> str:
    """An nftables ruleset masquerading what leaves `out_iface`: a table of family `ip`,
    and with `ipv6` a twin of family `ip6` (IPv6 NAT) under the same name."""
    families = ("ip", "ip6") if ipv6 else ("ip",)
    return "".join(
        f"table {family} {table} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{out_iface}" masquerade\n'
        "  }\n"
        "}\n"
        for family in families
    )


def enable_masquerade(run: ToolRunner, table: str, out_iface: str, ipv6: bool = False) -> str:
    """Masquerade everything leaving `out_iface` (IPv6 too with `ipv6`); return which
    tool did it."""
    nft = shutil.which("nft")
    if nft:
        _run(run, [nft, "-f", "-"], masquerade_ruleset(table, out_iface, ipv6))
        return "nftables"
    tools = [shutil.which("iptables")] + ([shutil.which("ip6tables")] if ipv6 else [])
    if all(tools):
        comment = table.replace("_", "-")
        for tool in tools:
            assert tool is not None
            _run(
                run,
                [tool, "-t", "nat", "-A", "POSTROUTING", "-o", out_iface,
                 "-m", "comment", "--comment", comment, "-j", "MASQUERADE"],
            )
        return "iptables"
    raise MissingToolError(
        "NAT needs nftables or iptables (and ip6tables for IPv6), and `nft` is not installed: "
        "apt-get install nftables (or iptables)"
    )


def _run(run: ToolRunner, argv: list[str], stdin: str | None = None) -> None:
    log.debug("running %s", " ".join(argv))
    code, out = run(argv, stdin.encode() if stdin else None)
    if code != 0:
        raise TopologyBuildError(f"`{' '.join(argv)}` failed ({code}): {out.strip()}")
