"""A client that retries gets its answer through a link that loses 30 % of its packets.

The "app" here is the test's own retrying client; the server is busybox's
httpd in the node. `impair(loss=30)` drops 30 % of the packets in each
direction, as a bad Wi-Fi hop would: a single try with a short timeout
often fails, the retrying client does not.
"""

import urllib.error
import urllib.request

from pytest_netns import wait_for_tcp


def fetch_with_retries(url, attempts=20, timeout=1.0):
    """The client under test: try again on any network error."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.read(), attempt
        except (urllib.error.URLError, OSError):
            continue
    raise AssertionError(f"no answer from {url} after {attempts} attempts")


def test_client_retries_through_loss(host_only_link, tmp_path):
    node = host_only_link.node
    if node.container is not None:
        node.exec(["busybox", "sh", "-c", "mkdir -p /www && echo pong > /www/ping"])
        root = "/www"
    else:
        (tmp_path / "ping").write_text("pong\n")
        root = str(tmp_path)
    node.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])
    assert wait_for_tcp("host", node, 8080).state == "open"

    host_only_link.link.impair(loss=30)  # both directions
    tries = []
    for _ in range(5):
        body, attempts = fetch_with_retries(f"http://{host_only_link.node_ip}:8080/ping")
        assert body == b"pong\n"
        tries.append(attempts)
    print(f"5 answers through 30 % loss took {tries} attempts")
