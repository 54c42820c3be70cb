"""Rule authors hear why: `rules check` against what exists, every error in one run; `rules test` explains silence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import captured_log
from typer.testing import CliRunner

from cli.app import app
from core.device import Device
from provisioning.registry import Registry
from provisioning.view import RegistryView
from rules.loader import PRESETS_DIR
from service.alerting import RulesAndAlerts
from service.config import parse_config

WIDE = {"COLUMNS": "300", "NO_COLOR": "1"}
runner = CliRunner()

FOUR_MISTAKES = """
[[rule]]
id = "city.flood_chaoyang"
kind = "water_level"
field = "depth_mm"
op = ">="
threshold = 200
route = "cases"                      # 1: the route is "case"
select = { district = "朝阳区" }      # 2: the registry says 朝阳

[[rule]]
id = "city.puddle"
kind = "water"                       # 3: the kind is water_level
field = "depth_mm"
op = ">="
threshold = 50

[[rule]]
id = "city.night_noise"
kind = "noise"
field = "laeq"                       # 4: the field is laeq_db
aggregate = "laeq"
window = "1h"
op = ">"
threshold = 55
"""


@pytest.fixture
def registry(database: str) -> str:
    """Three devices in a registry: a SQLite file, then the shared PostgreSQL (a URL, as `--registry` takes)."""
    path = database
    with Registry(path) as reg:
        reg.add(Device("ZS-CY-001", "70b3d57ed0001234", "milesight-ws302", "noise", district="朝阳", zone_class="2"))
        reg.add(Device("ZS-HD-001", "70b3d57ed0001235", "milesight-ws302", "noise", district="海淀", zone_class="2"))
        reg.add(Device("WL-CY-001", "24e124713c210001", "milesight-em500-udl", "water_level", district="朝阳",
                       install={"mount_height_mm": 2000.0}))
    return path


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def test_rules_check_prints_all_four_mistakes_of_a_file_in_one_run(tmp_path: Path, registry: str) -> None:
    city = tmp_path / "city.toml"
    city.write_text(FOUR_MISTAKES, encoding="utf-8")
    r = run("rules", "check", city, "--registry", registry)
    assert r.exit_code == 1
    errors = r.output.replace("\n", "").split("error: ")[1:]
    assert len(errors) == 4, r.output
    assert "rule 'city.flood_chaoyang': key 'route': 'cases' is not a route" in errors[0]
    assert "did you mean 'case'?" in errors[0]
    assert "key 'select.district': '朝阳区': district has no registered device" in errors[1]
    assert "did you mean '朝阳'?" in errors[1]
    assert "rule 'city.puddle': key 'kind': 'water' is not a reading kind" in errors[2]
    assert "did you mean 'water_level'?" in errors[2]
    assert "rule 'city.night_noise': key 'field': 'laeq' is not reported by noise" in errors[3]
    assert "did you mean 'laeq_db'?" in errors[3]
    assert "4 error(s)" in r.output


def test_rules_check_passes_a_file_that_names_what_exists(tmp_path: Path, registry: str) -> None:
    fixed = (FOUR_MISTAKES.replace('"cases"', '"case"').replace('"朝阳区"', '"朝阳"')
             .replace('"water"', '"water_level"').replace('"laeq"  ', '"laeq_db"'))
    fixed = fixed.replace('field = "laeq"', 'field = "laeq_db"')
    city = tmp_path / "city.toml"
    city.write_text(fixed, encoding="utf-8")
    r = run("rules", "check", city, "--registry", registry)
    assert r.exit_code == 0, r.output
    assert "city.flood_chaoyang" in r.output


NIGHT = ["time,laeq_db"] + [f"2024-07-01 {h:02d}:{m:02d}:00,58" for h in (22, 23) for m in range(0, 60, 5)]
"""Two night hours at 58 dB(A): over the zone-2 night limit (50), under zone 4b's (60)."""


def write(tmp_path: Path, rows: list[str], *, bom: bool = False) -> Path:
    path = tmp_path / "night.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(rows) + "\n").encode("utf-8"))
    return path


def test_rules_test_reads_zone_class_and_district_from_the_registry(tmp_path: Path, registry: str) -> None:
    r = run("rules", "test", PRESETS_DIR / "noise.toml", "--device", "ZS-CY-001", "--from", write(tmp_path, NIGHT),
            "--rule", "noise.zone_limit", "--registry", registry)
    assert r.exit_code == 0, r.output
    assert "ZS-CY-001 from the registry: kind noise, district 朝阳, zone class 2" in r.output
    assert "inactive → firing" in r.output           # zone 2 night limit 50 < 58
    # the DevEUI on the label works too, and an explicit option overrides the registry
    r = run("rules", "test", PRESETS_DIR / "noise.toml", "--device", "70-B3-D5-7E-D0-00-12-34", "--from",
            write(tmp_path, NIGHT), "--rule", "noise.zone_limit", "--zone-class", "4b", "--registry", registry)
    assert r.exit_code == 0, r.output
    assert "ZS-CY-001 from the registry" in r.output and "0 transitions" in r.output  # 4b night limit 60 > 58


