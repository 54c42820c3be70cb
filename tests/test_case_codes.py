"""A case without a category code is not sent silently: `check-config` names the setting and the code
the city must fill in."""

from __future__ import annotations

import getpass
import time
from pathlib import Path

from conftest import captured_log
from typer.testing import CliRunner

from alerts.model import fingerprint
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore
from cli.app import app
from core.transition import AlertState, AlertTransition, Severity
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.alerting import RulesAndAlerts
from service.config import load_config, parse_config


def check(tmp_path: Path, receiver: str) -> str:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"[alerts.receivers.cases]\n{receiver}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(cfg), "check-config"])
    assert result.exit_code == 0, result.output
    return result.stderr


def test_check_config_warns_of_a_flood_case_without_a_code(tmp_path: Path):
    err = check(tmp_path, 'type = "case_platform"\nurl = "http://127.0.0.1:9"\nedition = "2026"')
    line = next(x for x in err.splitlines() if "road_waterlogging" in x)
    assert "warning:" in line and "道路积水" in line and "GB/T 47678.5-2026" in line
    assert "alerts.receivers.cases.categories_file" in line and '2026 = "…"' in line
    assert "[categories.road_waterlogging]" in line and "cjt214 = '0406'" in line


def test_check_config_is_quiet_about_categories_that_have_codes(tmp_path: Path):
    err = check(tmp_path, 'type = "case_platform"\nurl = "http://127.0.0.1:9"\nedition = "cjt214"')
    assert "road_waterlogging" not in err and "bin_overflow" not in err
    assert "noise_disturbance" in err  # CJ/T 214 has no noise code: the city must fill one in


def test_start_up_warns_of_a_case_category_without_a_code(tmp_path: Path):
    with captured_log("WARNING") as lines:
        cfg = parse_config({"registry": {"path": str(tmp_path / "registry.sqlite")},
                            "alerts": {"db_path": str(tmp_path / "alerts.sqlite"), "receivers": {
                                "cases": {"type": "case_platform", "url": "http://127.0.0.1:9"}}}},
                           base_dir=tmp_path, environ={})
        Registry(cfg.registry_database()).close()
        view = RegistryView(cfg.registry_database())
        RulesAndAlerts(cfg, view).alerts.close()
        view.close()
    assert any(x.startswith("WARNING alerts.receivers.cases: case category 'road_waterlogging'") for x in lines), lines


def test_an_ack_from_the_command_line_is_sent_to_the_open_case(tmp_path: Path, database: str):
    """`urbansense alerts ack` with the service's config enqueues the case platform's update (who, why),
    with the alert store in a SQLite file or in the config's [database] PostgreSQL."""
    cfg_file = tmp_path / "config.toml"
    shared = f'[database]\nurl = "{database}"\n' if "://" in database else ""
    cfg_file.write_text(shared + '[alerts]\ndb_path = "alerts.sqlite"\n[alerts.receivers.cases]\n'
                        'type = "case_platform"\nurl = "http://127.0.0.1:9"\nedition = "cjt214"\n'
                        '[[alerts.routes]]\nroute = "case"\nreceivers = ["cases"]\n', encoding="utf-8")
    cfg = load_config(cfg_file, environ={})
    alerts = AlertsRuntime(cfg.alerts, {}.get, db_path=cfg.alerts_database())
    alerts.handle(AlertTransition("bin.full", "BN-1", AlertState.PENDING, AlertState.FIRING, Severity.INFO,
                                  time.time_ns(), 85.0, 80.0, "case", field_name="fill_pct", aggregate="last"))
    alerts.close()
    fp = fingerprint("bin.full", "BN-1")
    result = CliRunner().invoke(app, ["--config", str(cfg_file), "alerts", "ack", fp, "--by", "wang",
                                      "--comment", "已通知环卫"])
    assert result.exit_code == 0, result.output
    store = AlertStore(cfg.alerts_database())
    last = store.outbox(fp)[-1]
    assert (last.receiver, last.event, last.body["action"]) == ("cases", "acknowledged", "update")
    me = getpass.getuser()  # the OS user is the actor; --by is kept as a note
    assert last.body["operator"] == me and "已通知环卫 [--by wang]" in last.body["comment"]
    assert store.audit()[0]["user"] == me
    store.close()
    assert (tmp_path / "alerts.sqlite").exists() == (not shared)  # PostgreSQL: no file on this machine
