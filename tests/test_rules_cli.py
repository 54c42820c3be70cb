"""`rules check` and `rules test` through typer's CliRunner on a local app."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.rules import register
from rules.loader import PRESETS_DIR

WIDE = {"COLUMNS": "300", "NO_COLOR": "1"}


@pytest.fixture
def cli():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """urbansense (test root)"""

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], env=WIDE)


def test_check_lists_the_presets(cli):
    result = cli("rules", "check")
    assert result.exit_code == 0, result.output
    for rule_id in ("water.depth", "noise.zone_limit", "device.silent", "parking.no_parking_zone"):
        assert rule_id in result.output


def test_check_reports_each_error_with_file_rule_and_key(cli, tmp_path):
    bad = tmp_path / "city.toml"
    bad.write_text('[[rule]]\nid = "deep"\nkind = "water_level"\nfield = "depth_mm"\nop = ">="\n'
                   'threshold = 150\nfor = "ten minutes"\n', encoding="utf-8")
    result = cli("rules", "check", bad)
    assert result.exit_code == 1
    assert "city.toml: rule 'deep': key 'for':" in result.output.replace("\n", "")
    assert "1 error(s)" in result.output


def write_csv(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "readings.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_test_replays_rising_water_through_the_preset(cli, tmp_path):
    depths = [50, 90, 130, 150, 190, 230, 270, 300, 250, 100, 80, 60, 40, 30, 20, 10, 0]
    rows = ["time,depth_mm"] + [f"2024-07-20T15:{i:02d}:00+08:00,{d}" for i, d in enumerate(depths)]
    result = cli("rules", "test", PRESETS_DIR / "water_level.toml", "--device", "w1", "--from",
                 write_csv(tmp_path, rows), "--rule", "water.depth", "--until", "30m")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "water.depth" in line and "→" in line]
    assert len(lines) == 3
    assert "inactive → firing" in lines[0] and "warning" in lines[0] and "2024-07-20T15:03:00+08:00" in lines[0]
    assert "firing → firing" in lines[1] and "critical" in lines[1] and "15:06:00" in lines[1]
    assert "firing → resolved" in lines[2] and "15:19:00" in lines[2]  # below 120 at 15:09, + 10 min


def test_test_uses_the_zone_class_and_local_time(cli, tmp_path):
    rows = ["time,laeq_db"] + [f"2024-07-01 {h:02d}:{m:02d}:00,55" for h in (20, 21, 22) for m in range(0, 60, 5)]
    csv_path = write_csv(tmp_path, rows)
    args = ("rules", "test", PRESETS_DIR / "noise.toml", "--device", "n1", "--from", csv_path,
            "--rule", "noise.zone_limit")
    zone2 = cli(*args, "--zone-class", "2")
    assert zone2.exit_code == 0, zone2.output
    assert "2024-07-01T22:00:00+08:00" in zone2.output and "inactive → firing" in zone2.output
    zone4a = cli(*args, "--zone-class", "4a")  # night limit 55: 55 is not over it
    assert zone4a.exit_code == 0 and "→" not in zone4a.output


def test_test_accepts_epoch_times(cli, tmp_path):
    rows = ["time,fill_pct", "1720000000,85", "1720000300,90", "1720000600,95", "1720000900,96"]
    result = cli("rules", "test", PRESETS_DIR / "bin_fill.toml", "--device", "b1", "--from",
                 write_csv(tmp_path, rows), "--rule", "bin.full")
    assert result.exit_code == 0, result.output
    assert "pending → firing" in result.output


@pytest.mark.parametrize(("rows", "words"), [
    (["when,depth_mm", "2024-07-01T00:00:00Z,1"], "first column must be 'time'"),
    (["time,depth_mm", "yesterday,1"], "readings.csv:2: time 'yesterday'"),
    (["time,depth_mm", "2024-07-01T00:00:00Z,deep"], "readings.csv:2: column 'depth_mm': 'deep' is not a number"),
])
def test_test_explains_a_bad_csv(cli, tmp_path, rows, words):
    result = cli("rules", "test", PRESETS_DIR / "water_level.toml", "--device", "w1", "--from",
                 write_csv(tmp_path, rows))
    assert result.exit_code == 2
    assert words in result.output.replace("\n", "")


def test_test_needs_a_kind_when_the_rules_have_none(cli, tmp_path):
    result = cli("rules", "test", PRESETS_DIR / "device_health.toml", "--device", "d", "--from",
                 write_csv(tmp_path, ["time,battery_pct", "1720000000,10"]))
    assert result.exit_code == 2 and "--kind" in result.output
    ok = cli("rules", "test", PRESETS_DIR / "device_health.toml", "--device", "d", "--kind", "dust", "--from",
             write_csv(tmp_path, ["time,battery_pct", "1720000000,10", "1720000300,9"]))
    assert ok.exit_code == 0 and "device.battery_low" in ok.output
