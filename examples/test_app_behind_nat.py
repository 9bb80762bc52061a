"""An app client behind NAT talks to a server in the test process.

The upstream side of `nat_uplink` is a link in the host namespace that the
fixture built, so the test can bind `upstream_ip` and see connections arrive
from `public_ip`, the router's masqueraded address, never the node's own.
"""

import socket
import threading


def test_client_behind_nat_reaches_the_test_server(nat_uplink):
    with socket.create_server((nat_uplink.upstream_ip, 0)) as server:
        port = server.getsockname()[1]
        seen = {}

        def serve():
            conn, (peer, _) = server.accept()
            with conn:
                seen["peer"] = peer
                seen["request"] = conn.recv(64)
                conn.sendall(b"ok\n")

        thread = threading.Thread(target=serve)
        thread.start()
        # the "app": anything that runs in the node; here busybox's nc
        code, out = nat_uplink.node.exec(
            ["busybox", "sh", "-c", f"echo hello | busybox nc {nat_uplink.upstream_ip} {port}"]
        )
        thread.join(10)

    assert code == 0, out
    assert "ok" in out
    assert seen == {"peer": nat_uplink.public_ip, "request": b"hello\n"}
