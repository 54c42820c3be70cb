"""The `urbansense` command: one typer app; each module of `cli` adds its commands through the table `COMMANDS`."""

from __future__ import annotations

import asyncio
import os
import re
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated

import typer

from alerts.config import AlertsConfig
from alerts.manager import AlertLifecycle
from alerts.notifiers import build_notifiers
from alerts.routing import Router
from alerts.silencing import SilencePolicy, known_labels
from alerts.store import AlertStore
from cli import alerts, audit, db, deadletter, decoders, demo, desk, device, grafana, report, rules, simulate, trace
from cli.state import State, state
from core.database import MigrationError, holds_nothing
from provisioning.view import RegistryView
from rules.loader import RuleError, check_rules, load_rules
from service.alerting import case_code_warnings, unrouted_warnings
from service.app import file_lock_cluster, run_service
from service.cluster import Role
from service.config import CONFIG_ENV, DEFAULT_PATH, ConfigError, RulesConfig, load_config
from service.httpserver import ListenError
from service.ingest_lock import IngestIdHeld
from service.logs import setup_logging
from service.workers import WorkersRefused, run_with_workers, workers_config

INGEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What `run --ingest-id` accepts: one MQTT topic level, also part of client ids and a spool folder name."""

CONVENTIONS = (
    "Configuration comes from ./config.toml, --config FILE or $URBANSENSE_CONFIG.",
    "Times are shown in the city's time zone (\\[alerts] timezone, default Asia/Shanghai), with the zone named; "
    "times you type without an offset are read in it.",
    "--json: a listing or a stream prints JSON Lines (one object per line: device list, device history, "
    "device watch, models, alerts list, alerts silences, alerts outbox, deadletter list, rules test); "
    "a single result prints one JSON object (device show, decode, alerts show, deadletter show, rules check).",
    "Exit codes: 0 ok; 1 failure (not found, invalid data refused, a server unreachable, rule errors); "
    "2 usage (unknown command, option or value, e.g. --kind water).",
    "Example: [bold]urbansense device list --district 朝阳 --json[/bold]",
)
"""The conventions every command keeps, shown by `urbansense --help` (and in README.md "Commands")."""

app = typer.Typer(
    name="urbansense",
    help="The city's sensor nervous system: collect, decode, store, watch.\n\n" + "\n\n".join(CONVENTIONS),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"urbansense {package_version('urbansense')}")
        raise typer.Exit(0)


@app.callback()
def _main(ctx: typer.Context,
          config: Annotated[Path | None, typer.Option("--config", "-c", envvar="URBANSENSE_CONFIG",
                                                      help="config file (default ./config.toml)")] = None,
          version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False,
          ) -> None:
    setup_logging("WARNING")  # a command's output is its own lines; `run`, `demo` and `trace` set their own level
    ctx.obj = State(config)
    ctx.obj.load_city_models()


@app.command()
def run(ctx: typer.Context,
        role: Annotated[Role | None, typer.Option(
            "--role", help="cluster role, overriding \\[cluster] role (and turning the cluster on): both, ingest or "
                           "leader")] = None,
        workers: Annotated[int, typer.Option(
            "--workers", min=0, max=64, help="lead here and run N ingest worker processes beside (0 = none)")] = 0,
        ingest_id: Annotated[str, typer.Option(
            "--ingest-id", help="this ingest process's name in the cluster (default: the host name); its MQTT "
                                "session and readings topic end with it, so keep it stable")] = "",
        retire: Annotated[bool, typer.Option(
            "--retire", help="leave the cluster for good: drain this ingest id's broker sessions (taking nothing "
                             "new), end them, exit 0; for scaling ingest down")] = False,
        metrics_port: Annotated[int | None, typer.Option(
            "--metrics-port", min=0, max=65535, help="override \\[metrics] port (0 = any free port)")] = None,
        ) -> None:
    """Run the service until Ctrl-C or SIGTERM (then it flushes, acknowledges and exits 0).

    If one of its tasks dies, it logs why, answers 503 on /readyz, flushes and exits 1, for
    systemd (Restart=on-failure) or the container runtime to restart it. In a cluster
    (\\[cluster] enabled, or --role) one instance leads the rules and alerts; the others stand by
    and take over within \\[cluster] takeover_s (docs/deploy.md). A cluster needs \\[database] url
    on PostgreSQL (its advisory lock is the one leader lock all machines see); on SQLite files
    run refuses \\[cluster] enabled or --role leader/both, and only --workers N (one machine,
    a file lock) runs a cluster.

    With --workers N this process campaigns to lead (rules, alerts, outbox) and N child processes
    ingest through MQTT 5 shared subscriptions, each restarted if it dies; SIGTERM stops them all.
    A second run with ingest ids that already run on this machine is refused (exit 1).

    Example: [bold]urbansense --config /etc/urbansense/config.toml run[/bold]
    Example: [bold]urbansense --config /etc/urbansense/config.toml run --role ingest[/bold]
    Example: [bold]urbansense --config /etc/urbansense/config.toml run --workers 2[/bold]
    """
    if ingest_id and not INGEST_ID.fullmatch(ingest_id):
        raise typer.BadParameter(f"{ingest_id!r}: letters, digits, '-' and '_' only (it becomes an MQTT client id "
                                 "suffix and a topic level)", param_hint="--ingest-id")
    cfg = state(ctx).config
    setup_logging(cfg.logging.level, process=ingest_id if role == "ingest" else "leader" if workers else "")
    if metrics_port is not None:
        cfg = cfg.model_copy(update={"metrics": cfg.metrics.model_copy(update={"port": metrics_port})})
    if role is not None:
        cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"enabled": True, "role": role})})
    if not workers and cfg.cluster.campaigns and (problem := file_lock_cluster(cfg)):
        typer.echo(f"error: refused: {problem}", err=True)
        raise typer.Exit(2)
    if workers:
        if role not in (None, "leader"):
            raise typer.BadParameter(f"--workers makes this process the leader; it cannot also be --role {role}")
        try:
            cfg = workers_config(cfg)
        except WorkersRefused as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        path = state(ctx).config_path
        service = run_with_workers(cfg, workers, config_path=str(path) if path else None, ingest_base=ingest_id)
    else:
        if retire and not (cfg.cluster.enabled and cfg.cluster.role == "ingest" and ingest_id):
            raise typer.BadParameter("--retire needs --role ingest and the --ingest-id of the worker to retire")
        service = run_service(cfg, ingest_id=ingest_id, retiring=retire)
    try:
        code = asyncio.run(service)
    except (ListenError, IngestIdHeld) as exc:  # one line naming the address / the ids and pid, not a traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


@app.command("check-config")
def check_config(ctx: typer.Context) -> None:
    """Validate the configuration and print it resolved (secrets hidden).

    Example: [bold]urbansense --config config.toml check-config[/bold]
    """
    cfg = state(ctx).config
    data = cfg.model_dump(mode="json")  # secret types dump masked
    typer.echo(f"configuration OK: {state(ctx).config_path or 'config.toml'}")
    for name, section in data.items():
        typer.echo(f"[{name}] {section}")
    rules = load_rules([cfg.path(f) for f in cfg.rules.files], include_presets=cfg.rules.presets,
                       tz=cfg.rules.timezone)
    if problem := file_lock_cluster(cfg):
        typer.echo(f"warning: {problem}", err=True)
    for warning in (*case_code_warnings(cfg, rules), *unrouted_warnings(cfg, rules)):
        typer.echo(f"warning: {warning}", err=True)


def _configured_manager(ctx: typer.Context, store: AlertStore) -> AlertLifecycle:
    """The alert manager of the configured receivers and routes on `store` (devices from the registry)."""
    cfg = state(ctx).config
    ac = cfg.alerts
    devices: dict = {}
    where = cfg.registry_database()
    if isinstance(where, str) or where.exists():  # a PostgreSQL URL, or a SQLite file already made
        view = RegistryView(where, migrate_schema=holds_nothing(where, "devices"))
        devices = dict(view.by_id)
        view.close()
    return AlertLifecycle(store, Router(ac.routes, ac.default_receivers), build_notifiers(ac, base_dir=cfg.base_dir),
                        devices.get, repeat_interval_s=ac.repeat_interval_s, inhibit_rules=ac.inhibit_rules,
                        timezone=ac.timezone)


def _configured_silence_policy(ctx: typer.Context) -> SilencePolicy:
    """The labels the configured rules (presets included when on) and devices give alerts, and the configured
    longest silence."""
    try:
        cfg = state(ctx).config
    except ConfigError:
        cfg = None
    rc = cfg.rules if cfg is not None else RulesConfig()
    try:
        rules = load_rules([cfg.path(f) for f in rc.files] if cfg is not None else [], include_presets=rc.presets,
                           tz=rc.timezone)
    except RuleError:  # `rules check` reports those; the presets still say what most labels are
        rules = check_rules([], include_presets=True).rules
    max_s = cfg.alerts.max_silence_s if cfg is not None else AlertsConfig().max_silence_s
    return SilencePolicy(known_labels({k for r in rules for k, _ in r.labels}), max_s)


def _configured_timezone(ctx: typer.Context) -> str:
    """`[alerts] timezone` of the config, or Asia/Shanghai when there is no config file (`--db` alone)."""
    path = state(ctx).config_path
    if path is None and not os.environ.get(CONFIG_ENV) and not Path(DEFAULT_PATH).exists():
        return "Asia/Shanghai"
    try:
        return load_config(path).alerts.timezone
    except ConfigError:
        return "Asia/Shanghai"


def _configured_alerts_db(ctx: typer.Context) -> str | Path:
    """The alert store of the config that `--config` (or $URBANSENSE_CONFIG) names: its [database] PostgreSQL
    URL, else its SQLite file."""
    return state(ctx).config.alerts_database()


COMMANDS = (device.register, decoders.register, rules.register, deadletter.register, grafana.register,
            simulate.register, demo.register, audit.register, report.register, trace.register, desk.register,
            db.register)
"""The command table: each module adds its commands to `app`, in this order (the order `--help` lists them)."""

for _register in COMMANDS:
    _register(app)
alerts.register(app, db_path=_configured_alerts_db, manager=_configured_manager, timezone=_configured_timezone,
                silence_policy=_configured_silence_policy)


def main() -> None:
    try:
        app()
    except MigrationError as exc:  # a store behind this urbansense, from a command with no handler of its own
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
