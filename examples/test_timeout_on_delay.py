"""A client's timeout fires when the network is slow, and not when it is not.

`impair(delay="2s")` holds every packet from the node for two seconds, so
a request with a one-second timeout must fail with a timeout, which is the
behaviour under test. Clearing the impairment brings the link back.
"""

import socket
import urllib.error
import urllib.request

import pytest

from pytest_netns import ping_stats, wait_for_tcp


def test_timeout_fires_on_a_two_second_delay(host_only_link, tmp_path):
    node = host_only_link.node
    if node.container is not None:
        node.exec(["busybox", "sh", "-c", "mkdir -p /www && echo hi > /www/index.html"])
        root = "/www"
    else:
        (tmp_path / "index.html").write_text("hi\n")
        root = str(tmp_path)
    node.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])
    assert wait_for_tcp("host", node, 8080).state == "open"
    url = f"http://{host_only_link.node_ip}:8080/index.html"

    with host_only_link.link.impaired(delay="2s", direction="node->host"):
        slow = ping_stats("host", node, count=1, timeout=5)
        assert slow.rtt_min > 1500  # the delay is really there
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            urllib.request.urlopen(url, timeout=1)

    with urllib.request.urlopen(url, timeout=5) as resp:  # as it was before
        assert resp.read() == b"hi\n"
