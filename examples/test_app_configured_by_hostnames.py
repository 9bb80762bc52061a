"""An app configured with host names, not addresses.

Inside every node, the names of the other nodes of its topology resolve
(through /etc/hosts, as for any program), and so do the extra names given
with `aliases=`. So the app's configuration says `api.internal:8080`, as it
would in production, and the test never passes an address into it.
"""

from pytest_netns import wait_for_tcp


def test_client_finds_the_api_by_name(make_topology, tmp_path):
    t = make_topology(ipv6=True)
    t.node("client")
    t.node("api", aliases=["api.internal"])
    lan = t.switch("lan")
    t.connect("client", lan)
    t.connect("api", lan)
    net = t.build()
    api, client = net["api"], net["client"]

    if api.container is not None:
        api.exec(["busybox", "sh", "-c", "mkdir -p /www && echo pong > /www/ping"])
        root = "/www"
    else:
        (tmp_path / "ping").write_text("pong\n")
        root = str(tmp_path)
    api.spawn(["busybox", "httpd", "-f", "-p", "8080", "-h", root])
    assert wait_for_tcp(client, api, 8080).state == "open"

    # the "app": anything that runs in the node and reads its configuration
    config = "API_URL=http://api.internal:8080/ping"
    code, out = client.exec(["busybox", "sh", "-c",
                             f"{config}; busybox wget -q -O - $API_URL"])
    assert (code, out.strip()) == (0, "pong")
    # plain names work for every node, and the test process can ask the topology
    assert client.exec(["busybox", "ping", "-c", "1", "api"])[0] == 0
    assert net.resolve("api.internal") == api.ip
