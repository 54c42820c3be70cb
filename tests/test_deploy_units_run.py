"""The systemd units' own command lines, with the shipped config (hosts pointed at the fixtures' servers),
bring up a working cluster: the leader candidate leads, an ingest worker stores the uplinks and hands the
readings to the leader, and SIGTERM stops both cleanly. The PostgreSQL password comes from the
environment (PGPASSWORD, as `/etc/urbansense/secrets.env` gives it), never from the URL.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import influx_query
from servicekit import metric, recent_ns, wait_until

from provisioning.registry import Registry
from sim.daemons import Daemon, free_port
from sim.simulator import FleetSimulator, Publisher, Scenario, demo_fleet

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
EXE = str(Path(sys.executable).parent / "urbansense")

pytestmark = pytest.mark.slow


def exec_start(unit: str, config: Path, metrics_port: int) -> list[str]:
    """The unit's ExecStart as a command line here: our urbansense, our config, %l/%i expanded."""
    line = next(v for k, v in (ln.split("=", 1) for ln in (UNITS / unit).read_text().splitlines() if "=" in ln)
                if k == "ExecStart")
    argv = shlex.split(line.replace("%l", "testhost").replace("%i", "1"))
    assert argv[:3] == ["/opt/urbansense/venv/bin/urbansense", "--config", "/etc/urbansense/config.toml"]
    argv[0], argv[2] = EXE, str(config)
    if "--metrics-port" in argv:  # 947%i: a fixed port; a free one here (the machine is shared)
        i = argv.index("--metrics-port") + 1
        assert argv[i] == "9471"
        argv[i] = str(metrics_port)
    return argv


@contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def ready(port: int) -> str | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.HTTPError:
        return None
    return r.text if r.status_code == 200 else None


def toml(data: dict[str, dict[str, object]]) -> str:
    """A config of flat sections (strings, numbers, booleans) as TOML."""
    def value(v: object) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else str(v)
    return "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in section.items()) + "\n"
                   for name, section in data.items())


def test_the_units_command_lines_run_a_cluster(tmp_path: Path, mosquitto: Daemon, influxd: Daemon, influx_db: str,
                                               pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    m = re.match(r"postgresql://([^:]+):([^@]+)@(.+)$", pg_dsn)
    assert m is not None
    user, password, rest = m.groups()
    data = tomllib.loads((UNITS / "config.toml").read_text(encoding="utf-8"))
    data["mqtt"].update(host="127.0.0.1", port=mosquitto.port, tls=False, ca_file="")
    data["influxdb"].update(url=influxd.url, database=influx_db, ca_file="")
    data["database"]["url"] = f"postgresql://{user}@{rest}"  # no password in the file, as shipped
    data["spool"]["path"] = str(tmp_path / "spool")
    data["metrics"]["port"] = leader_port = free_port()
    data["cluster"]["takeover_s"] = 2.0
    config = tmp_path / "config.toml"
    config.write_text(toml(data))
    env = {**os.environ, "PGPASSWORD": password}
    devices = demo_fleet({"water_level": 4, "noise": 4})
    monkeypatch.setenv("PGPASSWORD", password)  # provisioning, as an operator's shell with secrets.env has it
    with Registry(data["database"]["url"]) as reg:
        for d in devices:
            reg.add(d, by="test")
    ingest_port = free_port()
    leader_argv = exec_start("urbansense.service", config, leader_port)
    ingest_argv = exec_start("urbansense-ingest@.service", config, ingest_port)

    with started(leader_argv, env, tmp_path / "leader.log") as leader:
        # docs/deploy.md, "First start of a cluster": a leader is ready once it reads the readings topic
        wait_until(lambda: "leadership: leader" in (ready(leader_port) or ""), 90, "the leader candidate to lead")
        with started(ingest_argv, env, tmp_path / "ingest.log") as ingest:
            wait_until(lambda: ready(ingest_port) is not None, 90, "the ingest worker to be ready")
            sim = FleetSimulator(devices, Scenario("calm"))
            ups = [u for r in range(5) for u in sim.round(float(r), recent_ns() + r * 10**9)]
            pub = Publisher("127.0.0.1", mosquitto.port)
            for u in ups:
                pub.publish(u.topic, u.event)
            pub.close()
            wait_until(lambda: metric(ingest_port, "urbansense_readings_written_total") >= len(ups), 60,
                       "the stored readings")
            wait_until(lambda: metric(leader_port, "urbansense_bus_readings_total") >= len(ups), 60,
                       "the leader to get every reading")
            depths = sum(1 for u in ups if "depth_mm" in u.expected)
            rows = influx_query(influxd, influx_db, 'SELECT count("depth_mm") FROM "water_level"')
            assert depths and rows and rows[0]["values"][0][1] == depths
            for proc in (ingest, leader):
                proc.send_signal(signal.SIGTERM)
            assert ingest.wait(60) == 0 and leader.wait(60) == 0
    log = (tmp_path / "leader.log").read_text(errors="replace")
    assert "leadership acquired" in log and password not in log + (tmp_path / "ingest.log").read_text(errors="replace")
