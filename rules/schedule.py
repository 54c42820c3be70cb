"""Local time of day for schedules: UTC nanoseconds -> minute after local midnight, in a named time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.model import Period

_BUCKET_S = 900  # every UTC offset and offset change in tzdata falls on a quarter hour


class LocalClock:
    """Converts reading times to local minute-of-day, caching the UTC offset per quarter hour.

    The cache makes the conversion a dict lookup on the hot path; it is cleared when it grows
    past a bound so that replaying years of history cannot grow memory without limit.
    """

    __slots__ = ("_offsets", "tz", "tz_name")

    def __init__(self, tz_name: str) -> None:
        self.tz_name = tz_name
        self.tz = load_zone(tz_name)
        self._offsets: dict[int, int] = {}

    def minute_of_day(self, time_ns: int) -> int:
        seconds = time_ns // 1_000_000_000
        bucket = seconds // _BUCKET_S
        offset = self._offsets.get(bucket)
        if offset is None:
            if len(self._offsets) > 100_000:
                self._offsets.clear()
            moment = datetime.fromtimestamp(bucket * _BUCKET_S, UTC).astimezone(self.tz)
            offset = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
            self._offsets[bucket] = offset
        return ((seconds + offset) % 86400) // 60

    def local(self, time_ns: int) -> datetime:
        return datetime.fromtimestamp(time_ns / 1e9, self.tz)


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; raises ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Asia/Shanghai')") from exc


def period_at(schedule: tuple[Period, ...], minute: int) -> str | None:
    """The name of the period containing `minute`, None when the schedule leaves it uncovered."""
    for p in schedule:
        if p.contains(minute):
            return p.name
    return None


def parse_span(text: str) -> tuple[int, int]:
    """ "06:00-22:00" -> (360, 1320); "24:00" is allowed as an end; equal ends mean the whole day."""
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f"expected a span like '06:00-22:00', got {text!r}")
    start, end = (_parse_clock(x.strip(), allow_24=i == 1) for i, x in enumerate(text.split("-")))
    return start, end % 1440 if end == 1440 else end


def _parse_clock(text: str, *, allow_24: bool) -> int:
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"expected a time like '06:00', got {text!r}")
    h, m = int(parts[0]), int(parts[1])
    if m > 59 or h > 24 or (h == 24 and (m or not allow_24)):
        raise ValueError(f"not a time of day: {text!r}")
    return h * 60 + m


def overlap(a: Period, b: Period) -> bool:
    """True when two periods share a minute (arcs on the 24-hour circle)."""
    return a.contains(b.start_min) or b.contains(a.start_min)
