"""The desk console against hostile text (qa3 F5, F7), in a real headless browser (Debian's chromium):
a device provisioned with markup in its address and street shows it as literal text on the map's
tooltip and in the alert table, and the browser fetches nothing it names; the page may load images
only from itself, `data:` and the configured tile server. A comment holding control characters
(ESC, U+202E, NUL) is refused with a clear 400."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright

from alerts.config import AlertsConfig
from alerts.model import fingerprint
from alerts.runtime import AlertsRuntime
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity
from service.config import ConfigError, parse_config, tile_origin
from service.desk.auth import hash_password
from service.desk.server import DeskServer

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "rain-desk-2026!"
CONFIG = AlertsConfig.model_validate({
    "receivers": {"desk": {"type": "webhook", "url": "http://127.0.0.1:9/desk"}},
    "default_receivers": ["desk"],
})
# a 1×1 PNG: what the tile server answers
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@contextmanager
def image_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server answering every GET with a PNG; yields (its origin, the paths asked for)."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def desk_for(tmp_path: Path, devices: dict[str, Device], **desk: object) -> tuple[DeskServer, AlertsRuntime]:
    cfg = parse_config({"desk": {"enabled": True, "port": 0, "users": {"wang": hash_password(PASSWORD)}, **desk}},
                       environ={}).desk
    alerts = AlertsRuntime(CONFIG, devices.get, db_path=tmp_path / "alerts.sqlite")
    return DeskServer(cfg, alerts, lambda: devices), alerts


def flood(device: str) -> AlertTransition:
    return AlertTransition("water.depth", device, AlertState.PENDING, AlertState.FIRING, Severity.CRITICAL,
                           time.time_ns(), 320.0, 270.0, "emergency")


@pytest.mark.asyncio
async def test_markup_in_a_device_s_text_shows_as_text_and_fetches_nothing(tmp_path: Path) -> None:
    with image_server() as (beacon, beaconed), image_server() as (tiles, tiled):
        address = f'<img src="{beacon}/address.png">示范路'
        street = f'<b style="font-size:40px">水位正常</b><img src="{beacon}/street.png">'
        evil = Device("WL-EVIL-1", "24e1247100ee0001", "milesight-em500-udl", "water_level", 39.90, 116.40,
                      address, "东城区", street)
        devices = {evil.id: evil}
        desk, alerts = desk_for(tmp_path, devices, tile_url=tiles + "/{z}/{x}/{y}.png",
                                tile_attribution=f'<img src="{beacon}/attribution.png">市测绘院')
        await desk.start()
        try:
            alerts.handle_many([flood(evil.id)])
            async with httpx.AsyncClient(base_url=desk.url) as http:
                csp = (await http.get("/login")).headers["Content-Security-Policy"]
            assert f"img-src 'self' data: {tiles};" in csp  # not any http: or https: image
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                try:
                    page = await browser.new_page(viewport={"width": 1200, "height": 800})
                    await page.goto(desk.url)
                    await page.fill("input[name=user]", "wang")
                    await page.fill("input[name=password]", PASSWORD)
                    await page.click("button[type=submit]")
                    await page.wait_for_selector('tr[data-device="WL-EVIL-1"]', timeout=10_000)
                    await page.hover("path.leaflet-interactive")
                    tip = page.locator(".leaflet-tooltip")
                    await tip.wait_for(timeout=5_000)
                    assert await tip.inner_text() == f"WL-EVIL-1 {address}"  # the markup, as literal text
                    row = page.locator('tr[data-device="WL-EVIL-1"]')
                    assert street in await row.inner_text() and address in await row.inner_text()
                    attribution = page.locator(".leaflet-control-attribution")
                    assert "市测绘院" in await attribution.inner_text()
                    assert '<img src="' in await attribution.inner_text()
                    assert await page.locator("#map img[src^='" + beacon + "'], #alerts img, .leaflet-tooltip img,"
                                              " .leaflet-control-attribution img").count() == 0
                    await page.wait_for_timeout(500)  # time for any stray fetch to arrive
                finally:
                    await browser.close()
            assert beaconed == []  # nothing named by the device's text was fetched
            assert tiled, "the configured tile server's images are still allowed"
        finally:
            await desk.stop()
            alerts.close()


@pytest.mark.asyncio
async def test_a_comment_with_control_characters_is_refused_and_a_line_break_is_kept(tmp_path: Path) -> None:
    gauge = Device("WL-1", "24e1247100ee0002", "milesight-em500-udl", "water_level", 39.9, 116.4, "下穿通道")
    desk, alerts = desk_for(tmp_path, {gauge.id: gauge})
    await desk.start()
    try:
        alerts.handle_many([flood(gauge.id)])
        fp = fingerprint("water.depth", gauge.id)
        async with httpx.AsyncClient(base_url=desk.url) as http:
            assert (await http.post("/login", data={"user": "wang", "password": PASSWORD})).status_code == 303
            csrf = (await http.get("/api/state")).json()["csrf"]
            headers = {"X-CSRF-Token": csrf}
            for comment, named in (("ok \u001b[2J\u001b[31mRED", "U+001B"), ("ok \u202egnp.exe", "U+202E"),
                                   ("ok \u0000", "U+0000"), ("\u200b", "U+200B")):
                for action, body in (("ack", {"comment": comment}), ("silence", {"comment": comment, "minutes": 30})):
                    r = await http.post(f"/api/alerts/{fp}/{action}", json=body, headers=headers)
                    assert r.status_code == 400, (action, comment, r.text)
                    assert named in r.text and "plain text" in r.text
            assert alerts.store.get(fp).acked_by is None  # type: ignore[union-attr]
            r = await http.post(f"/api/alerts/{fp}/ack", json={"comment": "已派抢险队\n泵车 2 台"}, headers=headers)
            assert r.status_code == 200, r.text
        assert alerts.store.get(fp).ack_comment == "已派抢险队\n泵车 2 台"  # type: ignore[union-attr]
    finally:
        await desk.stop()
        alerts.close()


def test_the_tile_url_gives_the_image_origin_and_nothing_else_is_accepted() -> None:
    assert tile_origin("https://tiles.city.gov.cn/{z}/{x}/{y}.png?key=1") == "https://tiles.city.gov.cn"
    assert tile_origin("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://*.tile.openstreetmap.org"
    assert tile_origin("http://127.0.0.1:8081/{z}/{x}/{y}.png") == "http://127.0.0.1:8081"
    for bad in ("javascript:alert(1)", "tiles/{z}/{x}/{y}.png", "https://{a}.x.org/{z}", "https://a.org; img-src *",
                "data:image/png,xx"):
        with pytest.raises(ConfigError, match=r"desk\.tile_url: expected an http"):
            parse_config({"desk": {"tile_url": bad}}, environ={})
