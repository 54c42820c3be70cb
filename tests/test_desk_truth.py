"""The desk console tells the truth after a restart and when nobody was told (qa3 F2, F1), in a real headless
browser on the real service, broker and influxd.

A restarted service restores the firing alerts of the run before: each is shown against the gauge's
readings now — the depth now and "fallen back" for a gauge that reports low again, "data stale" instead
of an ETA for one that has not reported, "overdue" for an ETA whose moment has passed (never "less than
a minute"). An alert no receiver was routed is flagged on its row and above the notifications.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright
from servicekit import make_config, running, wait_until
from test_alerting_e2e import WATER, Fleet
from test_desk_console import CHROMIUM, FLAGS

from alerts.model import fingerprint
from provisioning.registry import Registry
from service.desk.auth import hash_password
from sim.daemons import Daemon

MIN = 60_000_000_000
PASSWORD = "rain-desk-2026!"
GAUGES = [replace(d, expected_interval_s=60) for d in WATER]  # stale after 3 minutes without a reading
A, B, C = GAUGES


def test_a_restarted_desk_shows_restored_alerts_against_the_readings_now_and_who_was_not_told(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db, rules={"tick_interval_s": 0.5},
                      alerts={"db_path": str(tmp_path / "alerts.sqlite")},  # no receiver: nobody is told
                      desk={"enabled": True, "port": 0, "users": {"wang": hash_password(PASSWORD)}})
    with Registry(cfg.registry_database()) as reg:
        for d in GAUGES:
            reg.add(d, by="test")
    fleet = Fleet(mosquitto.port)
    now = time.time_ns()
    at = lambda minutes_ago: now - int(minutes_ago * MIN)  # noqa: E731
    with running(cfg) as svc:  # the run before: a storm 20 to 12 minutes ago
        for k in range(9):
            fleet.send(A, at(20 - k), distance_mm=2000.0 - (100.0 + 25 * k))   # to 300 mm: critical
            fleet.send(B, at(20 - k), distance_mm=2000.0 - (100.0 + 12 * k))   # to 196 mm: waterlogged
        for k in range(7):  # 25 mm a minute to 250 mm 90 s ago, "27 cm in 48 s": that moment has passed unseen
            fleet.send(C, at(7.5 - k), distance_mm=2000.0 - (100.0 + 25 * k))
        assert fleet.pub.flush(10)
        assert svc.alerting is not None
        store = svc.alerting.alerts.store
        wait_until(lambda: {(a.device_id, a.severity) for a in store.list_alerts(states=("firing",), limit=50)
                            if a.rule_id == "water.depth"} >= {(A.id, "critical"), (B.id, "warning"),
                                                               (C.id, "warning")}, 20, "the storm's alerts")

    with running(cfg) as svc:  # restarted: the alerts are restored; A reports dry again, B stays silent
        fleet.send(A, time.time_ns(), distance_mm=2000.0 - 5.0)
        assert fleet.pub.flush(10)
        assert svc.desk is not None and svc.alerting is not None
        # at start, before any new reading: every restored gauge's newest stored reading decides; B's is 12 min old
        assert ("water.depth", B.id) in svc.alerting.report_stale_restored()
        assert ("water.depth", C.id) not in svc.alerting.report_stale_restored()
        wait_until(lambda: (st := svc.alerting.engine.state_of("water.depth", A.id)) is not None
                   and st.clear_since_ns is not None, 20, "A's dry reading at the rules")
        with httpx.Client(base_url=svc.desk.url) as http:
            assert http.post("/login", data={"user": "wang", "password": PASSWORD}).status_code in (200, 303)
            state = http.get("/api/state").json()
        live = state["live"]
        assert live[fingerprint("water.depth", B.id)]["stale"] is True
        assert live[fingerprint("water.depth", A.id)]["stale"] is False
        assert live[fingerprint("water.depth", A.id)]["depth_mm"] == 5.0

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(svc.desk.url)
                page.fill("input[name=user]", "wang")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("#live:not(.off)", timeout=10_000)

                def row(device: str) -> str:
                    return page.locator(f'tr[data-rule="water.depth"][data-device="{device}"]').inner_text()

                a_row = row(A.id)  # restored critical, the gauge reads 5 mm now: shown as such
                assert "0.5 cm" in a_row and "30.0 cm" not in a_row and "已回落" in a_row, a_row
                b_row = row(B.id)  # no reading for 12 minutes: no live ETA, the data is said to be stale
                assert "数据过期（最后读数" in b_row, b_row
                assert "stale" in (page.locator(f'tr[data-rule="water.depth"][data-device="{B.id}"]')
                                   .get_attribute("class") or "")
                c_row = row(C.id)  # its predicted 27 cm moment has passed: said so, never "less than a minute"
                assert re.search(r"预计时刻 \d\d:\d\d 已过", c_row) and "不足 1 分钟" not in c_row, c_row
                for device in (A.id, B.id, C.id):  # nobody but the desk knows: said on every row and above
                    assert "未通知任何人" in row(device)
                # on the map, B (every alert of it without a recent reading) is grey, not a live flood colour
                assert page.locator('path.leaflet-interactive[fill="#757575"]').count() == 1
                assert page.locator('path.leaflet-interactive[fill="#c62828"]').count() == 1  # A: critical
                banner = page.locator("#untold")
                assert banner.is_visible() and "没有通知任何人" in banner.inner_text()
            finally:
                browser.close()
    fleet.pub.close()
