"""A dual-stack client and server: the same service over IPv4 and IPv6.

`ipv6=True` gives every segment a unique-local /64 next to its IPv4 subnet
(every address has an `*_ip6` twin), so one test proves the service answers
on both. The probes take `family=6` to use a node's IPv6 address.
"""

from pytest_netns import assert_reachable, wait_for_tcp


def test_server_answers_over_ipv4_and_ipv6(make_bridged_pair, tmp_path):
    pair = make_bridged_pair(ipv6=True)
    server, client = pair.b, pair.a
    if server.container is not None:  # in a container: write the page inside it
        server.exec(["busybox", "sh", "-c", "mkdir -p /www && echo hello > /www/index.html"])
        root = "/www"
    else:  # bare namespace: the host's filesystem
        (tmp_path / "index.html").write_text("hello\n")
        root = str(tmp_path)
    # busybox httpd listens on [::]:8080, which takes IPv4 connections too
    server.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])

    assert_reachable(client, server, family=6)  # ICMPv6 echo
    assert wait_for_tcp(client, server, 8080, family=6).state == "open"
    for url in (f"http://{pair.b_ip}:8080/index.html", f"http://[{pair.b_ip6}]:8080/index.html"):
        code, page = client.exec(["busybox", "wget", "-q", "-O", "-", url])
        assert (code, page.strip()) == (0, "hello"), url
