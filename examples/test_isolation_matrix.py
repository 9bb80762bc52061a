"""A CI isolation check: who may talk to whom, as a reachability matrix.

Two networks joined by nothing: the web tier and the database tier. The
matrix is probed concurrently, so it costs about one timeout, and a
mismatch prints only the cells that differ.
"""

from pytest_netns import reachability_matrix


def test_tiers_are_isolated(make_topology):
    topo = make_topology()
    web = [topo.node(n) for n in ("web1", "web2")]
    db = [topo.node(n) for n in ("db1", "db2")]
    front, back = topo.switch("front"), topo.switch("back")
    for node in web:
        topo.connect(node, front)
    for node in db:
        topo.connect(node, back)
    net = topo.build()

    matrix = reachability_matrix([net[n] for n in web + db], timeout=0.5)
    print(matrix)
    same_tier = {(a, b) for tier in (web, db) for a in tier for b in tier if a != b}
    matrix.assert_matches(same_tier)
