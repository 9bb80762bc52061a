"""A database and its clients on one network, built once for the whole module.

A module-scoped fixture asks the session-scoped `netns_factory` for the
network; every test of the module uses the same one, and it is removed
when the module ends (the `with` block). It is also protected by the crash
watchdog, and described in the failure report of any test that fails
while it is up. busybox `nc` stands in for the database server.
"""

import time

import pytest

from pytest_netns import reachability_matrix


@pytest.fixture(scope="module")
def db_network(netns_factory):
    t = netns_factory.topology(label="db-network", ipv6=True)
    t.node("db", aliases=["postgres"])
    for name in ("app1", "app2"):
        t.node(name)
    lan = t.switch("lan")
    for name in ("db", "app1", "app2"):
        t.connect(name, lan)
    with t.build() as net:
        # a "database" answering every connection on port 5432
        net["db"].spawn(["busybox", "nc", "-ll", "-p", "5432", "-e", "echo", "id=1 name=alice"])
        yield net


def query(net, client, host="postgres"):
    """What a client gets from the database (retrying while the server starts)."""
    out = ""
    for _ in range(50):
        code, out = net[client].exec(["busybox", "nc", "-w", "2", host, "5432"])
        if code == 0 and out.strip():
            return out.strip()
        time.sleep(0.1)
    raise AssertionError(f"{client} got nothing from {host}:5432: {out!r}")


def test_first_app_reads_a_row(db_network):
    assert query(db_network, "app1") == "id=1 name=alice"


def test_second_app_reads_the_same_row_over_ipv6(db_network):
    address = db_network["db"].ip6
    assert query(db_network, "app2", address) == "id=1 name=alice"


def test_every_node_reaches_every_other(db_network):
    reachability_matrix(db_network).assert_matches(lambda a, b: True)
