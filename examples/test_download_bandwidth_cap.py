"""A download over a capped link takes as long as the cap says.

`impair(rate="2mbit")` shapes one direction with a token bucket: the
node's uploads to the test process cannot go faster than 2 Mbit/s, so
256 KiB take at least a second, while the same file is nearly instant
once the cap is cleared.
"""

import time
import urllib.request

from pytest_netns import wait_for_tcp

SIZE = 256 * 1024


def download(url):
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return body, time.monotonic() - started


def test_download_respects_the_cap(host_only_link, tmp_path):
    node = host_only_link.node
    if node.container is not None:
        node.exec(["busybox", "sh", "-c",
                   f"mkdir -p /www && busybox dd if=/dev/zero of=/www/blob bs={SIZE} count=1"])
        root = "/www"
    else:
        (tmp_path / "blob").write_bytes(bytes(SIZE))
        root = str(tmp_path)
    node.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])
    assert wait_for_tcp("host", node, 8080).state == "open"
    url = f"http://{host_only_link.node_ip}:8080/blob"

    link = host_only_link.link
    link.impair(rate="2mbit", direction="node->host")
    body, capped = download(url)
    assert len(body) == SIZE
    assert capped >= 0.8 * SIZE * 8 / 2e6  # at most the rate (tbf lets one burst through)

    link.clear()
    body, free = download(url)
    assert len(body) == SIZE and free < capped
