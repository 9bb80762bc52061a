"""Your own testcontainers container, put behind NAT by pytest-netns.

The container is started by testcontainers as usual (here with no network
of its own); pytest-netns attaches it as a node, builds the topology around
it, and afterwards removes only the interfaces it added.
"""

import os
import socket
import threading

import pytest

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # Ryuk needs a registry


@pytest.mark.netns_docker
def test_testcontainers_app_behind_nat(make_nat_uplink, netns_image):
    from testcontainers.core.container import DockerContainer

    app = DockerContainer(netns_image).with_command("sleep 600").with_kwargs(
        network_mode="none", init=True
    )
    with app:
        nat = make_nat_uplink(container=app)
        with socket.create_server((nat.upstream_ip, 0)) as server:
            port = server.getsockname()[1]
            peers = []
            thread = threading.Thread(target=lambda: peers.append(server.accept()[1][0]))
            thread.start()
            code, out = nat.node.exec(["sh", "-c", f"echo hi | nc {nat.upstream_ip} {port}"])
            thread.join(10)
        assert code == 0, out
        assert peers == [nat.public_ip]
        nat.close()
        # only our interface left the container; the container itself is still running
        container = app.get_wrapped_container()
        container.reload()
        assert container.status == "running"
        # the closed topology's node refuses commands now; the container is still yours
        links = container.exec_run(["ip", "-o", "link"]).output.decode()
        assert "eth1" not in links
