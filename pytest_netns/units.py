"""The units users write for impairments, read and written the way `tc` and Mininet do.

Times: a float or int is seconds; strings "50ms", "1.5s", "200us" (also
"usec", "msec", "sec", "ns"). Rates: an int is bit/s; strings "10mbit",
"500kbit", "1gbit", "1000bit", or byte rates such as "125kbps" (in tc,
"bps" means bytes per second). Percentages: 0-100, as a number or "1.5%".

Every error is an `InvalidImpairmentError` whose message names the
parameter, the value given and what would be valid: it reaches the user
(or the command line) unchanged. The `format_*` functions write values
back the way reports and diagrams show them ("40 ms", "10 Mbit/s", "1 %").
"""

from __future__ import annotations

import math
import re

from .errors import InvalidImpairmentError

_TIME_UNITS = {
    "ns": 1e-9, "nsec": 1e-9,
    "us": 1e-6, "usec": 1e-6,
    "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "secs": 1.0,
}  # fmt: skip
_RATE_UNITS = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9,
}  # fmt: skip
_NUMBER_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z%]*)\s*$")

MAX_TIME = 3600.0
"""The longest time accepted: anything longer is almost surely a unit mistake."""
MIN_RATE = 8
"""tbf cannot shape below one byte per second."""
MAX_RATE = 10**13


def parse_time(value: float | int | str, name: str = "time") -> float:
    """Seconds, from seconds or a string with a unit; 0 <= result <= MAX_TIME."""
    if isinstance(value, bool):
        raise InvalidImpairmentError(
            f"{name}={value!r} is a bool; give seconds (0.05) or a string like '50ms'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        number, unit = _split(value, name, "a time such as 0.05, '50ms', '1.5s' or '200us'")
        unit = unit.lower() or "s"
        if unit not in _TIME_UNITS:
            raise InvalidImpairmentError(
                f"{name}={value!r} has an unknown time unit {unit!r}; "
                f"valid units: {', '.join(_TIME_UNITS)}")
        seconds = number * _TIME_UNITS[unit]
    else:
        raise InvalidImpairmentError(
            f"{name}={value!r} is not a time; give seconds (0.05) or a string like '50ms'")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_TIME:
        raise InvalidImpairmentError(
            f"{name}={value!r} is out of range; valid: 0 to {MAX_TIME:g} seconds")
    return seconds


def parse_rate(value: int | str, name: str = "rate") -> int:
    """Bits per second, from an int (bit/s) or a string with a tc unit."""
    if isinstance(value, bool | float):
        raise InvalidImpairmentError(
            f"{name}={value!r}: give an int in bit/s or a string like '10mbit'")
    if isinstance(value, int):
        bits = value
    elif isinstance(value, str):
        number, unit = _split(
            value, name, "a rate such as '10mbit', '500kbit', '1gbit' or an int in bit/s")
        unit = unit.lower() or "bit"
        if unit not in _RATE_UNITS:
            raise InvalidImpairmentError(
                f"{name}={value!r} has an unknown rate unit {unit!r}; "
                f"valid units: {', '.join(_RATE_UNITS)}")
        bits = round(number * _RATE_UNITS[unit])
    else:
        raise InvalidImpairmentError(
            f"{name}={value!r}: give an int in bit/s or a string like '10mbit'")
    if not MIN_RATE <= bits <= MAX_RATE:
        raise InvalidImpairmentError(
            f"{name}={value!r} is out of range; valid: {MIN_RATE} bit/s to "
            f"{MAX_RATE // 10**9} gbit")
    return bits


def parse_percent(value: float | int | str, name: str = "percentage") -> float:
    """A percentage 0-100 from a number or a string ending in '%'."""
    if isinstance(value, bool):
        raise InvalidImpairmentError(
            f"{name}={value!r} is a bool; give a percentage from 0 to 100")
    if isinstance(value, int | float):
        percent = float(value)
    elif isinstance(value, str):
        number, unit = _split(value, name, "a percentage from 0 to 100, such as 1.5 or '1.5%'")
        if unit not in ("", "%"):
            raise InvalidImpairmentError(f"{name}={value!r}: only '%' may follow the number")
        percent = number
    else:
        raise InvalidImpairmentError(
            f"{name}={value!r} is not a percentage; give a number from 0 to 100")
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise InvalidImpairmentError(
            f"{name}={value!r} is out of range; valid: 0 to 100 (percent)")
    return percent


def _split(text: str, name: str, expected: str) -> tuple[float, str]:
    match = _NUMBER_UNIT.match(text)
    if match is None:
        raise InvalidImpairmentError(f"{name}={text!r} cannot be parsed; expected {expected}")
    return float(match.group(1)), match.group(2)


def _number(value: float) -> str:
    """Up to three significant digits, without a trailing ".0"."""
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def format_time(seconds: float) -> str:
    """"40 ms", "1.5 s", "200 us"."""
    if seconds >= 1:
        return f"{_number(seconds)} s"
    if seconds >= 1e-3:
        return f"{_number(seconds * 1e3)} ms"
    return f"{_number(seconds * 1e6)} us"


def format_rate(bits: int) -> str:
    """"10 Mbit/s", "500 kbit/s", "1 Gbit/s"."""
    for unit, scale in (("Tbit/s", 10**12), ("Gbit/s", 10**9), ("Mbit/s", 10**6),
                        ("kbit/s", 10**3)):
        if bits >= scale:
            return f"{_number(bits / scale)} {unit}"
    return f"{bits} bit/s"


def format_percent(percent: float) -> str:
    """"1 %", "0.5 %", "30 %"."""
    return f"{_number(percent)} %"
