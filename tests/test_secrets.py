"""Secrets never shown: a distinct secret planted in every secret-bearing setting (file and environment)
appears in no output of `check-config`, `run` at DEBUG, `deadletter list|show`, `/metrics` or an error path."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import orjson
import paho.mqtt.publish as mqtt_publish
from nbiotkit import imei
from typer.testing import CliRunner

from alerts.config import WebhookReceiver
from alerts.model import Delivery
from alerts.notifiers.base import RetryableError
from alerts.notifiers.webhook import WebhookNotifier
from cli.app import app
from core.secrets import SecretUrl, redact_url
from sim.daemons import Daemon, free_port, wait_http_ok
from sim.nbiot import ctwing_push, onenet_push
from storage.deadletter import DeadLetter, DeadLetterStore

CLI = str(Path(sys.executable).parent / "urbansense")

# One distinct secret per setting; the environment's override the file's for the same keys.
FILE = {
    "mqtt.password": "S3cr-mqtt-pw-f1",
    "influxdb.url.password": "S3cr-influx-urlpw-f2",
    "influxdb.password": "S3cr-influx-pw-f3",
    "influxdb.token": "S3cr-influx-token-f4",
    "grafana.url.password": "S3cr-grafana-urlpw-f5",
    "grafana.token": "S3cr-grafana-token-f6",
    "nbiot.ctwing_token": "S3cr-ctwing-f7",
    "nbiot.onenet_token": "S3cr-onenet-f8",
    "webhook.url.query": "S3cr-webhook-query-f9",
    "webhook.headers.Authorization": "S3cr-webhook-auth-f10",
    "case.url.password": "S3cr-case-urlpw-f11",
    "case.headers.X-Api-Key": "S3cr-case-apikey-f12",
    "wecom.key": "S3cr-wecom-key-f13",
    "dingtalk.access_token": "S3cr-ding-token-f14",
    "dingtalk.secret": "SECS3cr-ding-secret-f15",
    "mqtt_receiver.password": "S3cr-mqttrecv-pw-f16",
    "alertmanager.url.password": "S3cr-am-urlpw-f17",
    "metrics.token": "S3cr-metrics-f18",
}
ENV = {
    "URBANSENSE_MQTT_PASSWORD": "S3cr-mqtt-pw-e1",
    "URBANSENSE_INFLUXDB_PASSWORD": "S3cr-influx-pw-e2",
    "URBANSENSE_INFLUXDB_TOKEN": "S3cr-influx-token-e3",
    "URBANSENSE_GRAFANA_TOKEN": "S3cr-grafana-token-e4",
    "URBANSENSE_CTWING_TOKEN": "S3cr-ctwing-e5",
    "URBANSENSE_ONENET_TOKEN": "S3cr-onenet-e6",
    "URBANSENSE_METRICS_TOKEN": "S3cr-metrics-e7",
}
PLANTED = [*FILE.values(), *ENV.values()]


def _config(tmp: Path, mosquitto: Daemon, influxd: Daemon, db: str, metrics_port: int, push_port: int) -> str:
    f = FILE
    return f"""
[mqtt]
port = {mosquitto.port}
client_id = "secrets-test"
username = "svc"
password = "{f['mqtt.password']}"

[influxdb]
url = "http://reader:{f['influxdb.url.password']}@127.0.0.1:{influxd.port}"
database = "{db}"
password = "{f['influxdb.password']}"
token = "{f['influxdb.token']}"
flush_interval_s = 0.1

[grafana]
url = "http://admin:{f['grafana.url.password']}@127.0.0.1:{free_port()}"
token = "{f['grafana.token']}"
timeout_s = 2.0

[nbiot]
push = true
push_port = {push_port}
ctwing_token = "{f['nbiot.ctwing_token']}"
onenet_token = "{f['nbiot.onenet_token']}"

[registry]
path = "{tmp / 'registry.sqlite'}"

