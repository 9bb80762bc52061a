"""Two services on a private bridge of their own.

The bridge sits in a switch namespace, so it works on a host whose Docker
set FORWARD DROP, and neither member has an interface on docker0.
"""

from pytest_netns import assert_reachable, wait_for_tcp


def test_client_fetches_from_server_over_the_bridge(bridged_pair, tmp_path):
    server, client = bridged_pair.b, bridged_pair.a
    if server.container is not None:  # in a container: write the page inside it
        server.exec(["busybox", "sh", "-c", "mkdir -p /www && echo hello > /www/index.html"])
        root = "/www"
    else:  # bare namespace: the host's filesystem
        (tmp_path / "index.html").write_text("hello\n")
        root = str(tmp_path)
    server.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])

    assert_reachable(client, server)
    assert wait_for_tcp(client, server, 8080).state == "open"  # httpd may still be starting
    code, page = client.exec(
        ["busybox", "wget", "-q", "-O", "-", f"http://{bridged_pair.b_ip}:8080/index.html"]
    )
    assert (code, page.strip()) == (0, "hello")
