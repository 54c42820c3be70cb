"""Durations in rule files: "90s", "15m", "1h30m", "1d", or a plain number of seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError saying what a duration looks like."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '15m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like '15m', got {value!r}")
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(f"expected a duration like '90s', '15m', '1h30m' or '1d', got {value!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ValueError("expected a duration like '15m', got an empty string")
    return total


def format_duration(seconds: float) -> str:
    """A short human form: 900 -> "15m", 5400 -> "1h30m", 42.5 -> "42.5s"."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    s = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return "".join(parts)
