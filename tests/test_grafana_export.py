"""`urbansense grafana export`: a provisioning tree Grafana 11.6 accepts, identical on every run, no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard
from typer.testing import CliRunner

from cli.app import app
from grafana.dashboards import DATASOURCE_UID, SCHEMA_VERSION, build_dashboards
from service.config import parse_config

PANEL_TYPES = {"timeseries", "stat", "bargauge", "table", "geomap"}
BUILTIN_VARS = {"timeFilter", "__interval", "interval", "__range_s", "tag_device_id", "tag_district", "__all"}


def _export(tmp: Path, *args: str, env: dict | None = None) -> dict[str, bytes]:
    out = tmp / "prov"
    r = CliRunner().invoke(app, ["--config", "config.toml", "grafana", "export", str(out), *args], env=env)
    assert r.exit_code == 0, r.output
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_export_writes_the_provisioning_tree_and_a_reexport_is_identical(tmp_path):
    first = _export(tmp_path)
    second = _export(tmp_path)
    assert first == second
    assert set(first) == {"datasources/urbansense.yaml", "dashboards/urbansense.yaml",
                          *(f"dashboards/urbansense/{uid}.json" for uid in build_dashboards())}
    provider = yaml.safe_load(first["dashboards/urbansense.yaml"])["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("dashboards/urbansense")
    ds = yaml.safe_load(first["datasources/urbansense.yaml"])["datasources"][0]
    assert (ds["uid"], ds["type"], ds["jsonData"]["version"], ds["jsonData"]["dbName"]) == (
        DATASOURCE_UID, "influxdb", "InfluxQL", "urbansense")


def test_credentials_are_environment_references_never_values(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[influxdb]\nusername = "grafana"\n', encoding="utf-8")
    out = tmp_path / "prov"
    env = {"URBANSENSE_INFLUXDB_PASSWORD": "s3cret-pw", "URBANSENSE_INFLUXDB_TOKEN": "tok-123"}
    r = CliRunner().invoke(app, ["--config", str(cfg), "grafana", "export", str(out)], env=env)
    assert r.exit_code == 0, r.output
    text = (out / "datasources" / "urbansense.yaml").read_text(encoding="utf-8")
    assert "s3cret-pw" not in text and "tok-123" not in text
    ds = yaml.safe_load(text)["datasources"][0]
    assert ds["user"] == "grafana"
    assert ds["secureJsonData"] == {"password": "${URBANSENSE_INFLUXDB_PASSWORD}",
                                    "httpHeaderValue1": "Token ${URBANSENSE_INFLUXDB_TOKEN}"}


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def test_dashboards_are_valid_for_the_targeted_schema_version():
    for uid, dash in build_dashboards("zh").items():
        assert dash["schemaVersion"] == SCHEMA_VERSION and dash["uid"] == uid and len(uid) <= 40
        typed = Dashboard.from_json(dash)  # the SDK's generated models for Grafana 11.6 read it back
        assert typed.uid == uid and len(typed.panels or []) == len(dash["panels"])
        declared = {v["name"] for v in dash["templating"]["list"]}
        panels = dash["panels"]
        assert len({p["id"] for p in panels}) == len(panels)
        for i, p in enumerate(panels):
            assert p["type"] in PANEL_TYPES, p["type"]
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0
            assert not any(_overlap(g, o["gridPos"]) for o in panels[:i]), f"{uid}: {p['title']} overlaps"
            refs = [t["refId"] for t in p["targets"]]
            assert len(set(refs)) == len(refs) and refs
            for t in p["targets"]:
                assert t["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID} and t["rawQuery"] is True
                used = set(re.findall(r"\$\{?(\w+)", t["query"]))
                assert used <= declared | BUILTIN_VARS, f"{uid}: undeclared {used - declared - BUILTIN_VARS}"
            assert p["fieldConfig"]["defaults"].get("unit") or p["type"] in ("table", "geomap") or \
                p["fieldConfig"]["overrides"], f"{uid}: {p['title']} has no unit"
        assert dash["annotations"]["list"][0]["target"]["query"].startswith('SELECT "summary"')


def test_units_thresholds_and_both_languages():
    zh, en = build_dashboards("zh"), build_dashboards("en")
    assert zh["urbansense-overview"]["title"] == "城市感知总览"
    assert en["urbansense-overview"]["title"] == "City overview"
    units = {p["fieldConfig"]["defaults"].get("unit") for d in en.values() for p in d["panels"]}
    assert {"suffix: dB(A)", "suffix: µg/m³", "percent", "lengthmm"} <= units
    depth = next(p for p in en["urbansense-water-level"]["panels"] if p["title"].startswith("Water depth"))
    steps = [s["value"] for s in depth["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 150, 270]
    assert depth["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    noise = en["urbansense-noise"]["panels"]
    assert [p["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] for p in noise] == [50, 55, 60, 65, 70, 70]


def test_language_comes_from_config(tmp_path):
    cfg = parse_config({"grafana": {"language": "en"}}, environ={})
    assert cfg.grafana.language == "en"
    files = _export(tmp_path, "--language", "en")
    assert json.loads(files["dashboards/urbansense/urbansense-noise.json"])["title"] == "Noise"
