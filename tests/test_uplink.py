"""The opt-in real uplink: installed rules and their removal only.

No traffic is sent off the machine here: the checks read the host's
rulesets and the router's routes, and compare the host before and after.
"""

from __future__ import annotations

from typing import Any

import pytest
from netcheck import forwarding_sysctls, host_firewall, iproute_json

from pytest_netns.kernel import uplink
from pytest_netns.ownership import current_session


@pytest.fixture(scope="session")
def netns_backend() -> str:
    return "namespace"  # the host-side changes do not depend on the backend


def test_real_uplink_installs_tagged_rules_and_restores_them(
    changes_host_firewall: None, make_nat_uplink: Any
) -> None:
    before = host_firewall(), forwarding_sysctls()
    nat = make_nat_uplink(real_uplink=True)
    tag = f"pytest-netns:{current_session().id}"
    rules = [line for line in host_firewall().splitlines() if tag in line]
    out_iface = uplink.default_route_interface()
    assert any("MASQUERADE" in r and nat.upstream_subnet in r and out_iface in r for r in rules)
    assert any("ACCEPT" in r and nat.upstream_iface in r and "ESTABLISHED" in r for r in rules)
    assert any("ACCEPT" in r and f"-i {nat.upstream_iface}" in r for r in rules)
    defaults = [r for r in iproute_json(nat.router.netns, "-4", "route") if r["dst"] == "default"]
    assert [r["gateway"] for r in defaults] == [nat.upstream_ip]
    assert forwarding_sysctls()["net/ipv4/ip_forward"] == "1"

    nat.close()
    assert (host_firewall(), forwarding_sysctls()) == before
    assert not [line for line in host_firewall().splitlines() if tag in line]


def test_without_opt_in_the_host_is_untouched(
    stable_host_firewall: None, make_nat_uplink: Any
) -> None:
    before = host_firewall(), forwarding_sysctls()
    nat = make_nat_uplink()
    assert (host_firewall(), forwarding_sysctls()) == before
    assert not [r for r in iproute_json(nat.router.netns, "-4", "route")
                if r["dst"] == "default"]


def test_a_crashed_sessions_uplink_is_restored_from_its_state_file(
    changes_host_firewall: None, make_host_only_link: Any,
) -> None:
    # a real link to hang the rules on; the "crashed" session id is made up
    link = make_host_only_link()
    before = host_firewall()
    changes = uplink.install("deadbeef", link.host_iface, link.subnet)
    assert "pytest-netns:deadbeef" in host_firewall()
    undone = uplink.restore_session("deadbeef")
    assert len(undone) == len(changes.rules)
    assert host_firewall() == before
    assert uplink.restore_session("deadbeef") == []
