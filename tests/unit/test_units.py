"""Units of impairments: accepted spellings, and errors that name the value and the range."""

from __future__ import annotations

import pytest

from pytest_netns.errors import InvalidImpairmentError, NetnsError
from pytest_netns.units import (
    format_percent,
    format_rate,
    format_time,
    parse_percent,
    parse_rate,
    parse_time,
)


@pytest.mark.parametrize(("value", "seconds"), [
    (0.05, 0.05), (1, 1.0), ("50ms", 0.05), ("1.5s", 1.5), ("200us", 0.0002),
    ("10 msec", 0.01), ("3", 3.0), ("0", 0.0), ("2e-3s", 0.002),
])
def test_times(value: float | str, seconds: float) -> None:
    assert parse_time(value) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "message"), [
    ("50 parsecs", r"delay='50 parsecs' has an unknown time unit 'parsecs'; valid units: ns"),
    ("fast", r"delay='fast' cannot be parsed; expected a time"),
    (-1, r"delay=-1 is out of range; valid: 0 to 3600 seconds"),
    ("-5ms", r"delay='-5ms' cannot be parsed"),
    ("2h", r"unknown time unit 'h'"),
    (True, r"delay=True is a bool"),
    (float("nan"), r"out of range"),
    (None, r"delay=None is not a time"),
])
def test_time_errors(value: object, message: str) -> None:
    with pytest.raises(InvalidImpairmentError, match=message) as caught:
        parse_time(value, "delay")  # type: ignore[arg-type]
    assert isinstance(caught.value, NetnsError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("value", "bits"), [
    ("10mbit", 10**7), ("500kbit", 500_000), ("1gbit", 10**9), ("1.5mbit", 1_500_000),
    (64000, 64000), ("125kbps", 10**6), ("100Mbit", 10**8),
])
def test_rates(value: int | str, bits: int) -> None:
    assert parse_rate(value) == bits


@pytest.mark.parametrize(("value", "message"), [
    ("10 mbps/s", r"rate='10 mbps/s' cannot be parsed"),
    ("10mb", r"unknown rate unit 'mb'; valid units: bit, kbit"),
    (0, r"rate=0 is out of range; valid: 8 bit/s to 10000 gbit"),
    (1.5e6, r"give an int in bit/s"),
])
def test_rate_errors(value: object, message: str) -> None:
    with pytest.raises(InvalidImpairmentError, match=message):
        parse_rate(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "percent"),
                         [(0, 0.0), (1, 1.0), (12.5, 12.5), ("30%", 30.0), ("100", 100.0)])
def test_percent(value: float | str, percent: float) -> None:
    assert parse_percent(value) == percent


@pytest.mark.parametrize(("value", "message"), [
    (101, r"loss=101 is out of range; valid: 0 to 100"),
    (-0.5, r"loss=-0.5 is out of range; valid: 0 to 100"),
    ("-1%", r"cannot be parsed"),
    ("5 pct", r"only '%'"),
])
def test_percent_errors(value: object, message: str) -> None:
    with pytest.raises(InvalidImpairmentError, match=message):
        parse_percent(value, "loss")  # type: ignore[arg-type]


def test_formats_read_back() -> None:
    assert [format_time(t) for t in (0.04, 1.5, 0.0002, 2.0, 0.0105)] == [
        "40 ms", "1.5 s", "200 us", "2 s", "10.5 ms"]
    assert [format_rate(r) for r in (10**7, 500_000, 10**9, 64)] == [
        "10 Mbit/s", "500 kbit/s", "1 Gbit/s", "64 bit/s"]
    assert [format_percent(p) for p in (1.0, 0.5, 30.0, 100.0)] == ["1 %", "0.5 %", "30 %",
                                                                   "100 %"]
