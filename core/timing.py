"""Timing helpers shared by every package: durations ("90s", "15m", "1h30m", "1d" or plain seconds),
HTTP Retry-After, and capped exponential backoff with jitter."""

from __future__ import annotations

import math
import re
import time
from email.utils import parsedate_to_datetime

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


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP Retry-After header (delta-seconds or HTTP date), never negative;
    None when absent or unreadable. `now` is the epoch time to count from (default: the clock)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Capped exponential backoff before retry number `attempt` (1, 2, ...): initial·2^(attempt−1), at most `max_s`."""
    return min(max_s, initial_s * 2 ** min(max(0, attempt - 1), 62))


def jittered(delay_s: float, spread: float, rnd: float) -> float:
    """`delay_s` scaled by a factor in [1 − spread, 1 + spread], picked by `rnd` in [0, 1]."""
    return delay_s * (1 + spread * (2 * rnd - 1))


def equal_jitter(ceiling_s: float, rnd: float) -> float:
    """Between half and all of `ceiling_s` ("equal jitter"), picked by `rnd` in [0, 1]."""
    return ceiling_s / 2 + ceiling_s / 2 * rnd
