"""A lab file from a test: the three-tier network that CI also checks with `pytest-netns check`.

`make_lab` builds the file and proves its `expect:` section before the test
body runs (a difference fails the test, with the network in the report);
the test then uses the nodes like any topology's.
"""

from pathlib import Path

from pytest_netns import assert_unreachable, wait_for_tcp

THREE_TIER = Path(__file__).parent / "labs" / "three-tier.yaml"


def test_clients_get_pages_from_the_web_tier(make_lab):
    net = make_lab(THREE_TIER)
    client, web, db = net["client"], net["web"], net["db"]
    assert wait_for_tcp(client, web, 8080).ok
    # by name: every node of the lab resolves the others (and their aliases)
    code, page = client.exec(["busybox", "wget", "-O", "-", "http://www:8080/hostname"])
    assert code == 0 and page.strip(), page

    # the database answers the web tier, and nobody else
    code, answer = web.exec(["busybox", "sh", "-c",
                             f"echo | busybox nc -w 3 {db.ip} 5432"])
    assert "pretend-postgres" in answer
    assert_unreachable(client, db, port=5432)
