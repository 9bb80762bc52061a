"""The article's first scenario: a container with a guest-only NIC and no way out.

Useful to prove an app degrades gracefully with no network at all.
"""

from pytest_netns import assert_unreachable, ping


def test_guest_only_nic_reaches_nothing(isolated_container):
    node = isolated_container.node
    assert (isolated_container.iface, isolated_container.ip) == ("eth1", "172.16.0.10")
    assert ping(node, "172.16.0.10").ok  # its own address answers
    assert_unreachable(node, "172.16.0.20")  # same subnet: no one is there
    assert_unreachable(node, "10.201.0.1")  # no route at all: known at once
