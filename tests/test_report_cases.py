"""The report's case figures come from the alert store as the case platform saw them."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_alerts_delivery import DEVICES, config, drained, run_until

from alerts.runtime import AlertsRuntime
from alerts.testing import RecordingServer
from core.transition import AlertState, AlertTransition, Severity
from report.gather import gather
from storage.influx import InfluxClient

pytestmark = pytest.mark.timeout(90)


def _t(to: AlertState, frm: AlertState, device: str, t_ns: int) -> AlertTransition:
    return AlertTransition("water.depth", device, frm, to, Severity.WARNING, t_ns, 180.0, 150.0, "case",
                           summary="道路积水", labels=(("district", "朝阳区"), ("kind", "water_level")))


def test_cases_opened_closed_and_median_time_to_close(database, influxd, influx_db) -> None:
    """…from the alert store in a SQLite file and in PostgreSQL."""
    cases = RecordingServer().start()
    try:
        cfg = config({"cases": {"type": "case_platform", "url": cases.url}},
                     [{"route": "case", "receivers": ["cases"]}])
        alerts = AlertsRuntime(cfg, DEVICES.get, db_path=database)
        fired: dict[str, int] = {}

        async def day() -> None:
            for device in ("wl-001", "wl-002", "wl-003"):
                fired[device] = time.time_ns()
                alerts.handle(_t(AlertState.FIRING, AlertState.PENDING, device, fired[device]))
            await asyncio.sleep(0.6)
            for device in ("wl-001", "wl-002"):
                alerts.handle(_t(AlertState.RESOLVED, AlertState.FIRING, device, time.time_ns()))

        asyncio.run(run_until(alerts, drained(alerts), actions=day))
        alerts.close()
        start, end = min(fired.values()) - 3600 * 10**9, time.time_ns() + 3600 * 10**9

        async def report():
            async with InfluxClient(influxd.url, influx_db) as client:
                return await gather(client, list(DEVICES.values()), database, start, end,
                                    kind="water_level")
        (f,) = asyncio.run(report())
    finally:
        cases.stop()
    opens = [r for r in cases.accepted if r.json["action"] == "open"]
    closes = [r for r in cases.accepted if r.json["action"] == "close"]
    assert (f.district, f.kind, f.devices) == ("朝阳区", "water_level", 5)
    assert (f.cases_opened, f.cases_closed) == (len(opens), len(closes)) == (3, 2)
    # from the firing to the platform's receipt of the close, per closed case
    waits = sorted(c.time - fired[c.json["device_id"]] / 1e9 for c in closes)
    assert f.median_close_s == pytest.approx(sum(waits) / 2, abs=0.25)
    assert f.median_close_s > 0.5
