"""Silences that would not do what their author believes are refused with a specific error: a matcher on a
label no rule or device has (a misspelt `devcie_id` silences nothing), and a silence longer than
`[alerts] max_silence_s` (400 days outlives everyone who knows why it was set) — in `urbansense alerts
silence` and in the desk console."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from alerts.config import AlertsConfig
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore
from cli.app import app
from core.transition import AlertState, AlertTransition, Severity
from service.config import DeskConfig
from service.desk.server import DeskServer

RULES = '''
[[rule]]
id = "water.pump_team"
description = "a city rule with a label of its own"
kind = "water_level"
field = "water_depth_mm"
aggregate = "last"
op = ">"
threshold = 100
severity = "warning"
labels = { team = "drainage" }
'''


def config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "city_rules.toml").write_text(RULES, encoding="utf-8")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[alerts]\ndb_path = "{tmp_path / "alerts.sqlite"}"\n{extra}\n'
                   f'[rules]\nfiles = ["{tmp_path / "city_rules.toml"}"]\n', encoding="utf-8")
    AlertStore(tmp_path / "alerts.sqlite").close()
    return cfg


def silence(cfg: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["--config", str(cfg), "alerts", "silence", "--comment", "pump on site", *args])
    assert result.exit_code == code, result.output
    return result.output


def test_a_misspelt_label_is_refused_naming_it_and_the_known_ones(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    out = silence(cfg, "-m", "devcie_id=WL-CY-001", "--for", "2h", code=1)
    assert "no rule or device has the label 'devcie_id'" in out and "did you mean 'device_id'?" in out
    assert "Known labels:" in out and "district" in out and "team" in out and "case_category" in out
    out = silence(cfg, "-m", "rule_id=water.depth", "-m", "distrct!=朝阳区", "--for", "2h", code=1)
    assert "'distrct'" in out and "did you mean 'district'?" in out  # a negated one would silence everything
    # labels of devices, of the presets and of the city's own rule files are accepted
    assert silence(cfg, "-m", "device_id=WL-CY-001", "-m", "team=drainage", "--for", "2h").startswith("silence 1:")
    assert silence(cfg, "-m", "case_category=road_waterlogging", "--for", "2h").startswith("silence 2:")
    assert silence(cfg, "-m", "devcie_id=WL-CY-001", "--for", "2h", "--any-label").startswith("silence 3:")


def test_a_silence_longer_than_the_configured_maximum_is_refused(tmp_path: Path) -> None:
    out = silence(config(tmp_path), "-m", "district=朝阳区", "--for", "400d", code=1)
    assert "a silence of 400d is longer than the longest allowed, 7d ([alerts] max_silence_s)" in out
    assert silence(config(tmp_path), "-m", "district=朝阳区", "--for", "7d").startswith("silence 1:")
    (tmp_path / "city").mkdir()
    longer = config(tmp_path / "city", "max_silence_s = 2592000")
    assert silence(longer, "-m", "district=朝阳区", "--for", "30d").startswith("silence 1:")
    assert "longer than the longest allowed, 30d" in silence(longer, "-m", "district=朝阳区", "--for", "31d", code=1)


@pytest.mark.asyncio
async def test_the_console_refuses_a_silence_longer_than_the_maximum(tmp_path: Path) -> None:
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    alerts = AlertsRuntime(AlertsConfig(max_silence_s=3 * 3600), lambda _id: None, db_path=tmp_path / "a.sqlite")
    alerts.handle(AlertTransition("water.depth", "WL-1", AlertState.PENDING, AlertState.FIRING, Severity.CRITICAL,
                                  1_700_000_000_000_000_000, 320.0, 270.0, "emergency", "水深 32 cm"))
    ref = alerts.store.firing()[0].fingerprint
    desk = DeskServer(DeskConfig(enabled=True, port=0, users={"wang": cheap.hash("pw-desk-1")}), alerts, dict)
    await desk.start()
    try:
        async with httpx.AsyncClient(base_url=desk.url, follow_redirects=False) as http:
            assert (await http.post("/login", data={"user": "wang", "password": "pw-desk-1"})).status_code == 303
            csrf = (await http.get("/api/state")).json()["csrf"]

            async def silence_for(minutes: float) -> httpx.Response:
                return await http.post(f"/api/alerts/{ref}/silence", json={"comment": "泵车已到位", "minutes": minutes},
                                       headers={"X-CSRF-Token": csrf})

            too_long = await silence_for(400 * 24 * 60)
            assert too_long.status_code == 400 and "between 1 and 180 ([alerts] max_silence_s)" in too_long.text
            assert (await silence_for(180)).status_code == 200
    finally:
        await desk.stop()
        alerts.store.close()
