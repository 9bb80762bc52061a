"""A leader election that survives a partition and heals.

Three nodes run a tiny election written in busybox sh: each answers
heartbeats with its name (`nc -ll -e`) and, every half second, asks its
peers; the leader is the first name, in order, among the nodes it can
reach, provided they are a majority. Cut the first node off and the other
two elect a new leader while the lone node steps down; heal, and all three
agree on the first one again.
"""

import time

from pytest_netns import ping

ELECTOR = r"""
name=$1; out=$2; shift 2
busybox mkdir -p "$(busybox dirname "$out")"
busybox nc -ll -p 7000 -e busybox echo "$name" &
while true; do
  seen="$name"
  for peer in "$@"; do
    answer=$(busybox nc -w 1 "$peer" 7000 </dev/null 2>/dev/null)
    [ -n "$answer" ] && seen="$seen $answer"
  done
  count=$(echo $seen | busybox wc -w)
  if [ "$count" -ge 2 ]; then
    echo $seen | busybox tr ' ' '\n' | busybox sort | busybox head -n1 > "$out.tmp"
  else
    echo none > "$out.tmp"
  fi
  busybox mv "$out.tmp" "$out"
  busybox sleep 0.5
done
"""


def leaders(nodes, files):
    """What each node believes: its leader's name, or "none"."""
    seen = {}
    for name, node in nodes.items():
        code, out = node.exec(["busybox", "cat", files[name]])
        seen[name] = out.strip() if code == 0 else "?"
    return seen


def wait_for(nodes, files, expected, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        seen = leaders(nodes, files)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def test_election_survives_a_partition(make_topology, tmp_path):
    t = make_topology(label="cluster")
    lan = t.switch("lan")
    for name in ("n1", "n2", "n3"):
        t.node(name)
        t.connect(name, lan)
    net = t.build()
    nodes = {name: net[name] for name in ("n1", "n2", "n3")}
    files = {name: (f"/tmp/leader-{name}" if node.container is not None
                    else str(tmp_path / f"leader-{name}")) for name, node in nodes.items()}
    for name, node in nodes.items():
        peers = [other.ip for other_name, other in nodes.items() if other_name != name]
        node.spawn(["busybox", "sh", "-c", ELECTOR, "elector", name, files[name], *peers])

    everyone_n1 = {"n1": "n1", "n2": "n1", "n3": "n1"}
    assert wait_for(nodes, files, everyone_n1) == everyone_n1

    with net.partition([nodes["n1"]], [nodes["n2"], nodes["n3"]]):
        assert not ping(nodes["n2"], nodes["n1"]).ok
        split = {"n1": "none", "n2": "n2", "n3": "n2"}  # the majority side carries on
        assert wait_for(nodes, files, split) == split

    assert wait_for(nodes, files, everyone_n1) == everyone_n1  # healed
