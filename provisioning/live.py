"""Live facts about devices from InfluxDB: last seen, last values, battery, radio of the last uplinks, lost frames."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from core.device import Device
from core.schema import TAG_KEYS
from storage.influx import InfluxClient, quote_ident

FieldValue = float | int | bool | str


def literal(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class UplinkRadio:
    """Radio metadata of one stored uplink."""

    time_ns: int
    rssi_dbm: float | None
    snr_db: float | None
    fcnt: int | None
    fcnt_gap: int | None


@dataclass(slots=True)
class LiveFacts:
    """What InfluxDB knows of one device; `last_seen_ns` is None when it never reported."""

    last_seen_ns: int | None = None
    last_values: dict[str, FieldValue] = field(default_factory=dict)
    battery_pct: float | None = None
    battery_v: float | None = None
    recent: list[UplinkRadio] = field(default_factory=list)
    window_h: int = 24
    uplinks_in_window: int = 0
    missing_frames_in_window: int = 0


def _rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a statement's first series as dicts (column → value)."""
    series = result.get("series") or []
    if not series:
        return []
    columns = series[0]["columns"]
    return [dict(zip(columns, values, strict=False)) for values in series[0].get("values", [])]


async def device_facts(client: InfluxClient, device: Device, *, recent: int = 5, window_h: int = 24) -> LiveFacts:
    """One request of five InfluxQL statements: last point of its kind, last uplinks' radio, battery, frame gaps."""
    where = f"WHERE {quote_ident('device_id')} = {literal(device.id)}"
    statements = [
        f"SELECT * FROM {quote_ident(device.kind)} {where} ORDER BY time DESC LIMIT 1",
        f'SELECT "rssi_dbm", "snr_db", "fcnt", "fcnt_gap" FROM "device_health" {where} ORDER BY time DESC '
        f"LIMIT {int(recent)}",
        f'SELECT last("battery_pct") AS "battery_pct" FROM "device_health" {where}',
        f'SELECT last("battery_v") AS "battery_v" FROM "device_health" {where}',
        f'SELECT count("fcnt") AS "uplinks", sum("fcnt_gap") AS "missing" FROM "device_health" {where} '
        f"AND time > now() - {int(window_h)}h",
    ]
    results = await client.query("; ".join(statements))
    by_id = {r.get("statement_id", i): r for i, r in enumerate(results)}
    facts = LiveFacts(window_h=window_h)
    last = _rows(by_id.get(0, {}))
    times: list[int] = []
    if last:
        row = last[0]
        times.append(int(row["time"]))
        facts.last_values = {k: v for k, v in row.items() if k != "time" and k not in TAG_KEYS and v is not None}
    for row in _rows(by_id.get(1, {})):
        facts.recent.append(UplinkRadio(int(row["time"]), row.get("rssi_dbm"), row.get("snr_db"),
                                        row.get("fcnt"), row.get("fcnt_gap")))
    if facts.recent:
        times.append(facts.recent[0].time_ns)
    for idx, name in ((2, "battery_pct"), (3, "battery_v")):
        rows = _rows(by_id.get(idx, {}))
        if rows and rows[0].get(name) is not None:
            setattr(facts, name, float(rows[0][name]))
    gaps = _rows(by_id.get(4, {}))
    if gaps:
        facts.uplinks_in_window = int(gaps[0].get("uplinks") or 0)
        facts.missing_frames_in_window = int(gaps[0].get("missing") or 0)
    facts.last_seen_ns = max(times) if times else None
    return facts


async def last_seen(client: InfluxClient, kinds: Iterable[str]) -> dict[str, int]:
    """Device id → time (ns) of its last stored reading, over the given kind measurements, in one statement."""
    names = sorted(set(kinds))
    if not names:
        return {}
    sources = ", ".join(quote_ident(k) for k in names)
    results = await client.query(f'SELECT * FROM {sources} GROUP BY "device_id" ORDER BY time DESC LIMIT 1')
    seen: dict[str, int] = {}
    for result in results:
        for series in result.get("series") or []:
            device_id = (series.get("tags") or {}).get("device_id")
            values = series.get("values") or []
            if device_id and values:
                t = int(values[0][series["columns"].index("time")])
                seen[device_id] = max(t, seen.get(device_id, t))
    return seen


async def last_distance(client: InfluxClient, device: Device) -> tuple[int, float] | None:
    """(time ns, distance mm) of the device's last reported distance, or None."""
    results = await client.query(f'SELECT last("distance_mm") AS "d" FROM {quote_ident(device.kind)} '
                                 f"WHERE {quote_ident('device_id')} = {literal(device.id)}")
    rows = _rows(results[0]) if results else []
    if not rows or rows[0].get("d") is None:
        return None
    return int(rows[0]["time"]), float(rows[0]["d"])