[pipeline]
dead_letter_path = "{tmp / 'deadletter.sqlite'}"
log_every_s = 0.0

[metrics]
port = {metrics_port}
token = "{f['metrics.token']}"

[logging]
level = "DEBUG"

[alerts]
db_path = "{tmp / 'alerts.sqlite'}"
default_receivers = ["desk", "cases", "robot", "ding", "bus", "am"]

[alerts.receivers.desk]
type = "webhook"
url = "http://127.0.0.1:{free_port()}/hook?token={f['webhook.url.query']}"
headers = {{ Authorization = "Bearer {f['webhook.headers.Authorization']}" }}

[alerts.receivers.cases]
type = "case_platform"
url = "http://city:{f['case.url.password']}@127.0.0.1:{free_port()}/api"
headers = {{ X-Api-Key = "{f['case.headers.X-Api-Key']}" }}

[alerts.receivers.robot]
type = "wecom"
url = "http://127.0.0.1:{free_port()}/cgi-bin/webhook/send"
key = "{f['wecom.key']}"

[alerts.receivers.ding]
type = "dingtalk"
url = "http://127.0.0.1:{free_port()}/robot/send"
access_token = "{f['dingtalk.access_token']}"
secret = "{f['dingtalk.secret']}"

[alerts.receivers.bus]
type = "mqtt"
port = {mosquitto.port}
username = "alerts"
password = "{f['mqtt_receiver.password']}"

