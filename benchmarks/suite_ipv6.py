"""IPv6, names and shared topologies: what each costs, side by side with going without.

- building with and without `ipv6=True` (bridged_pair and nat_uplink on
  namespaces, bridged_pair with containers), interleaved round by round;
  the target is at most 1.3x;
- duplicate address detection: how long after the addresses are added the
  first IPv6 ping gets through, with `nodad` (what pytest-netns does) and
  with DAD left on;
- a command run in a namespace node, with the node's private /etc/hosts
  (the thread's own mount namespace) and forked the way it was before
  names existed; and the one-time cost of entering that mount namespace;
- a suite of 20 tests against one container network: each test building its
  own (`make_bridged_pair`) or the module sharing one (`netns_factory`), as
  whole pytest runs in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

from .context import IMAGE, SLEEP, Context
from .harness import Row, Sample, absolute, compare, fmt_s, interleave


def _ours(make: Any) -> Any:
    """A contender: build and close with `make()`; the janitor drained outside the time."""
    from pytest_netns.kernel.janitor import janitor

    def run() -> float:
        started = time.perf_counter()
        make().close()
        took = time.perf_counter() - started
        janitor().drain()
        return took

    return run


def _ratio_row(group: str, what: str, with_v6: Sample, without: Sample) -> Row:
    """`with_v6` against `without`: the ratio is how many times slower IPv6 makes it."""
    ratio = with_v6.median / without.median
    return Row(group, what, fmt_s(with_v6.median), fmt_s(without.median), ratio,
               "<= 1.3x slower", ratio <= 1.3,
               "ours = with ipv6=True, theirs = without; ratio = how many times slower")


def build_cost(ctx: Context) -> None:
    """bridged_pair and nat_uplink with and without ipv6=True, on both backends."""
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "ipv6"
    for recipe in ("bridged_pair", "nat_uplink"):
        def make(ipv6: bool, recipe: str = recipe) -> Any:
            return getattr(recipes, recipe)(TopologyBuilder(backend="namespace", verify=False,
                                                            ipv6=ipv6))

        samples = interleave(ctx.rounds, 2, v4=_ours(lambda: make(False)),
                             v6=_ours(lambda: make(True)))
        ctx.add(_ratio_row(group, f"{recipe} on namespaces, setup+close",
                           samples["v6"], samples["v4"]))

    def verified(ipv6: bool) -> Any:
        return recipes.bridged_pair(TopologyBuilder(backend="namespace", ipv6=ipv6))

    samples = interleave(max(ctx.rounds // 2, 3), 1, v4=_ours(lambda: verified(False)),
                         v6=_ours(lambda: verified(True)))
    ctx.add(_ratio_row(group, "bridged_pair on namespaces, setup+close with self-verification "
                       "(IPv6 pings too)", samples["v6"], samples["v4"]))
    if ctx.docker is None:
        return

    def containers(ipv6: bool) -> Any:
        return recipes.bridged_pair(TopologyBuilder(backend="docker", image=IMAGE,
                                                    command=SLEEP, verify=False, ipv6=ipv6))

    samples = interleave(ctx.slow_rounds, 1, v4=_ours(lambda: containers(False)),
                         v6=_ours(lambda: containers(True)))
    ctx.add(_ratio_row(group, "bridged_pair with containers, setup+close",
                       samples["v6"], samples["v4"]))


def dad(ctx: Context) -> None:
    """From build() to the first IPv6 ping that gets through: as built (no DAD anywhere)
    vs the same build with duplicate address detection left on."""
    from pytest_netns.kernel import rtnl
    from pytest_netns.probes.api import ping
    from pytest_netns.topology import construct, recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "ipv6"
    add_address = rtnl.Rtnl.add_address
    ipv6_on = dict(construct.IPV6_ON)

    def with_dad(self: Any, index: int, address: str, prefixlen: int,
                 nodad: bool = False) -> None:
        add_address(self, index, address, prefixlen, nodad=False)

    def usable_after(dad_on: bool) -> float:
        if dad_on:  # what pytest-netns would do if it let the kernel check for duplicates
            rtnl.Rtnl.add_address = with_dad  # type: ignore[method-assign]
            construct.IPV6_ON.pop("net.ipv6.conf.default.accept_dad")
        try:
            started = time.perf_counter()
            pair = recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=False,
                                                        ipv6=True))
            try:
                while not ping(pair.a, pair.b, timeout=0.05, family=6).ok:
                    if time.perf_counter() - started > 10:
                        raise RuntimeError("no IPv6 ping within 10 s")
                return time.perf_counter() - started
            finally:
                pair.close()
        finally:
            rtnl.Rtnl.add_address = add_address  # type: ignore[method-assign]
            construct.IPV6_ON.update(ipv6_on)

    rounds = max(ctx.slow_rounds // 2, 5)
    samples = interleave(rounds, 1, nodad=lambda: usable_after(False),
                         dad=lambda: usable_after(True))
    ctx.add(compare(group, "bridged_pair(ipv6=True): build() to the first IPv6 ping through, "
                    "no DAD (ours) vs DAD left on", samples["nodad"], samples["dad"], None,
                    note="DAD holds an address tentative for about a second"))


def exec_cost(ctx: Context) -> None:
    """A command in a namespace node, with its private /etc/hosts and without."""
    from pytest_netns.topology import recipes
    from pytest_netns.topology.builder import TopologyBuilder

    group = "names"
    pair = recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=False))
    try:
        node = pair.a

        def with_hosts() -> None:
            code, _ = node.exec(["true"])
            assert code == 0

        def without() -> None:  # the fork pytest-netns made before names existed
            code, _ = node.handle.run(["true"])
            assert code == 0

        samples = interleave(ctx.rounds * 3, 5, names=with_hosts, plain=without)
        ratio = samples["names"].median / samples["plain"].median
        ctx.add(Row(group, "exec(['true']) in a namespace node, with its private /etc/hosts "
                    "vs a plain fork inside it", fmt_s(samples["names"].median),
                    fmt_s(samples["plain"].median), ratio,
                    note="the bind mount lives in the node's own mount namespace, which the "
                    "worker forking each process enters and leaves (two setns a process)"))
    finally:
        pair.close()
    first = Sample()
    for _ in range(max(ctx.rounds // 2, 3)):
        fresh = recipes.bridged_pair(TopologyBuilder(backend="namespace", verify=False))
        try:
            started = time.perf_counter()
            fresh.a.hosts.mount(fresh.a.handle)
            first.times.append(time.perf_counter() - started)
        finally:
            fresh.close()
    ctx.add(absolute(group, "once per namespace node, at its first process: enter a mount "
                     "namespace of its own, bind-mount its hosts file", first.median, None))


SUITE_PER_TEST = '''
import pytest

@pytest.mark.parametrize("n", range(20))
def test_by_name(make_bridged_pair, n):
    pair = make_bridged_pair()
    assert pair.a.exec(["/bin/busybox", "ping", "-c1", "-W1", "b"])[0] == 0
'''

SUITE_SHARED = '''
import pytest

@pytest.fixture(scope="module")
def pair(netns_factory):
    with netns_factory.bridged_pair() as net:
        yield net

@pytest.mark.parametrize("n", range(20))
def test_by_name(pair, n):
    assert pair.a.exec(["/bin/busybox", "ping", "-c1", "-W1", "b"])[0] == 0
'''


def shared_suite(ctx: Context) -> None:
    """20 container tests: a network per test vs one network shared by the module."""
    group = "netns_factory"
    with tempfile.TemporaryDirectory(prefix="pn-bench-") as tmp:
        paths = {}
        for name, text in (("per_test", SUITE_PER_TEST), ("shared", SUITE_SHARED)):
            paths[name] = os.path.join(tmp, f"test_{name}.py")
            with open(paths[name], "w") as f:
                f.write(textwrap.dedent(text))

        def run(name: str) -> float:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "-p", "no:xdist", "--netns-backend=docker", f"--netns-image={IMAGE}",
                 paths[name]], cwd=tmp, capture_output=True, text=True, timeout=600,
                check=False)
            took = time.perf_counter() - started
            if done.returncode != 0 or "20 passed" not in done.stdout:
                raise RuntimeError(f"{name} suite failed:\n{done.stdout[-2000:]}")
            return took

        rounds = max(ctx.slow_rounds // 3, 1)
        samples = interleave(rounds, 0, shared=lambda: run("shared"),
                             per_test=lambda: run("per_test"))
    ctx.add(compare(group, "20 tests on containers: one bridged_pair shared by the module vs "
                    "one per test (whole pytest runs)", samples["shared"],
                    samples["per_test"], None,
                    note="each test pings b by name from a; pytest start-up included in both"))


def ipv6(ctx: Context) -> None:
    build_cost(ctx)
    dad(ctx)


def names(ctx: Context) -> None:
    exec_cost(ctx)


def shared(ctx: Context) -> None:
    shared_suite(ctx)