def test_rules_test_says_when_the_selector_excludes_the_device(tmp_path: Path, registry: str) -> None:
    city = tmp_path / "chaoyang.toml"
    city.write_text('[[rule]]\nid = "cy.loud"\nkind = "noise"\nfield = "laeq_db"\nop = ">"\nthreshold = 55\n'
                    'select = { district = "朝阳" }\n', encoding="utf-8")
    r = run("rules", "test", city, "--device", "ZS-HD-001", "--from", write(tmp_path, NIGHT), "--registry", registry)
    assert r.exit_code == 0, r.output
    assert "rule 'cy.loud' does not apply to ZS-HD-001: its select.district is 朝阳; the device has 海淀" in r.output
    assert "0 transitions" in r.output
    r = run("rules", "test", city, "--device", "ZS-CY-001", "--from", write(tmp_path, NIGHT), "--registry", registry)
    assert "does not apply" not in r.output and "inactive → firing" in r.output


def test_rules_test_says_when_the_csv_lacks_the_rules_field_and_accepts_a_bom(tmp_path: Path, registry: str) -> None:
    rows = ["time,laeq"] + [row.split(",")[0] + ",58" for row in NIGHT[1:]]
    r = run("rules", "test", PRESETS_DIR / "noise.toml", "--device", "ZS-CY-001", "--from", write(tmp_path, rows),
            "--rule", "noise.zone_limit", "--registry", registry)
    assert r.exit_code == 0, r.output
    assert "rule 'noise.zone_limit' watches 'laeq_db', which night.csv has no column for (columns: laeq)" in r.output
    r = run("rules", "test", PRESETS_DIR / "noise.toml", "--device", "ZS-CY-001", "--from",
            write(tmp_path, NIGHT, bom=True), "--rule", "noise.zone_limit", "--registry", registry)
    assert r.exit_code == 0, r.output
    assert "inactive → firing" in r.output


def test_rules_test_without_a_zone_class_says_the_rule_has_no_threshold_for_it(tmp_path: Path) -> None:
    r = run("rules", "test", PRESETS_DIR / "noise.toml", "--device", "n1", "--from", write(tmp_path, NIGHT),
            "--rule", "noise.zone_limit", "--registry", tmp_path / "none.sqlite")
    assert r.exit_code == 0, r.output
    assert "no registry at" in r.output and not (tmp_path / "none.sqlite").exists()
    assert "has thresholds only for zone classes 0, 1, 2, 3, 4a, 4b; n1 has zone class none" in r.output


def test_rules_test_json_is_one_transition_per_line_with_notes_on_stderr(tmp_path: Path, registry: str) -> None:
    r = runner.invoke(app, ["rules", "test", str(PRESETS_DIR / "noise.toml"), "--device", "ZS-CY-001", "--from",
                            str(write(tmp_path, NIGHT)), "--rule", "noise.zone_limit", "--registry", str(registry),
                            "--json"], env=WIDE)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows and rows[0]["rule_id"] == "noise.zone_limit" and rows[0]["to"] == "firing"
    assert rows[0]["time"].endswith("+08:00") and rows[0]["threshold"] == 50.0
    assert "from the registry" in r.stderr


def test_the_service_logs_each_rule_that_names_what_does_not_exist_at_start(tmp_path: Path, registry: str) -> None:
    city = tmp_path / "city.toml"
    city.write_text(FOUR_MISTAKES, encoding="utf-8")
    where = {"database": {"url": registry}} if "://" in registry else {"registry": {"path": registry}}
    cfg = parse_config({**where, "rules": {"files": [str(city)], "warm_up": False},
                        "alerts": {"db_path": str(tmp_path / "alerts.sqlite")}}, base_dir=tmp_path, environ={})
    view = RegistryView(cfg.registry_database())
    try:
        with captured_log("WARNING", "{message}") as lines:
            RulesAndAlerts(cfg, view)
    finally:
        view.close()
    logged = [line for line in lines if line.startswith("rules: ")]
    assert len(logged) == 4, lines
    assert "'cases' is not a route" in logged[0] and "'朝阳区': district has no registered device" in logged[1]