[alerts.receivers.am]
type = "alertmanager"
url = "http://am:{f['alertmanager.url.password']}@127.0.0.1:{free_port()}/api/v2/alerts"
"""


def _leaks(text: str) -> list[str]:
    return [s for s in PLANTED if s in text]


def _cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_planted_secrets_appear_in_no_output(tmp_path: Path, mosquitto: Daemon, influxd: Daemon,
                                             influx_db: str) -> None:
    metrics_port, push_port = free_port(), free_port()
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text(_config(tmp_path, mosquitto, influxd, influx_db, metrics_port, push_port))
    env = {**os.environ, **ENV, "URBANSENSE_CONFIG": str(cfg_path)}
    outputs: dict[str, str] = {}

    r = _cli(env, "check-config")
    assert r.returncode == 0, r.stderr
    assert "***" in r.stdout and "reader:***@127.0.0.1" in r.stdout
    outputs["check-config"] = r.stdout + r.stderr

    # the file's secrets alone (no environment) are hidden too
    r = _cli({**os.environ, "URBANSENSE_CONFIG": str(cfg_path)}, "check-config")
    outputs["check-config (file only)"] = r.stdout + r.stderr

    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http_ok(f"http://127.0.0.1:{metrics_port}/healthz", 60, proc=proc, log=log_path)
        wait_http_ok(f"http://127.0.0.1:{metrics_port}/readyz", 60, proc=proc, log=log_path)
        base = f"http://127.0.0.1:{push_port}/push"
        ctwing, onenet = ENV["URBANSENSE_CTWING_TOKEN"], ENV["URBANSENSE_ONENET_TOKEN"]
        with httpx.Client(timeout=30) as http:
            # an unknown device through the right path token: dead-lettered with its topic
            assert http.post(f"{base}/ctwing/{ctwing}",
                             content=ctwing_push(imei(1), b"\x01", 1_760_000_000_000)
                             ).status_code in (200, 400)
            # a malformed body through the right path token: 400, dead-lettered
            assert http.post(f"{base}/ctwing/{ctwing}", content=b'{"messageType": 1').status_code == 400
            # the file's (overridden) token is refused
            assert http.post(f"{base}/ctwing/{FILE['nbiot.ctwing_token']}",
                             content=ctwing_push(imei(1), b"\x01", 0)).status_code == 401
            assert http.post(f"{base}/onenet", content=onenet_push(onenet, imei(2), b"\x01",
                                                                  1_760_000_000_000)).status_code in (200, 400)
            assert http.post(f"{base}/onenet", content=onenet_push("forged", imei(2), b"\x01",
                                                                  1_760_000_000_000)).status_code == 401
            r = http.get(f"{base}/onenet", params={"msg": "hi", "nonce": "n", "signature": "bad"})
            assert r.status_code == 401
            outputs["push replies"] = r.text
        mqtt_publish.single("application/1/device/0011223344556677/event/up", b"{not json", qos=1,
                            hostname="127.0.0.1", port=mosquitto.port)
        bearer = {"Authorization": f"Bearer {ENV['URBANSENSE_METRICS_TOKEN']}"}
        refused = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert refused.status_code == 401
        outputs["metrics without token"] = refused.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "bad_json" not in outputs.get("metrics", ""):
            outputs["metrics"] = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", headers=bearer).text
            time.sleep(0.2)
        assert 'reason="bad_json"' in outputs["metrics"]
        outputs["readyz"] = httpx.get(f"http://127.0.0.1:{metrics_port}/readyz").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    outputs["run (DEBUG)"] = log_path.read_text()
    assert "DEBUG" in outputs["run (DEBUG)"] and "configuration (secrets masked)" in outputs["run (DEBUG)"]
    assert "stopped:" in outputs["run (DEBUG)"]

    r = _cli(env, "deadletter", "list")
    assert r.returncode == 0, r.stderr
    assert "/push/ctwing/" in r.stdout and "unknown_device" in r.stdout
    outputs["deadletter list"] = r.stdout + r.stderr
    r = _cli(env, "deadletter", "list", "--json")
    outputs["deadletter list --json"] = r.stdout + r.stderr
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            outputs[f"deadletter show {orjson.loads(line)['id']}"] = _cli(
                env, "deadletter", "show", str(orjson.loads(line)["id"])).stdout

    # error paths: Grafana unreachable (URL with credentials), InfluxDB unreachable at start
    r = _cli(env, "grafana", "push")
    assert r.returncode != 0
    outputs["grafana push (unreachable)"] = r.stdout + r.stderr
    down = cfg_path.read_text().replace(f"127.0.0.1:{influxd.port}", f"127.0.0.1:{free_port()}")
    (tmp_path / "down.toml").write_text(down.replace(f"port = {metrics_port}", "port = 0"))
    with open(tmp_path / "down.log", "w") as log:
        proc = subprocess.Popen([CLI, "--config", str(tmp_path / "down.toml"), "run"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "cannot reach InfluxDB" not in (tmp_path / "down.log").read_text():
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    outputs["run, InfluxDB down"] = (tmp_path / "down.log").read_text()
    assert "cannot reach InfluxDB at http://reader:***@127.0.0.1" in outputs["run, InfluxDB down"]

    leaked = {where: _leaks(text) for where, text in outputs.items() if _leaks(text)}
    assert not leaked, f"secrets shown: {leaked}"


def test_notifier_errors_name_the_url_without_its_secrets() -> None:
    secret = "S3cr-hook-qs"
    cfg = WebhookReceiver.model_validate({"type": "webhook", "url": f"http://u:pw-{secret}@127.0.0.1:{free_port()}"
                                          f"/hook?token={secret}", "headers": {"Authorization": secret}})
    assert secret not in repr(cfg) and secret not in str(cfg.model_dump(mode="json"))
    notifier = WebhookNotifier("desk", cfg)

    async def deliver() -> str:
        try:
            await notifier.post_json(notifier.url, {}, Delivery(id=1, fingerprint="f", seq=1, receiver="desk",
                                                                 body={}, attempts=0))
        except RetryableError as exc:
            return str(exc)
        finally:
            await notifier.aclose()
        raise AssertionError("a closed port was reached")

    message = asyncio.run(deliver())
    assert "127.0.0.1" in message and secret not in message and "u:***@" in message


def test_redact_url_masks_password_and_query_values() -> None:
    assert redact_url("http://u:p@h:8086/x?key=abc&db=1") == "http://u:***@h:8086/x?key=***&db=***"
    assert redact_url("https://h/p") == "https://h/p"
    assert redact_url("u:p@h") == "***"
    assert str(SecretUrl("http://a:b@h")) == "http://a:***@h"
    assert SecretUrl("http://a:b@h").get_secret_value() == "http://a:b@h"


def test_dead_letters_stored_before_the_fix_do_not_show_the_path_token(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dl.sqlite") as dl:
        dl.add(DeadLetter(time.time_ns(), "ctwing", "http:/push/ctwing/S3cr-old-token", b"{}", "bad_json", ""))
    (tmp_path / "c.toml").write_text(f'[pipeline]\ndead_letter_path = "{tmp_path / "dl.sqlite"}"\n')
    for args in (["deadletter", "list"], ["deadletter", "list", "--json"], ["deadletter", "show", "1"]):
        out = CliRunner().invoke(app, ["--config", str(tmp_path / "c.toml"), *args]).output
        assert "/push/ctwing/{token}" in out and "S3cr-old-token" not in out, out


# Config mistakes whose error once echoed the input: the whole [alerts] table (unknown receiver),
# a receiver's table (type typo), a secret's own value (wrong type). Distinct secrets per mistake.
MISTAKE_SECRETS = ["S3cr-wecon-key-m1", "S3cr-webhok-urlpw-m2", "S3cr-webhok-query-m3", "87654321",
                   "S3cr-list-token-m4", "55512345", "S3cr-ding-token-m5"]
MISTAKES = f"""
[mqtt]
password = 87654321

