"""What users ask of a link, checked before anything changes (no root, no kernel).

Every refusal is an InvalidImpairmentError (a NetnsError and a ValueError)
that names the value given and what would be valid; what this kernel cannot
do is an UnsupportedImpairmentError that names what would be needed.
"""

from __future__ import annotations

import pytest

from pytest_netns.errors import (
    InvalidImpairmentError,
    UnsupportedImpairmentError,
    UnsupportedKindError,
)
from pytest_netns.kernel.impairment import Capabilities, Impairment
from pytest_netns.topology.builder import TopologyBuilder
from pytest_netns.topology.faults import parse_direction


def test_parse_reads_users_units() -> None:
    imp = Impairment.parse(delay="50ms", jitter="10ms", loss="1.5%", rate="10mbit")
    assert (imp.delay, imp.jitter, imp.loss, imp.rate) == (0.05, 0.01, 1.5, 10_000_000)
    assert imp.needs_forwarder
    assert not Impairment.parse(rate=1_000_000).needs_forwarder
    assert Impairment.parse().empty and Impairment.parse(loss=0).empty


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"loss": 101}, r"loss=101 is out of range; valid: 0 to 100"),
    ({"loss": -1}, r"loss=-1 is out of range; valid: 0 to 100"),
    ({"duplicate": "lots"}, r"duplicate='lots' cannot be parsed"),
    ({"delay": "soon"}, r"delay='soon' cannot be parsed; expected a time"),
    ({"delay": -0.1}, r"delay=-0.1 is out of range; valid: 0 to 3600 seconds"),
    ({"rate": "fast"}, r"rate='fast' cannot be parsed; expected a rate"),
    ({"rate": "10 apples"}, r"unknown rate unit 'apples'"),
    ({"jitter": "5ms"}, r"jitter='5ms' needs a delay"),
    ({"reorder": 25}, r"reorder=25 needs a delay"),
    ({"delay": 1, "jitter": 0.1, "distribution": "pareto"},
     r"distribution='pareto'; valid: 'uniform', 'normal'"),
])
def test_bad_values_name_the_value_and_the_range(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidImpairmentError, match=message) as caught:
        Impairment.parse(**kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


def test_as_dict_and_describe() -> None:
    imp = Impairment.parse(delay="40ms", loss=1)
    assert imp.as_dict() == {"delay": 0.04, "loss": 1.0}
    assert imp.describe() == "40 ms, 1 % loss"
    full = Impairment.parse(delay="50ms", jitter="10ms", distribution="normal", rate="10mbit",
                            duplicate=2, corrupt=0.1, reorder=25)
    assert full.describe() == ("50 ms ± 10 ms normal, 10 Mbit/s, 2 % duplicate, "
                               "0.1 % corrupt, 25 % reorder")
    assert Impairment.parse(**full.as_dict()) == full  # what impairment shows, impair takes
    assert Impairment().as_dict() == {} and Impairment().describe() == "none"


def test_directions() -> None:
    assert parse_direction("both", ("a", "switch")) == ["a->switch", "switch->a"]
    assert parse_direction(" switch -> a ", ("a", "switch")) == ["switch->a"]
    for bad in ("a->b", "a<-switch", "sideways", None, "a->a"):
        with pytest.raises(InvalidImpairmentError, match=r"is not a direction of the link "
                           r"a<->switch; valid: 'both', 'a->switch', 'switch->a'"):
            parse_direction(bad, ("a", "switch"))


NO_NETEM = Capabilities(netem=False, tbf=True, steal=True, drop=True)


def test_the_mechanism_is_chosen_in_one_place() -> None:
    assert NO_NETEM.mechanism("delay") == "forwarder process (tc bpf steal + mirred)"
    assert NO_NETEM.mechanism("rate") == "tbf"
    netem = Capabilities(netem=True, tbf=True, steal=True, drop=True)
    assert netem.mechanism("loss") == "netem" and netem.mechanism("rate") == "tbf under netem"
    assert netem.mechanism("partition") == "tc bpf ingress drop"


def test_what_the_kernel_cannot_do_names_what_is_needed() -> None:
    bare = Capabilities(netem=False, tbf=False, steal=False, drop=False)
    with pytest.raises(UnsupportedImpairmentError, match=r"40 ms needs netem \(sch_netem\), or "
                       r"else clsact, cls_bpf and act_mirred") as caught:
        bare.check(Impairment.parse(delay="40ms"))
    assert isinstance(caught.value, UnsupportedKindError)
    with pytest.raises(UnsupportedImpairmentError, match=r"rate=10 Mbit/s needs the tbf qdisc"):
        bare.check(Impairment.parse(rate="10mbit"))
    with pytest.raises(UnsupportedImpairmentError, match=r"a partition needs the clsact qdisc"):
        bare.check_drops("a partition")
    NO_NETEM.check(Impairment.parse(delay="1s", loss=5, rate="1mbit"))  # all of it works here
    Capabilities(netem=True, tbf=True, steal=False, drop=False).check(
        Impairment.parse(delay="1s"))


def test_connect_checks_impairments_before_anything_exists() -> None:
    t = TopologyBuilder(backend="namespace")
    a, b = t.node("a"), t.node("b")
    sw = t.switch("lan")
    t.connect(a, sw, impair={"delay": "20ms", "direction": "lan->a"})
    t.connect(a, b, impair=[{"delay": "5ms", "direction": "a->b"}, {"loss": 3,
                                                                    "direction": "b->a"}])
    with pytest.raises(InvalidImpairmentError, match=r"loss=200 is out of range"):
        t.connect(b, sw, impair={"loss": 200})
    with pytest.raises(InvalidImpairmentError, match=r"direction='a->lan' is not a direction "
                       r"of the link b<->lan"):
        t.connect(b, sw, impair={"delay": 1, "direction": "a->lan"})
    with pytest.raises(InvalidImpairmentError, match=r"unknown keys \['latency'\]"):
        t.connect(b, sw, impair={"latency": "1ms"})
    with pytest.raises(InvalidImpairmentError, match=r"give Link.impair's keywords as a dict"):
        t.connect(b, sw, impair="20ms")  # type: ignore[arg-type]
    assert [s.values for s in t._impairments] == [
        {"delay": "20ms", "direction": "lan->a"}, {"delay": "5ms", "direction": "a->b"},
        {"loss": 3, "direction": "b->a"}]


def test_ping_stats_arguments_and_summary() -> None:
    from pytest_netns.errors import InvalidProbeError
    from pytest_netns.probes.series import PingStats, _check

    assert _check(10, 0.01) == (10, 0.01) and _check(1, 0) == (1, 0.0)
    for count, interval, message in [(0, 0.01, r"invalid count 0: expected an integer from 1"),
                                     (2.5, 0.01, r"invalid count 2.5"),
                                     (3, -1, r"invalid interval -1: expected seconds"),
                                     (3, "fast", r"invalid interval 'fast'")]:
        with pytest.raises(InvalidProbeError, match=message):
            _check(count, interval)
    stats = PingStats("a", "10.0.0.2", 4, 3, 25.0, 40.1, 40.3, 40.6, 0.2, (40.1, 40.2, 40.6), "b")
    assert str(stats) == ("a -> b (10.0.0.2): 4 sent, 3 received, 25 % loss, "
                          "rtt min/avg/max/mdev = 40.100/40.300/40.600/0.200 ms")
    assert str(PingStats("a", "10.0.0.2", 2, 0, 100.0, None, None, None, None)) == (
        "a -> 10.0.0.2: 2 sent, 0 received, 100 % loss")
