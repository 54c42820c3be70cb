"""The desk shows the flood as it is now (QA3 F10, F12): a flood alert's row carries the gauge's newest depth,
rise rate and time to 27 cm from the rules engine, with the reading's time, pushed over the event stream on a
reading that changes no alert state; an ETA whose clock time has passed is never shown as a forecast; a
silence set from the desk is shown on its row. Real broker, influxd, service and headless Chromium."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
from conftest import captured_log
from playwright.sync_api import sync_playwright
from servicekit import make_config, running, wait_until
from test_alerting_e2e import WATER, Fleet
from test_desk_console import CHROMIUM, FLAGS, alerts_show

from alerts.model import fingerprint
from provisioning.registry import Registry
from service.desk.auth import hash_password
from sim.daemons import Daemon

PASSWORD = "live-desk-2026!"
MIN = 60_000_000_000


def _events(url: str, cookies: httpx.Cookies, out: list[dict], stop: threading.Event) -> None:
    """Every `state` event of the page's event stream, parsed, until `stop`."""
    with httpx.Client(base_url=url, cookies=cookies, timeout=httpx.Timeout(5.0, read=30.0)) as http, \
            http.stream("GET", "/events") as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                out.append(orjson.loads(line[6:]))
            if stop.is_set():
                return


def test_the_desk_row_follows_the_gauge_not_the_last_transition(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                                                influx_db: str) -> None:
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db,
                      alerts={"db_path": str(tmp_path / "alerts.sqlite")},
                      desk={"enabled": True, "port": 0, "users": {"wang": hash_password(PASSWORD)}})
    with Registry(cfg.registry_database()) as reg:
        for d in WATER:
            reg.add(d, by="test")
    fleet = Fleet(mosquitto.port)
    depth_fp, rising_fp = fingerprint("water.depth", "WL-CY-1"), fingerprint("water.rising", "WL-CY-1")
    stale_fp = fingerprint("water.rising", "WL-CY-2")
    now = time.time_ns()
    with running(cfg) as svc:
        assert svc.desk is not None
        url = svc.desk.url
        # WL-CY-1 rises 30 mm a minute to 19 cm: the 15 cm level and the rising warning fire (the rising rule's
        # readings must span 5 minutes: rules/presets/water_level.toml `min_span`)
        for k, depth in enumerate((40.0, 70.0, 100.0, 130.0, 160.0, 190.0)):
            fleet.send(WATER[0], now - (8 - k) * MIN, distance_mm=2000.0 - depth)
        # WL-CY-2 did the same half an hour ago and has not reported since: its 27 cm forecast time is long past
        for k, depth in enumerate((40.0, 70.0, 100.0, 130.0, 160.0, 190.0)):
            fleet.send(WATER[1], now - (32 - k) * MIN, distance_mm=2000.0 - depth)
        assert fleet.pub.flush(10)
        store = svc.alerting.alerts.store
        wait_until(lambda: {a.fingerprint for a in store.list_alerts(["firing"])} >= {depth_fp, rising_fp, stale_fp},
                   20, "the 15 cm and rising alerts")
        frozen = store.get(depth_fp)
        assert frozen is not None and frozen.value == 160.0  # the transition's value: fired at 16 cm

        with httpx.Client(base_url=url, follow_redirects=False) as http:
            assert http.post("/login", data={"user": "wang", "password": PASSWORD}).status_code == 303
            csrf = http.get("/api/state").json()["csrf"]
            events: list[dict] = []
            stop = threading.Event()
            reader = threading.Thread(target=_events, args=(url, http.cookies, events, stop), daemon=True)
            reader.start()
            wait_until(lambda: bool(events), 10, "the first state event")
            first = events[-1]["live"][depth_fp]
            assert first["depth_mm"] == 190.0 and first["reading_ms"] == (now - 3 * MIN) // 1_000_000

            # one more reading, 23 cm: no alert changes state, yet the row moves, pushed over the stream
            seen = len(events)
            reading_ns = now - 2 * MIN
            fleet.send(WATER[0], reading_ns, distance_mm=2000.0 - 230.0)
            assert fleet.pub.flush(10)
            wait_until(lambda: any(e["live"].get(depth_fp, {}).get("depth_mm") == 230.0 for e in events[seen:]), 5,
                       "a state event with the new depth")
            stop.set()
            live = next(e for e in events[seen:] if e["live"].get(depth_fp, {}).get("depth_mm") == 230.0)["live"]
            assert store.get(depth_fp).value == 160.0  # (no transition stored: the value came from the engine)
            for fp in (depth_fp, rising_fp):
                row = live[fp]
                assert row["reading_ms"] == reading_ns // 1_000_000
                assert abs(row["rise_cm_h"] - 180.0) < 1.0, row  # 30 mm a minute
                assert abs(row["eta_s"] - 80.0) < 2.0, row  # 40 mm to go at 0.5 mm/s
                assert row["eta_at_ms"] == row["reading_ms"] + int(row["eta_s"] * 1000)
            assert live[stale_fp]["eta_at_ms"] < time.time_ns() // 1_000_000 - 20 * 60_000

            # a silence from the desk
            body = {"comment": "泵车已到位", "minutes": 30}
            assert http.post(f"/api/alerts/{rising_fp}/silence", json=body,
                             headers={"X-CSRF-Token": csrf}).status_code == 200
            silences = http.get("/api/state").json()["silences"]
            assert silences[rising_fp]["by"] == "wang" and silences[rising_fp]["comment"] == "泵车已到位"
            assert depth_fp not in silences

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url)
                page.fill("input[name=user]", "wang")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("#live:not(.off)", timeout=10_000)
                depth_row = page.locator(f'tr[data-fingerprint="{depth_fp}"]')
                assert "23.0 cm" in depth_row.locator("td.depth").inner_text()
                assert "读数" in depth_row.locator("td.depth").inner_text()
                assert "+180" in depth_row.locator("td.rate").inner_text()
                stale_eta = page.locator(f'tr[data-fingerprint="{stale_fp}"] td.eta').inner_text()
                assert "已过" in stale_eta and "分钟" not in stale_eta, stale_eta
                state = page.locator(f'tr[data-fingerprint="{rising_fp}"] td.state').inner_text()
                assert state.startswith("静默至 ") and "wang：泵车已到位" in state, state
                assert "静默至" in page.locator(".legend").inner_text()
            finally:
                browser.close()

        shown = alerts_show(cfg.alerts_database(), depth_fp)["alert"]
        assert shown["measured"].startswith("160 mm") and shown["measured_at"]  # says the value is as of then
    fleet.pub.close()


def test_an_empty_registry_is_warned_about_at_start(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                                    influx_db: str) -> None:
    """QA3 F13: `[registry] path` at an empty file ran "0 devices" without a word."""
    cfg = make_config(tmp_path, mosquitto, influxd, influx_db)
    Registry(cfg.registry_database()).close()
    with captured_log("WARNING") as lines, running(cfg):
        pass
    assert any("holds no devices" in x and "device import" in x for x in lines), lines
