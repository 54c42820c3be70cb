"""RFC 3339 timestamps to and from integer nanoseconds since the epoch, without losing precision.

`datetime` keeps only microseconds; network servers stamp uplinks in nanoseconds
(ChirpStack `2022-07-18T09:34:15.775023242+00:00`, The Things Stack `...46.014773143Z`).
"""

from __future__ import annotations

import re
from datetime import date

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d\d:\d\d)",
    re.ASCII,
)
_AFTER_MINUTE = re.compile(r":(\d\d)(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_NS = 1_000_000_000
_FRACTION_SCALE = tuple(10 ** (9 - n) for n in range(10))
_MINUTE_CACHE: dict[str, int] = {}
_MINUTE_CACHE_SIZE = 4096


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp; `ValueError` saying why when it is not one.

    Fractions beyond nanoseconds are truncated; a leap second (`:60`) is refused. The
    `YYYY-MM-DDTHH:MM` prefix is cached, since a stream of uplinks shares its minute.
    """
    minute = _MINUTE_CACHE.get(text[:16])
    if minute is None:
        minute = _parse_minute(text)
    if text.isascii():  # fast path for UTC (`Z`, `+00:00`) by slicing; anything else takes the regex
        last = text[-1]
        if last == "Z" or last == "z":
            end = len(text) - 1
        elif text.endswith("+00:00"):
            end = len(text) - 6
        else:
            end = 0
        if end >= 19 and text[16] == ":":
            second = text[17:19]
            if second.isdigit() and second < "60":
                if end == 19:
                    return (minute + int(second)) * _NS
                digits = text[20:end]
                if text[19] == "." and digits.isdigit():
                    fraction = digits[:9]
                    return (minute + int(second)) * _NS + int(fraction) * _FRACTION_SCALE[len(fraction)]
    return _parse_after_minute(text, minute)


def _parse_after_minute(text: str, minute: int) -> int:
    """The general form (any offset, `t`/space separator) by regex, with the reason when it is not valid."""
    m = _AFTER_MINUTE.fullmatch(text, 16)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    second, fraction, offset = m.groups()
    s = int(second)
    if s > 59:
        raise ValueError(f"bad second in {text[:64]!r}")
    ns = (minute + s - _offset_seconds(offset, text)) * _NS
    if fraction is not None:
        ns += int(fraction) * _FRACTION_SCALE[len(fraction)]
    return ns


def _parse_minute(text: str) -> int:
    """Seconds since the epoch at the start of the timestamp's minute (local to its offset); cached."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    try:
        days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
    except ValueError as e:
        raise ValueError(f"bad date in {text[:64]!r}: {e}") from None
    if hour > 23 or minute > 59:
        raise ValueError(f"bad time of day in {text[:64]!r}")
    seconds = days * 86400 + hour * 3600 + minute * 60
    if len(_MINUTE_CACHE) >= _MINUTE_CACHE_SIZE:
        _MINUTE_CACHE.clear()
    _MINUTE_CACHE[text[:16]] = seconds
    return seconds


def _offset_seconds(offset: str, text: str) -> int:
    if len(offset) == 1 or offset == "+00:00":
        return 0
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad UTC offset in {text[:64]!r}")
    seconds = hours * 3600 + minutes * 60
    return seconds if offset[0] == "+" else -seconds


def format_rfc3339_ns(time_ns: int, *, utc_suffix: str = "Z", digits: str = "trim") -> str:
    """Format nanoseconds since the epoch as UTC RFC 3339.

    `digits="trim"` drops trailing zeros of the fraction (Go's RFC3339Nano, as The Things
    Stack writes); `digits="auto"` writes 0, 3, 6 or 9 digits (Rust chrono's AutoSi, as
    ChirpStack writes with `utc_suffix="+00:00"`).
    """
    seconds, ns = divmod(time_ns, _NS)
    days, rem = divmod(seconds, 86400)
    d = date.fromordinal(days + _EPOCH_ORDINAL)
    stamp = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{rem // 3600:02d}:{rem // 60 % 60:02d}:{rem % 60:02d}"
    if ns:
        frac = f"{ns:09d}"
        if digits == "trim":
            frac = frac.rstrip("0")
        elif ns % 1_000_000 == 0:
            frac = frac[:3]
        elif ns % 1_000 == 0:
            frac = frac[:6]
        stamp += "." + frac
    return stamp + utc_suffix
