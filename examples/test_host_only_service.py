"""The test process talks to a service in the node over a private host-only link."""

import urllib.request

from pytest_netns import wait_for_tcp


def test_fetch_from_node_over_host_only_link(host_only_link, tmp_path):
    node = host_only_link.node
    if node.container is not None:
        node.exec(["busybox", "sh", "-c", "mkdir -p /www && echo hi > /www/index.html"])
        root = "/www"
    else:
        (tmp_path / "index.html").write_text("hi\n")
        root = str(tmp_path)
    node.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])
    assert wait_for_tcp("host", node, 8080).state == "open"  # httpd may still be starting

    url = f"http://{host_only_link.node_ip}:8080/index.html"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.read() == b"hi\n"
