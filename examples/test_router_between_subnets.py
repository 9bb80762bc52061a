"""A router between two subnets, built with the topology builder.

Nodes on a segment that has a router get a default route via it, so the
client reaches the server in the other subnet through the router only.
"""

from pytest_netns import assert_reachable, assert_unreachable


def test_router_forwards_between_subnets(make_topology):
    topo = make_topology()
    client, server, router = topo.node("client"), topo.node("server"), topo.router("r1")
    lan = topo.switch("lan", subnet="10.201.1.0/24")
    dmz = topo.switch("dmz", subnet="10.201.2.0/24")
    topo.connect(client, lan)
    topo.connect(router, lan)
    topo.connect(router, dmz)
    topo.connect(server, dmz)
    net = topo.build()

    assert_reachable(net["client"], net["server"])
    assert_reachable(net["server"], net["client"])

    # take the router's leg on the dmz down: the path is gone
    net["r1"].exec(["ip", "link", "set", "eth2", "down"])
    assert_unreachable(net["client"], net["server"])
