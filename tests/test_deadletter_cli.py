"""Poison messages never wedge the session, and `urbansense deadletter` lets an operator see and replay them;
with the dead letters and the registry in a SQLite file or in [database] PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import influx_query
from servicekit import recent_ns, running, wait_until
from typer.testing import CliRunner

from cli.app import app
from provisioning.registry import Registry
from service.config import load_config
from sim.daemons import Daemon
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet


def cli(cfg_path: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["--config", str(cfg_path), "deadletter", *args])
    return r.exit_code, r.output


def test_poison_messages_are_dead_lettered_acked_and_replayed_after_the_device_is_registered(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    cfg_path = tmp_path / "config.toml"
    shared = "://" in database
    cfg_path.write_text(f"""
[database]
url = "{database if shared else ''}"
[mqtt]
port = {mosquitto.port}
client_id = "dl-cli"
[influxdb]
url = "{influxd.url}"
database = "{influx_db}"
flush_interval_s = 0.1
[registry]
path = "registry.sqlite"
reload_interval_s = 0.3
[pipeline]
dead_letter_path = "deadletter.sqlite"
[metrics]
port = 0
[logging]
level = "WARNING"
""")
    cfg = load_config(cfg_path)
    devices = demo_fleet({"dust": 4})
    known, stranger = devices[:3], devices[3]
    with Registry(cfg.registry_database()) as reg:
        for d in known:
            reg.add(d, by="test")
    sim = FleetSimulator(devices, Scenario("calm"), seed=4)
    t0 = recent_ns()
    ups = [sim.uplink(devices[i % 4], 0.0, t0 + i * 1000) for i in range(40)]
    strangers = [u for u in ups if u.device is stranger]

    assert cli(cfg_path, "list")[0] == (0 if shared else 1)  # no store file yet: says so
    with running(cfg) as svc:
        pub = Publisher("127.0.0.1", mosquitto.port)
        pub.publish(ups[0].topic, b'{"deviceInfo": ')  # poison first: what follows must still flow
        for u in ups:
            pub.publish(u.topic, u.event)
        assert pub.flush(30)
        wait_until(lambda: svc.pipeline.stats.received >= 41, 30, "every message")
        consumer = svc.collector("lorawan").consumer
        wait_until(lambda: consumer.stats.acked >= 41, 30, "every message, poison included, to be acknowledged")
        assert svc.pipeline.stats.readings == 40 - len(strangers)

        code, out = cli(cfg_path, "list", "--json")
        assert code == 0, out
        rows = [json.loads(line) for line in out.splitlines()]
        assert sorted(r["reason"] for r in rows) == ["bad_json"] + ["unknown_device"] * len(strangers)
        code, out = cli(cfg_path, "list", "--reason", "unknown_device", "--since", "1h")
        assert code == 0 and f"{len(strangers)} shown" in out and "bad_json 1" in out
        bad = next(r for r in rows if r["reason"] == "bad_json")
        code, out = cli(cfg_path, "show", str(bad["id"]))
        assert code == 0 and '{"deviceInfo": ' in out and "7b 22 64 65" in out and ups[0].topic in out
        assert cli(cfg_path, "show", "999999")[0] == 1
        code, out = cli(cfg_path, "replay")
        assert code == 2 and "--reason" in out
        assert cli(cfg_path, "list", "--since", "yesterday")[0] == 2

        with Registry(cfg.registry_database()) as reg:
            reg.add(stranger, by="test")
        wait_until(lambda: stranger.key in svc.pipeline.view.by_key, 10, "the registry reload")
        code, out = cli(cfg_path, "replay", "--reason", "unknown_device")
        assert code == 0 and f"replayed {len(strangers)} message(s)" in out, out
        wait_until(lambda: svc.pipeline.stats.readings >= 40, 30, "the replayed uplinks")
        code, out = cli(cfg_path, "list", "--pending", "--json")
        assert [json.loads(line)["reason"] for line in out.splitlines()] == ["bad_json"]
        code, out = cli(cfg_path, "replay", "--all")
        assert "replayed 1 message(s)" in out
        wait_until(lambda: svc.pipeline.stats.rejected.get("bad_json") == 2, 30, "the poison to be refused again")
    if shared:  # everything went to PostgreSQL: no SQLite file was made beside the config
        assert not (tmp_path / "registry.sqlite").exists() and not (tmp_path / "deadletter.sqlite").exists()
    stored = influx_query(influxd, influx_db, 'SELECT count("pm2_5_ugm3") FROM "dust" GROUP BY "device_id"')
    per_device = {s["tags"]["device_id"]: s["values"][0][1] for s in stored}
    assert per_device == {d.id: sum(1 for u in ups if u.device is d) for d in devices}
