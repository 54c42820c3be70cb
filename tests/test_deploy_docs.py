"""The deployment docs stay true: docs/deploy.md, deploy/compose.yaml and deploy/systemd/ name only config
keys, environment variables, metrics, commands and flags that exist, and the compose file parses and names
the services it claims. No container runtime runs here: the compose file is checked, not started.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError
from servicekit import make_config, running, wait_until

from cli.app import app
from core.validation import describe_errors
from service.app import Service
from service.config import CONFIG_ENV, SECRET_ENV, config_model
from service.workers import Worker, WorkerMetrics, WorkerPool
from sim.daemons import Daemon

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOC = ROOT / "docs" / "deploy.md"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
CONFIGS = [DEPLOY / "systemd" / "config.toml", DEPLOY / "compose" / "urbansense.toml"]
COMPOSE = DEPLOY / "compose.yaml"
MOSQUITTO_CONF = DEPLOY / "compose" / "mosquitto" / "mosquitto.conf"
SERVICES = {"mosquitto", "influxdb", "postgres", "grafana", "leader-a", "leader-b", "ingest-1", "ingest-2"}
"""The services docs/deploy.md says the compose file starts."""


def deploy_texts() -> dict[str, str]:
    """Every file of the deployment a reader follows, by its path relative to the repository."""
    files = [DOC, COMPOSE, MOSQUITTO_CONF, *UNITS, *CONFIGS, *sorted((DEPLOY / "systemd").glob("*.example")),
             DEPLOY / "Containerfile", DEPLOY / "systemd" / "urbansense.target",
             DEPLOY / "compose" / "secrets" / "README.md"]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}


# --- config keys ---------------------------------------------------------------------------------------


def validate_config(data: dict[str, Any], source: str) -> None:
    """`data` against the config model: an unknown section or key, or a wrong value, fails naming it.
    (Not `parse_config`: that also opens the TLS files, which live on the city's machines.)"""
    model = config_model()
    try:
        model.model_validate({**data, "base_dir": Path(".")})
    except ValidationError as exc:
        pytest.fail(f"{source}: " + "; ".join(describe_errors(exc, model=model)))


def section_model(path: str) -> type[BaseModel] | None:
    """The pydantic model of a `[a.b]` section path, None when there is no such section."""
    model: Any = config_model()
    for part in path.split("."):
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def test_the_shipped_config_files_and_the_docs_toml_blocks_are_valid_configs() -> None:
    for path in CONFIGS:
        validate_config(tomllib.loads(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/deploy.md shows the cluster's config.toml"
    assert tomllib.loads(blocks[0]) == tomllib.loads(CONFIGS[0].read_text(encoding="utf-8")), \
        "docs/deploy.md's config.toml and deploy/systemd/config.toml differ"
    for i, block in enumerate(blocks):
        validate_config(tomllib.loads(block), f"docs/deploy.md toml block {i + 1}")


def test_every_config_key_named_in_the_docs_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = re.findall(r"`\[([a-z_.]+)\] ([a-z_0-9]+)", text)
    assert len(named) >= 15, "the docs name their keys as `[section] key`"
    assert ("database", "url") in named and ("cluster", "takeover_s") in named
    missing = []
    for section, key in named:
        model = section_model(section)
        if model is None or key not in model.model_fields:
            missing.append(f"[{section}] {key}")
    assert not missing, f"docs/deploy.md names config keys that do not exist: {missing}"


def test_every_environment_variable_named_is_one_urbansense_reads() -> None:
    known = set(SECRET_ENV.values()) | {CONFIG_ENV}
    for name, text in deploy_texts().items():
        unknown = sorted(set(re.findall(r"\bURBANSENSE_[A-Z_]+\b", text)) - known)
        assert not unknown, f"{name} names environment variables urbansense does not read: {unknown}"


# --- commands and flags --------------------------------------------------------------------------------


@functools.cache
def command_tree() -> Any:
    """The `urbansense` click command (typer's own click: walked by its attributes); built once."""
    return typer.main.get_command(app)


def urbansense_invocations(text: str) -> list[list[str]]:
    """The arguments of every `urbansense …` command line in a text (code blocks, inline code, ExecStart=):
    a word `urbansense` (or a path ending in /bin/urbansense) followed by a global option or a command."""
    commands = set(getattr(command_tree(), "commands", {}))
    stops = {"`", "|", "||", "&&", ";", "\\"}
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        tokens = [t.strip("\"'") for t in re.findall(r'"[^"]*"|\'[^\']*\'|`|[^\s`]+', line)]
        for i, tok in enumerate(tokens):
            if tok != "urbansense" and not tok.endswith("/bin/urbansense"):
                continue
            args = []
            for t in tokens[i + 1:]:
                if t in stops or t.startswith(("#", ">", "|", "2>")):
                    break
                args.append(t)
            if args and (args[0].startswith("--") or args[0] in commands):
                out.append(args)
    return out


def check_invocation(words: list[str], where: str) -> None:
    """Walk the click command tree: each subcommand and each `--option` must exist where it is used."""
    command = command_tree()
    path: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            param = next((p for p in command.params if name in (*p.opts, *p.secondary_opts)), None)
            assert param is not None, f"{where}: `urbansense {' '.join(words)}`: {' '.join(path) or 'urbansense'} " \
                                      f"has no option {name}"
            i += 1 if "=" in word or getattr(param, "is_flag", False) else 2
            continue
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            sub = subcommands.get(word)
            assert sub is not None, f"{where}: `urbansense {' '.join(words)}`: no command {' '.join([*path, word])}"
            command, path = sub, [*path, word]
        i += 1
    assert path, f"{where}: `urbansense {' '.join(words)}` names no command"


def test_every_urbansense_command_and_flag_named_exists() -> None:
    seen = 0
    for name, text in deploy_texts().items():
        for words in urbansense_invocations(text):
            check_invocation(words, name)
            seen += 1
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    for service, spec in compose["services"].items():
        cmd = spec.get("command")
        if cmd and cmd[0] == "urbansense":
            check_invocation(cmd[1:], f"compose.yaml service {service}")
            seen += 1
    assert seen >= 10


def test_the_checker_refuses_a_made_up_flag_and_command() -> None:
    with pytest.raises(AssertionError, match="has no option --no-such-flag"):
        check_invocation(["run", "--no-such-flag"], "test")
    with pytest.raises(AssertionError, match="no command device frobnicate"):
        check_invocation(["device", "frobnicate"], "test")
    with pytest.raises(AssertionError, match="\\[nope\\] key"):
        if section_model("nope") is None:
            raise AssertionError("[nope] key")


# --- the compose file and the units ---------------------------------------------------------------------


def test_compose_parses_names_its_services_and_publishes_only_on_loopback() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert set(compose["services"]) == SERVICES
    doc = DOC.read_text(encoding="utf-8")
    for service in SERVICES:
        assert f"`{service}`" in doc, f"docs/deploy.md does not explain the compose service {service}"
    for name, spec in compose["services"].items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host's loopback"
        for volume in spec.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./") and "secrets" not in source and not source.endswith("passwd"):
                target = DEPLOY / source
                assert target.exists() or (name == "grafana"), f"{name} mounts {source}, which is not shipped"
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("ingest-1", "ingest-2"):  # a stable ingest id each: its MQTT session is resumed after a restart
        assert compose["services"][name]["command"][-2:] == ["--ingest-id", name]
    conf = dict(line.split(None, 1) for line in MOSQUITTO_CONF.read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert conf["persistence"] == "true" and int(conf["max_queued_messages"]) >= 1_000_000
    assert conf["allow_anonymous"] == "false"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="no docker-compose (./run installs it)")
def test_docker_compose_parses_and_validates_the_compose_file(tmp_path: Path) -> None:
    """Compose's own schema check (`docker-compose config`: parse, validate, resolve; no container starts).
    The secret files and the broker's password file are the operator's: empty stand-ins here."""
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    for name in ("urbansense.env", "influxdb.env", "grafana.env", "postgres_password", "grafana_admin_password"):
        (deploy / "compose" / "secrets" / name).write_text("")
    (deploy / "compose" / "mosquitto" / "passwd").write_text("")
    run = ["docker-compose", "--project-name", "urbansense", "--file", "compose.yaml", "config"]
    r = subprocess.run([*run, "--quiet"], cwd=deploy, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([*run, "--services"], cwd=deploy, capture_output=True, text=True, timeout=120)
    assert set(r.stdout.split()) == SERVICES, r.stdout + r.stderr


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("unit", [p.name for p in UNITS])
def test_units_are_hardened_and_keep_secrets_off_the_command_line(unit: str) -> None:
    s = unit_settings(DEPLOY / "systemd" / unit)
    assert s["User"] == ["urbansense"] and s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]
    assert s["ReadWritePaths"] and all(p.startswith("/var/lib/urbansense") for p in s["ReadWritePaths"])
    assert s["EnvironmentFile"] == ["/etc/urbansense/secrets.env"]
    (exec_start,) = s["ExecStart"]
    assert not re.search(r"password|token|secret|://[^/\s]*@", exec_start, re.I), exec_start
    assert "--config /etc/urbansense/config.toml run" in exec_start


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units_and_rates_their_exposure_ok(tmp_path: Path) -> None:
    for unit in UNITS:  # a template is verified as one of its instances
        copy = tmp_path / unit.name.replace("@.", "@1.")
        copy.write_text(unit.read_text(encoding="utf-8"))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)], capture_output=True, text=True,
                           timeout=60)
        complaints = [line for line in (r.stdout + r.stderr).splitlines()
                      if line.strip() and "/opt/urbansense/venv/bin/urbansense is not executable" not in line]
        assert not complaints, f"{unit.name}: {complaints}"
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(copy)], capture_output=True,
                           text=True, timeout=60)
        level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        assert level and float(level.group(1)) <= 2.0, f"{unit.name}: {r.stdout[-400:]}{r.stderr[-400:]}"


