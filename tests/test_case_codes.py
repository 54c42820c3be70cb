"""A case without a category code is not sent silently: `check-config` names the setting and the code
the city must fill in."""

from __future__ import annotations

from pathlib import Path

from loguru import logger
from typer.testing import CliRunner

from cli.app import app
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.alerting import Alerting
from service.config import parse_config


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
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"), level="WARNING")
    try:
        cfg = parse_config({"registry": {"path": str(tmp_path / "registry.sqlite")},
                            "alerts": {"db_path": str(tmp_path / "alerts.sqlite"), "receivers": {
                                "cases": {"type": "case_platform", "url": "http://127.0.0.1:9"}}}},
                           base_dir=tmp_path, environ={})
        Registry(cfg.path(cfg.registry.path)).close()
        view = RegistryView(cfg.path(cfg.registry.path))
        Alerting(cfg, view).alerts.close()
        view.close()
    finally:
        logger.remove(sink)
    assert any(x.startswith("WARNING alerts.receivers.cases: case category 'road_waterlogging'") for x in lines), lines
