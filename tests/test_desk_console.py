"""The emergency desk console in a real headless browser (Debian's chromium, driven by Playwright), served
by the real service on a real broker and influxd: log in, see a flood alert arrive live within 2 s of
the uplink that causes it, acknowledge it, and find the acknowledgement (with the user) in
`urbansense alerts show` and in the case platform's update. Wrong passwords and requests without a
session are refused. A screenshot of the page during the storm is saved by the run."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import typer
from playwright.sync_api import sync_playwright
from servicekit import make_config, running, wait_until
from test_alerting_e2e import WATER, Fleet
from typer.testing import CliRunner

from alerts.model import fingerprint
from alerts.testing import RecordingServer
from cli.alerts import register
from provisioning.registry import Registry
from service.desk.auth import hash_password
from sim.daemons import Daemon

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "rain-desk-2026!"


def alerts_show(db: Path, ref: str) -> dict:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """urbansense"""

    register(app, db_path=lambda ctx: db)
    result = CliRunner().invoke(app, ["alerts", "show", ref, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_the_desk_sees_the_storm_live_and_acknowledges_it(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                                          influx_db: str) -> None:
    with RecordingServer() as cases:
        cfg = make_config(
            tmp_path, mosquitto, influxd, influx_db,
            alerts={"db_path": str(tmp_path / "alerts.sqlite"),
                    "receivers": {"cases": {"type": "case_platform", "url": cases.url, "edition": "cjt214"}},
                    "routes": [{"route": "emergency", "receivers": ["cases"]},
                               {"route": "case", "receivers": ["cases"]}],
                    "outbox": {"poll_interval_s": 0.2}},
            desk={"enabled": True, "port": 0, "users": {"wang": hash_password(PASSWORD)}})
        with Registry(cfg.registry_database()) as reg:
            for d in WATER:
                reg.add(d, by="test")
        fleet = Fleet(mosquitto.port)
        with running(cfg) as svc:
            assert svc.desk is not None
            url = svc.desk.url
            assert url.startswith("http://127.0.0.1:")
            # no session, wrong password: refused (each login is an argon2 check: seconds on a loaded machine)
            with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as http:
                assert http.get("/api/state").status_code == 401
                assert http.get("/events").status_code == 401
                assert http.get("/").headers["location"] == "/login"
                assert http.post("/api/alerts/1/ack", json={"comment": "x"}).status_code == 401
                wrong = http.post("/login", data={"user": "wang", "password": "wrong"})
                assert wrong.status_code == 401 and "desk_session" not in wrong.cookies
                assert http.post("/login", data={"user": "nobody", "password": PASSWORD}).status_code == 401
                ok = http.post("/login", data={"user": "wang", "password": PASSWORD})
                assert ok.status_code == 303
                # a session but no CSRF token: an action is refused
                assert http.post("/api/alerts/1/ack", json={"comment": "x"}).status_code == 403

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 900})
                    page.goto(url)
                    assert page.url.endswith("/login")
                    page.fill("input[name=user]", "wang")
                    page.fill("input[name=password]", PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_selector("#live:not(.off)", timeout=10_000)
                    assert page.locator("path.leaflet-interactive").count() == 3  # the gauges on the map
                    assert page.locator("#user").inner_text() == "wang"

                    # the storm: one gauge at 32 cm, above the 27 cm closure depth, another rising
                    now = time.time_ns()
                    for k, depth in enumerate((100.0, 130.0, 160.0, 190.0)):
                        fleet.send(WATER[1], now - (4 - k) * 60_000_000_000, distance_mm=2000.0 - depth)
                    assert fleet.pub.flush(10)
                    t0 = time.monotonic()
                    fleet.send(WATER[0], now, distance_mm=2000.0 - 320.0)
                    assert fleet.pub.flush(10)
                    row = page.locator('tr[data-rule="water.depth"][data-device="WL-CY-1"]')
                    row.wait_for(timeout=2_000)
                    seen_after = time.monotonic() - t0
                    assert seen_after < 2.0, seen_after
                    assert "严重" in row.inner_text() and "32.0 cm" in row.inner_text()
                    assert page.locator("#cue").is_visible()  # the visible cue of a new critical alert
                    assert page.evaluate("document.body.dataset.beeps") == "1"  # and the audible one, once
                    assert page.title().startswith("【严重告警】")
                    assert page.locator('path.leaflet-interactive[fill="#c62828"]').count() == 1
                    page.locator('tr[data-device="WL-CY-2"]').first.wait_for(timeout=10_000)
                    # flood alerts first, critical before warning
                    first = page.locator("#alerts tbody tr").first
                    assert first.get_attribute("data-device") == "WL-CY-1"
                    wait_until(lambda: "已送达" in page.locator("#notifications").inner_text(), 10,
                               "the case platform's delivery shown")
                    shot = tmp_path / "desk-storm.png"
                    page.screenshot(path=str(shot), full_page=True)
                    assert shot.stat().st_size > 10_000
                    if os.environ.get("URBANSENSE_ARTEFACTS"):
                        Path(os.environ["URBANSENSE_ARTEFACTS"]).mkdir(parents=True, exist_ok=True)
                        shutil.copy(shot, Path(os.environ["URBANSENSE_ARTEFACTS"]) / shot.name)

                    # acknowledge with a comment
                    row.locator("button.ack").click()
                    page.fill("#action-comment", "已派排水抢险队")
                    page.click("#action-ok")
                    page.locator('tr[data-rule="water.depth"][data-device="WL-CY-1"] td.state',
                                 has_text="wang").wait_for(timeout=5_000)
                finally:
                    browser.close()

            fp = fingerprint("water.depth", "WL-CY-1")
            shown = alerts_show(cfg.alerts_database(), fp)["alert"]
            assert (shown["state"], shown["acknowledged_by"], shown["ack_comment"]) == \
                ("acknowledged", "wang", "已派排水抢险队")
            wait_until(lambda: any(r.json.get("operator") == "wang" for r in cases.accepted), 10,
                       "the case platform's update naming the user")
            # silence another alert through the API, as the page does: CSRF token from the page's state
            with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as http:
                assert http.post("/login", data={"user": "wang", "password": PASSWORD}).status_code == 303
                csrf = http.get("/api/state").json()["csrf"]
                target = fingerprint("water.depth", "WL-CY-2")
                body = {"comment": "泵车已到位", "minutes": 30}
                foreign = http.post(f"/api/alerts/{target}/silence", json=body,
                                    headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
                assert foreign.status_code == 403
                done = http.post(f"/api/alerts/{target}/silence", json=body, headers={"X-CSRF-Token": csrf})
                assert done.status_code == 200, done.text
            wait_until(lambda: any("已静默" in (r.json.get("comment") or "") and r.json["device_id"] == "WL-CY-2"
                                   for r in cases.accepted), 10, "the case platform's update for the silence")
            assert svc.metrics_server is not None
            metrics = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
            assert 'urbansense_alerts{rule_id="water.depth",severity="critical",state="acknowledged"} 1.0' in metrics
            assert 'urbansense_notifications_sent_total{receiver="cases"}' in metrics
            assert "urbansense_outbox_oldest_age_seconds" in metrics
            audit = svc.alerting.alerts.store.audit()
            assert any(a["user"] == "wang" and a["action"] == "ack" and "WL-CY-1" in a["target"] for a in audit)
            assert any(a["action"] == "login_failed" for a in audit)
            assert any(a["user"] == "wang" and a["action"] == "silence" and "泵车已到位" in a["detail"] for a in audit)
        fleet.pub.close()
    update = next(r.json for r in cases.accepted if r.json.get("operator") == "wang")
    assert update["action"] == "update" and update["device_id"] == "WL-CY-1"
    assert "已派排水抢险队" in update["comment"] and update["case_id"]
    assert cases.accepted[0].json["action"] == "open"
