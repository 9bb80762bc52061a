"""What a user does with Docker's own API instead of pytest-netns.

The docker SDK's `networks.create`, `connect`, `disconnect` and `remove`,
and a user-defined bridge network with containers run on it. Every network
and container carries the benchmark's tag in its name and a label, so only
our own objects are ever removed.

Teardown steps (disconnect, container and network removal) run under
pytest-netns's machine-wide teardown lock, as the library's own removals do:
Docker 20.10 can deadlock its daemon when two endpoint teardowns overlap
(see `containers.teardown_lock`). Both sides of a comparison pay for it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pytest_netns.nodes.engine import remove_container, teardown_lock

LABEL = "pytest-netns.benchmark"


def network_round_trip(client: Any, container: Any, tag: str, n: int) -> None:
    """A private network for a running container: create, connect, disconnect, remove."""
    net = client.networks.create(f"{tag}-net{n}", driver="bridge",
                                 labels={LABEL: tag})
    try:
        net.connect(container)
        with teardown_lock():
            net.disconnect(container)
    finally:
        with teardown_lock():
            net.remove()


def bridged_pair(client: Any, image: str, command: list[str], tag: str, n: int,
                 concurrent: bool = False) -> None:
    """A user-defined bridge network with two containers on it, then teardown.

    Started one after the other (what `docker run; docker run` in a
    script does), or both at once when `concurrent`.
    """
    net = client.networks.create(f"{tag}-pair{n}", driver="bridge",
                                 labels={LABEL: tag})
    started: list[Any] = []

    def run(name: str) -> Any:
        ctr = client.containers.run(image, command, detach=True, name=f"{tag}-{n}{name}",
                                    network=net.name, init=True, labels={LABEL: tag})
        started.append(ctr)
        return ctr

    try:
        if concurrent:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(run, ("a", "b")))
        else:
            run("a")
            run("b")
    finally:
        for ctr in started:
            remove_container(ctr)
        with teardown_lock():
            net.remove()


def exec_ping(container: Any, ip: str) -> bool:
    """`docker exec <ctr> ping -c1 -W1 ip` through the SDK; True on a reply."""
    result = container.exec_run(["ping", "-c1", "-W1", ip])
    return int(result.exit_code) == 0


def leftovers(client: Any, tag: str) -> list[str]:
    """Containers and networks of this benchmark run that still exist."""
    found = [f"container {c.name}" for c in
             client.containers.list(all=True, filters={"label": f"{LABEL}={tag}"})]
    found += [f"network {n.name}" for n in
              client.networks.list(filters={"label": f"{LABEL}={tag}"})]
    return found
