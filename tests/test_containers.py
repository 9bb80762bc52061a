"""Containers as their images mean them to run, and containers that go away behind our back.

The images are built here, from nothing but the host's static busybox (no
registry, as everywhere in this project): an app image with its own
ENTRYPOINT and CMD, one whose only file is a server (no busybox, no
shell), one with only a CMD, and one with no command at all. That each
runs as its author meant is seen from outside: the host connects to the
port the image's own command listens on.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from netcheck import running

from pytest_netns import ContainerError, NetnsError, ping, probe_tcp, wait_for_tcp
from pytest_netns.nodes.engine import docker_client, remove_container
from pytest_netns.nodes.images import find_static_busybox

DOCKERFILES = {
    # an app image: its ENTRYPOINT is the server, its CMD the default arguments
    "entrypoint": ['COPY busybox /bin/busybox',
                   'ENTRYPOINT ["/bin/busybox", "httpd", "-f", "-h", "/"]',
                   'CMD ["-p", "8080"]'],
    # nothing but the server: busybox picks its applet from argv[0]
    "nobusybox": ['COPY busybox /httpd', 'ENTRYPOINT ["/httpd", "-f", "-p", "8080", "-h", "/"]'],
    "cmdonly": ['COPY busybox /bin/busybox',
                'CMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"]'],
    "nocommand": ['COPY busybox /bin/busybox'],
}


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    """Tag of each test image, built for this module and removed after it."""
    from conftest import need_docker

    need_docker()
    client = docker_client()
    busybox = find_static_busybox()
    tags = {}
    try:
        for name, lines in DOCKERFILES.items():
            tag = f"pytest-netns-test/{name}:fd{uuid.uuid4().hex[:8]}"
            dockerfile = ("FROM scratch\n" + "\n".join(lines) + "\n").encode()
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(busybox, arcname="busybox")
                info = tarfile.TarInfo("Dockerfile")
                info.size = len(dockerfile)
                tar.addfile(info, io.BytesIO(dockerfile))
            buf.seek(0)
            client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, pull=False,
                                labels={"test": "pytest-netns-test-image"})
            tags[name] = tag
        yield tags
    finally:
        for tag in tags.values():
            client.images.remove(tag, force=True)


def test_an_app_image_runs_its_own_entrypoint_and_cmd(
    make_host_only_link: Any, images: dict[str, str], docker_only: None
) -> None:
    """Issue 11 #8: the image's ENTRYPOINT got busybox arguments appended."""
    link = make_host_only_link(image=images["entrypoint"])
    assert wait_for_tcp("host", link.node, 8080).ok
    assert running(link.node.netns, "/bin/busybox httpd -f -h / -p 8080")


def test_command_replaces_the_cmd_and_goes_to_the_entrypoint(
    make_host_only_link: Any, images: dict[str, str], docker_only: None
) -> None:
    """As with `docker run IMAGE ARGS...`."""
    link = make_host_only_link(image=images["entrypoint"], command=["-p", "8081"])
    assert wait_for_tcp("host", link.node, 8081).ok
    assert probe_tcp("host", link.node, 8080).state == "closed"


def test_an_image_without_busybox_runs_as_its_author_meant(
    make_host_only_link: Any, images: dict[str, str], docker_only: None
) -> None:
    """Issue 11 #8: an app image without busybox failed to start (status 127)."""
    link = make_host_only_link(image=images["nobusybox"])
    assert wait_for_tcp("host", link.node, 8080).ok
    assert running(link.node.netns, "/httpd -f -p 8080 -h /")


def test_an_image_with_only_a_cmd_runs_it(
    make_host_only_link: Any, images: dict[str, str], docker_only: None
) -> None:
    link = make_host_only_link(image=images["cmdonly"])
    assert wait_for_tcp("host", link.node, 8080).ok


def test_an_image_without_a_command_sleeps_to_be_execd_into(
    make_host_only_link: Any, images: dict[str, str], docker_only: None
) -> None:
    link = make_host_only_link(image=images["nocommand"])
    assert running(link.node.netns, "/bin/busybox sleep 2147483647")
    assert link.node.exec(["/bin/busybox", "echo", "in"]) == (0, "in\n")


def test_an_own_command_that_exits_at_once_is_a_clear_error(
    make_host_only_link: Any, images: dict[str, str], docker_only: None
) -> None:
    with pytest.raises(ContainerError, match=r"exited at once.*command=\[\.\.\.\] that does"):
        make_host_only_link(image=images["entrypoint"], command=["-p", "not-a-port"])


def test_a_force_removed_attached_container_is_noticed(
    make_host_only_link: Any, user_container: Any
) -> None:
    """Issue 11 #10: its pinned namespace went on answering probes at its old address."""
    link = make_host_only_link(container=user_container)
    assert ping("host", link.node).ok
    remove_container(user_container)  # `docker rm -f`, behind pytest-netns's back
    for attempt in (lambda: ping("host", link.node), lambda: ping(link.node, link.host_ip),
                    lambda: link.node.exec(["/bin/busybox", "true"])):
        with pytest.raises(ContainerError, match="is gone") as info:
            attempt()
        assert user_container.name in str(info.value) and isinstance(info.value, NetnsError)
    link.close()  # and the topology still comes down cleanly
