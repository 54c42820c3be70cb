"""CLI conventions: `--version`, an example in every `--help`, documented exit codes and JSON shapes."""

from __future__ import annotations

import json
import re
import time
from importlib.metadata import version

import typer
from typer.testing import CliRunner

from alerts.config import AlertsConfig
from alerts.manager import AlertLifecycle
from alerts.notifiers import build_notifiers
from alerts.routing import Router
from alerts.store import AlertStore
from cli.app import app
from core.database import migrate, open_engine
from core.transition import AlertState, AlertTransition, Severity
from provisioning.schema import COMPONENT as REGISTRY
from provisioning.schema import MIGRATIONS as REGISTRY_MIGRATIONS
from service.config import config_model

runner = CliRunner()
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


def _walk(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the tree (a group has `commands`)."""
    out = [path]
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        if not getattr(sub, "hidden", False):
            out += _walk(sub, (*path, name))
    return out


def test_every_help_of_the_command_tree_has_an_example() -> None:
    paths = _walk(typer.main.get_command(app))
    assert len(paths) > 35
    missing = []
    for path in paths:
        r = runner.invoke(app, [*path, "--help"], env=WIDE)
        assert r.exit_code == 0, (path, r.output)
        if "Example" not in r.output or "urbansense " not in r.output.split("Example", 1)[1]:
            missing.append(" ".join(path) or "(root)")
    assert not missing, f"--help without an example: {missing}"


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"urbansense {version('urbansense')}"


def test_alert_times_are_in_the_configured_city_zone_with_the_zone_shown(tmp_path, monkeypatch, database) -> None:
    monkeypatch.setenv("TZ", "UTC")   # the machine's zone must not matter
    time.tzset()
    cfg = AlertsConfig.model_validate({"receivers": {}, "default_receivers": []})
    store = AlertStore(database)
    m = AlertLifecycle(store, Router(cfg.routes, cfg.default_receivers), build_notifiers(cfg), {}.get)
    started = 1_784_592_000 * 10**9  # 2026-07-21T00:00:00Z = 08:00 in Shanghai, 09:00 in Tokyo
    m.handle(AlertTransition("water.depth", "WL-1", AlertState.PENDING, AlertState.FIRING, Severity.CRITICAL,
                             started, 300.0, 270.0, "emergency"))
    store.close()
    config = tmp_path / "config.toml"
    shared = "://" in database
    where = f'[database]\nurl = "{database}"\n[alerts]\n' if shared else f'[alerts]\ndb_path = "{database}"\n'
    config.write_text(where + 'timezone = "Asia/Tokyo"\n')
    r = runner.invoke(app, ["--config", str(config), "alerts", "list"], env=WIDE)
    assert r.exit_code == 0, r.output
    assert "SINCE (Asia/Tokyo)" in r.output and "07-21 09:00" in r.output
    r = runner.invoke(app, ["--config", str(config), "alerts", "list", "--json"], env=WIDE)
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["started"] == "2026-07-21T09:00:00+09:00"
    monkeypatch.delenv("TZ")
    time.tzset()


def test_json_shapes_listings_are_json_lines_single_results_one_object(tmp_path, database) -> None:
    reg = ["--registry", database]
    for n in (1, 2):
        assert runner.invoke(app, ["device", "add", f"WL-{n}", "--key", f"24e124713c21000{n}", "--model",
                                   "milesight-em500-udl", "--mount-height-mm", "2000", *reg]).exit_code == 0
    listing = runner.invoke(app, ["device", "list", "--json", *reg]).stdout.splitlines()
    assert [json.loads(line)["id"] for line in listing] == ["WL-1", "WL-2"]
    history = runner.invoke(app, ["device", "history", "WL-1", "--json", *reg]).stdout.splitlines()
    assert all(isinstance(json.loads(line), dict) for line in history) and len(history) == 1
    one = runner.invoke(app, ["device", "show", "WL-2", "--json", "--no-live", *reg]).stdout
    assert len(one.strip().splitlines()) == 1 and json.loads(one)["id"] == "WL-2"
    models = runner.invoke(app, ["models", "--json"]).stdout.splitlines()
    assert len(models) > 10 and all(isinstance(json.loads(line), dict) for line in models)
    check = runner.invoke(app, ["rules", "check", "--json", *reg]).stdout
    doc = json.loads(check)
    assert doc["errors"] == [] and "water.depth" in [r["id"] for r in doc["rules"]]


def test_usage_errors_exit_2_failures_exit_1(tmp_path) -> None:
    reg = ["--registry", str(tmp_path / "r.sqlite")]
    assert runner.invoke(app, ["device", "list", "--kind", "water", *reg]).exit_code == 2
    assert runner.invoke(app, ["device", "list", "--no-such-option"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    assert runner.invoke(app, ["device", "show", "NOPE", "--no-live", *reg]).exit_code == 1


def test_config_section_names_survive_in_every_help_and_in_error_text(tmp_path) -> None:
    """qa2 F4: rich markup read `[database]` as a style tag and dropped it ("default:  url"). Every section name a
    help text mentions is shown as written, and so is one in an error printed through rich."""
    sections = set(config_model().model_fields) | {"desk.users", "alerts.receivers", "alerts.routes"}
    token = re.compile(r"\[([a-z_.]+)\]")
    eaten = []
    for path in _walk(typer.main.get_command(app)):
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        raw = " ".join([command.help or ""] + [getattr(p, "help", None) or "" for p in command.params])
        wanted = {m for m in token.findall(raw) if m in sections}
        if wanted:
            shown = runner.invoke(app, [*path, "--help"], env=WIDE).output
            eaten += [f"{' '.join(path)}: [{m}]" for m in wanted if f"[{m}]" not in shown]
    assert not eaten, f"section names eaten by rich markup: {eaten}"

    registry = tmp_path / "registry.sqlite"
    engine = open_engine(str(registry))
    migrate(engine, REGISTRY, REGISTRY_MIGRATIONS[:1])  # a registry an older urbansense left behind
    engine.dispose()
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nmigrate_on_start = false\n[registry]\npath = "{registry}"\n')
    r = runner.invoke(app, ["--config", str(config), "device", "list"], env=WIDE)
    assert r.exit_code != 0 and "set [database] migrate_on_start = true" in r.output, r.output
