"""Warm-up at start: which history to fetch from InfluxDB, and turning the answer back into `Reading`s.

The engine never queries InfluxDB itself; the service runs these queries once on start
(through storage's reader) and feeds the readings to `Engine.warm_up`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from core.reading import Reading
from rules.model import Rule

TAG_KEYS = ("device_id", "model", "district", "zone_class", "site")
_NS = 1_000_000_000


def lookback_s(rule: Rule) -> float:
    """How much history rebuilds a rule's state: its windows plus the longest of `for` and `keep_firing_for`."""
    window = max(rule.window_s, rule.eta.window_s if rule.eta else 0.0)
    return window + max(rule.for_s, rule.keep_firing_for_s)


def warm_up_queries(rules: Iterable[Rule], now_ns: int) -> list[str]:
    """One InfluxQL SELECT per kind (measurement) the value rules name, bounded by their longest look-back.

    Rules for any kind ("*") read fields every kind's readings carry (battery, radio) and
    start cold; no-data rules need no history (a device not yet seen counts from start).
    """
    spans: dict[str, float] = {}
    for rule in rules:
        if rule.is_no_data or not rule.enabled or rule.select.kinds is None:
            continue
        for kind in rule.select.kinds:
            spans[kind] = max(spans.get(kind, 0.0), lookback_s(rule))
    queries = []
    for kind, span in sorted(spans.items()):
        start = now_ns - int(max(span, 1.0) * _NS)
        measurement = kind.replace("\\", "\\\\").replace('"', '\\"')
        queries.append(f'SELECT * FROM "{measurement}" WHERE time > {start} AND time <= {now_ns} ORDER BY time ASC')
    return queries


def readings_from_series(series: Iterable[Mapping]) -> list[Reading]:
    """InfluxDB /query series (measurement, columns, values; epoch=ns or RFC3339 times) -> Readings by time."""
    out: list[Reading] = []
    for s in series:
        kind = s.get("name", "")
        columns = list(s.get("columns", []))
        if "time" not in columns:
            continue
        t_idx = columns.index("time")
        for row in s.get("values", []):
            tags: dict[str, str] = {}
            fields: dict[str, float | int | bool | str] = {}
            for col, value in zip(columns, row, strict=False):
                if col == "time" or value is None:
                    continue
                if col in TAG_KEYS:
                    if value != "":
                        tags[col] = str(value)
                else:
                    fields[col] = value
            device_id = tags.get("device_id")
            if not device_id or not fields:
                continue
            out.append(Reading(device_id, kind, _time_ns(row[t_idx]), fields, tuple(sorted(tags.items()))))
    out.sort(key=lambda r: r.time_ns)
    return out


def _time_ns(value: object) -> int:
    if isinstance(value, int):
        return value
    text = str(value).replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        tail = rest.lstrip("0123456789")
        digits = rest[: len(rest) - len(tail)]
        dt = datetime.fromisoformat(head + tail)
        return int(dt.timestamp()) * _NS + int(digits.ljust(9, "0")[:9])
    return int(datetime.fromisoformat(text).timestamp()) * _NS
