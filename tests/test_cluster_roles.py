"""The role split in a cluster (issue 19), two real services on one machine (SQLite + file lock):
exactly one leads and says so on /readyz, /metrics and in the log; readings reach the leader's
rules through the readings bus; when the leader stops, the standby leads and carries on."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import influx_query
from servicekit import make_config, running, wait_until
from test_alerting_e2e import MIN, RISE, WATER, Fleet

from alerts.store import AlertStore
from provisioning.registry import Registry
from service.app import Service
from sim.daemons import Daemon, free_port


def probe(svc: Service) -> tuple[int, str, float]:
    """(/readyz status, its text, the urbansense_leader gauge)."""
    assert svc.metrics_server is not None
    base = f"http://127.0.0.1:{svc.metrics_server.port}"
    m = re.search(r"^urbansense_leader (\S+)$", httpx.get(f"{base}/metrics", timeout=5).text, re.M)
    ready = httpx.get(f"{base}/readyz", timeout=5)  # after the gauge: a leader is ready only once warm
    assert m, "urbansense_leader is not exported"
    return ready.status_code, ready.text, float(m.group(1))


def test_one_leads_the_readings_reach_its_rules_and_the_standby_takes_over(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    def config(name: str):
        return make_config(tmp_path, mosquitto, influxd, influx_db, database=database,
                           mqtt={"client_id": f"{name}-{influx_db}"[:60]},
                           cluster={"enabled": True, "takeover_s": 2.0, "readings_topic": f"t/{influx_db}/readings",
                                    "leader_client_id": f"leader-{influx_db}"[:60],
                                    "share_group": f"g{influx_db}"[:60]},
                           rules={"tick_interval_s": 0.5},
                           alerts={"db_path": str(tmp_path / "alerts.sqlite")})

    cfg_a, cfg_b = config("a"), config("b")
    with Registry(cfg_a.registry_database()) as reg:
        for d in WATER:
            reg.add(d, by="test")
    base = time.time_ns() - 60 * MIN
    fleet = Fleet(mosquitto.port)
    ctx = {name: running(cfg, ingest_id=name) for name, cfg in (("a", cfg_a), ("b", cfg_b))}
    svc = {name: c.__enter__() for name, c in ctx.items()}
    try:
        wait_until(lambda: sum(probe(s)[2] for s in svc.values()) == 1, 15, "one leader")
        lead = next(name for name, s in svc.items() if probe(s)[2] == 1)
        leader, standby = svc[lead], next(s for name, s in svc.items() if name != lead)
        status, text, _ = probe(leader)
        assert status == 200 and text.startswith("ok; leadership: leader"), text
        status, text, _ = probe(standby)
        assert status == 200 and text.startswith("ok; leadership: standby"), text
        assert standby.alerting is None and leader.alerting is not None

        fleet.water(0, RISE, base)  # readings reach either ingest; the leader's rules see them all
        wait_until(lambda: leader.alerting is not None and
                   {t.device_id for t in leader.alerting.recent if t.rule_id == "water.rising"} ==
                   {d.id for d in WATER}, 30, "water.rising for the 3 gauges at the leader")
        assert standby.alerting is None
        ctx.pop(lead).__exit__(None, None, None)  # the leader stops: it releases the lock, the standby leads
        wait_until(lambda: probe(standby)[2] == 1, 2 * 2.0, "the standby to lead")
        assert probe(standby)[1].startswith("ok; leadership: leader")
        fleet.water(12, [300, 320], base)  # 32 cm: over the 27 cm closure depth
        wait_until(lambda: standby.alerting is not None and
                   any(t.rule_id == "water.depth" and str(t.severity) == "critical"
                       for t in standby.alerting.recent), 30, "the new leader escalating to critical")
    finally:
        for c in ctx.values():
            c.__exit__(None, None, None)
    fleet.pub.close()
    store = AlertStore(cfg_a.alerts_database())
    firing = store.list_alerts(states=("firing",), limit=100)
    store.close()
    assert {(a.rule_id, a.device_id) for a in firing if a.rule_id == "water.depth"} == {
        ("water.depth", d.id) for d in WATER}


def test_readings_stored_while_no_leader_ran_are_notified_by_the_next_leader(
        tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str, database: str) -> None:
    """The warm-up watermark (service/progress.py): readings an ingest-only process stored during a leaderless
    gap are in InfluxDB and on the bus; the next leader must not swallow them in its warm-up, or the
    alert they start would fire silently, never notified."""
    def config(name: str, role: str):
        return make_config(tmp_path, mosquitto, influxd, influx_db, database=database,
                           mqtt={"client_id": f"{name}-{influx_db}"[:60]},
                           cluster={"enabled": True, "role": role, "takeover_s": 2.0,
                                    "readings_topic": f"t/{influx_db}/readings",
                                    "leader_client_id": f"leader-{influx_db}"[:60],
                                    "share_group": f"g{influx_db}"[:60]},
                           rules={"tick_interval_s": 0.5},
                           alerts={"db_path": str(tmp_path / "alerts.sqlite")})

    base = time.time_ns() - 13 * MIN  # minutes 0-11 of the storm end a minute ago: inside every warm-up look-back

    def stored_since(minute: int) -> int:
        series = influx_query(influxd, influx_db,
                              f'SELECT count("depth_mm") FROM "water_level" WHERE time >= {base + minute * MIN}')
        return series[0]["values"][0][1] if series else 0

    with Registry(config("ingest", "ingest").registry_database()) as reg:
        for d in WATER:
            reg.add(d, by="test")
    fleet = Fleet(mosquitto.port)
    with running(config("ingest", "ingest"), ingest_id="ingest"):
        with running(config("a", "leader"), ingest_id="a") as a:
            wait_until(lambda: probe(a)[0] == 200 and probe(a)[2] == 1, 15, "a leading, warm")
            fleet.water(0, RISE[:3], base)  # dry: nothing fires
            wait_until(lambda: a.consumer is not None and a.consumer.stats.readings >= 9, 30,
                       "the first leader to take the dry readings")
        # no leader now: the ingest-only process stores the rising water and queues it for the next leader
        fleet.water(3, RISE[3:], base)
        wait_until(lambda: stored_since(3) == 3 * len(RISE[3:]), 30, "the rise stored by the ingest-only process")
        with running(config("b", "leader"), ingest_id="b") as b:
            wait_until(lambda: b.alerting is not None and
                       {t.device_id for t in b.alerting.recent if t.rule_id == "water.rising"
                        and str(t.to_state) == "firing"} == {d.id for d in WATER},
                       30, "the new leader firing on what was stored while no leader ran")
    fleet.pub.close()


def test_a_cluster_on_sqlite_is_refused_by_run_and_warned_by_check_config(tmp_path: Path) -> None:
    """qa2 F16: `[cluster] enabled` with no `[database] url` used to lead through a file lock on each machine, so
    two machines led at once and every notification went out twice. `run` refuses it (only `run --workers`,
    one machine, runs a cluster on SQLite); `check-config` warns, naming the settings."""
    exe = str(Path(sys.executable).parent / "urbansense")
    config = tmp_path / "config.toml"
    config.write_text(f"[mqtt]\nport = {free_port()}\n[metrics]\nport = 0\n[cluster]\nenabled = true\n")
    for argv in (["run"], ["run", "--role", "leader"]):
        out = subprocess.run([exe, "--config", str(config), *argv], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "refused: [cluster] enabled (or run --role) with an empty [database] url" in out.stderr
        assert "another machine would lead too" in out.stderr and "urbansense run --workers N" in out.stderr
    out = subprocess.run([exe, "--config", str(config), "check-config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "warning: [cluster] enabled (or run --role) with an empty [database] url" \
        in out.stderr, out.stderr
    config.write_text(f"[mqtt]\nport = {free_port()}\n")  # no cluster: nothing to say
    out = subprocess.run([exe, "--config", str(config), "check-config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "[database] url" not in out.stderr, out.stderr
