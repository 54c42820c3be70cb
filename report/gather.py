"""Collect the counts behind the figures: InfluxDB (readings, alerts), the registry, the alert store."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import text

from core.database import is_postgres_url, open_engine, read_connection
from core.device import Device
from core.kinds import KIND_NAMES
from report import queries
from report.figures import CaseRow, Figures, assemble
from storage.influx import InfluxClient


async def influx_counts(client: InfluxClient, kinds: Iterable[str], from_ns: int, to_ns: int,
                        district: str | None) -> dict[tuple[str, str], dict[str, float]]:
    """Per (district, kind): reports, readings, good, opened, closed — from `report.queries`."""
    when = queries.time_condition(from_ns, to_ns)
    dre = queries.district_regex(district)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for kind in kinds:
        for build in (queries.readings, queries.good, queries.alerts_opened, queries.alerts_closed):
            for result in await client.query(build(kind, when, dre)):
                if "error" in result:
                    raise RuntimeError(f"InfluxDB refused a report query: {result['error']}")
                for series in result.get("series", []):
                    d = (series.get("tags") or {}).get("district", "")
                    cols = series["columns"]
                    counts = out.setdefault((d, kind), {})
                    for value_row in series.get("values", []):
                        for col, value in zip(cols, value_row, strict=False):
                            if col != "time" and value is not None:
                                counts[col] = counts.get(col, 0) + value
    return out


def read_cases(alerts_db: str | Path) -> list[CaseRow]:
    """Every case in the alert store (a SQLite file or a PostgreSQL URL) with its district and kind (from the
    alert's device labels). Only reads: no migration, no file created.

    The firing that opened a case is the alert's last transition to firing (from another state)
    at or before the case was opened. No store yet: no cases.
    """
    if not is_postgres_url(alerts_db) and not Path(alerts_db).exists():
        return []
    engine = open_engine(alerts_db)
    try:
        with read_connection(engine) as con:
            if not engine.dialect.has_table(con, "cases"):
                return []
            rows = con.execute(text(
                "SELECT c.opened_ns, c.closed_ns, a.labels_json, (SELECT max(h.time_ns) FROM history h"
                " WHERE h.fingerprint = c.fingerprint AND h.to_state = 'firing' AND h.from_state != 'firing'"
                " AND h.time_ns <= COALESCE(c.opened_ns, h.time_ns)) FROM cases c JOIN alerts a"
                " ON a.fingerprint = c.fingerprint")).all()
    finally:
        engine.dispose()
    out = []
    for opened, closed, labels_json, first in rows:
        labels = json.loads(labels_json or "{}")
        out.append(CaseRow(labels.get("district", ""), labels.get("kind", ""), opened, closed, first))
    return out


async def gather(client: InfluxClient, devices: Iterable[Device], alerts_db: str | Path, from_ns: int, to_ns: int, *,
                 district: str | None = None, kind: str | None = None) -> list[Figures]:
    """The figures for [from, to), optionally for one district and/or kind."""
    kinds = [kind] if kind else list(KIND_NAMES)
    chosen = [d for d in devices if d.status != "retired" and d.kind in kinds
              and (district is None or d.district == district)]
    counts = await influx_counts(client, kinds, from_ns, to_ns, district)
    cases = [c for c in read_cases(alerts_db) if c.kind in kinds and (district is None or c.district == district)]
    return assemble(chosen, (to_ns - from_ns) / 1e9, counts, cases, from_ns, to_ns)