[influxdb]
token = ["S3cr-list-token-m4"]

[alerts.receivers.x]
type = "wecon"
key = "S3cr-wecon-key-m1"

[alerts.receivers.y]
type = "webhok"
url = "https://u:S3cr-webhok-urlpw-m2@127.0.0.1:{free_port()}/x?token=S3cr-webhok-query-m3"

[alerts.receivers.ding]
type = "dingtalk"
access_token = "S3cr-ding-token-m5"
secret = 55512345
"""


def test_config_mistakes_name_the_key_but_echo_no_secret(tmp_path: Path) -> None:
    ports = cast(Daemon, SimpleNamespace(port=free_port()))
    good = _config(tmp_path, ports, ports, "db", free_port(), free_port())
    cases = {
        "route to an unknown receiver": (good + '\n[[alerts.routes]]\nroute = "emergency"\n'
                                         'receivers = ["desk", "wecom_desk"]\n',
                                         ["alerts: unknown receiver(s) routes[0]: 'wecom_desk'"]),
        "unknown default receiver": (good.replace('default_receivers = ["desk"', 'default_receivers = ["nosuch"'),
                                     ["alerts: unknown receiver(s) default_receivers: 'nosuch'"]),
        "type typo, wrong-type secrets": (MISTAKES, [
            "alerts.receivers.x: ", "'wecon'", "alerts.receivers.y: ", "'webhok'",
            "mqtt.password: expected a string in quotes, got a number (value hidden)",
            "influxdb.token: expected a string in quotes, got a list (value hidden)",
            "alerts.receivers.ding.dingtalk.secret: expected a string in quotes, got a number (value hidden)"]),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("URBANSENSE_")}
    for name, (text, expected) in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        for command in ("check-config", "run"):
            r = _cli(env, "--config", str(path), command)
            out = r.stdout + r.stderr
            assert r.returncode != 0, f"{name}, {command}: {out}"
            for phrase in expected:
                assert phrase in out, f"{name}, {command}: {phrase!r} not in {out}"
            shown = [s for s in [*PLANTED, *MISTAKE_SECRETS] if s in out]
            assert not shown, f"{name}, {command} shows {shown}: {out}"