def test_template_unit_for_ingest_workers_and_the_leader_unit_exist() -> None:
    assert {p.name for p in UNITS} == {"urbansense.service", "urbansense-ingest@.service"}
    assert "--role leader" in unit_settings(DEPLOY / "systemd" / "urbansense.service")["ExecStart"][0]
    assert "--role ingest" in unit_settings(DEPLOY / "systemd" / "urbansense-ingest@.service")["ExecStart"][0]


# --- metrics -------------------------------------------------------------------------------------------


def exported_names(text: str) -> set[str]:
    """Metric names a Prometheus scrape of `text` shows: every sample and every # TYPE line."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def scrape(svc: Service) -> str:
    assert svc.metrics_server is not None
    return httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics", timeout=10).text


def test_every_metric_named_is_exported_by_a_running_service(tmp_path: Path, mosquitto: Daemon,
                                                             influxd: Daemon, influx_db: str) -> None:
    """One process as today, then one cluster process (ingest + leader, SQLite: the leader lock is a file
    lock), and the --workers pool's collector: together they export every metric the deployment names."""
    named = {m for text in deploy_texts().values() for m in re.findall(r"\burbansense_[a-z0-9_]+", text)}
    assert len(named) >= 15
    with running(make_config(tmp_path / "single", mosquitto, influxd, influx_db)) as svc:
        exported = exported_names(scrape(svc))
    assert "urbansense_uplinks_received_total" in exported
    cluster = make_config(tmp_path / "cluster", mosquitto, influxd, influx_db,
                          cluster={"enabled": True, "role": "both", "takeover_s": 2.0})
    with running(cluster) as svc:
        wait_until(lambda: "urbansense_leader 1.0" in scrape(svc), 30, "leadership")
        wait_until(lambda: "urbansense_bus_held" in scrape(svc), 30, "the leader's readings consumer")
        exported |= exported_names(scrape(svc))
        assert svc.metrics_server is not None
        ready = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/readyz", timeout=10)
    assert ready.status_code == 200 and "leadership: leader" in ready.text, ready.text  # docs: "What to monitor"
    pool = CollectorRegistry()
    pool.register(WorkerMetrics(WorkerPool(workers=[Worker("ingest-w1", [])])))
    exported |= exported_names(generate_latest(pool).decode())
    assert not named - exported, f"named in the deployment docs but not exported: {sorted(named - exported)}"
