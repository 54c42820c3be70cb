"""The field cases (tests/data/field_cases, copied from ../shared/field-cases): each through the
pipeline the service runs and through `urbansense trace`, checked against its `expect`.

Before issue 13: 01 stored a reading in 1980, 03 raised ValueError out of the chunk, 04 stored
two points, 06 decoded ciphertext as parking events, 07 dropped the history record; 05 passed
and must keep passing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import influx_query
from typer.testing import CliRunner

from cli.app import app
from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from core.rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from core.uplink import Incoming
from decoders import get_model
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.app import make_pipeline
from service.config import Config, parse_config
from service.metrics import Metrics
from service.pipeline import ChunkResult
from sim.daemons import Daemon
from storage.deadletter import DeadLetterStore

HERE = Path(__file__).parent
CASES_DIR = HERE / "data" / "field_cases"
SHARED_DIR = HERE.parent.parent / "shared" / "field-cases"
CASES = sorted(CASES_DIR.glob("*.json"))
S = 1_000_000_000


def load(path: Path) -> dict[str, Any]:
    case = json.loads(path.read_text())
    if case["type"] == "decode":  # the record's time, as its `right_value` states it
        case["record_time_s"] = int(case["right_value"].split("epoch ")[1].split(")")[0])
    return case


def setup(tmp_path: Path, case: dict[str, Any]) -> tuple[Config, Path]:
    """A config and registry holding the case's devices; returns (config, config file)."""
    reg_path = tmp_path / "registry.sqlite"
    with Registry(reg_path) as reg:
        for d in case["devices"]:
            reg.add(Device(id=d["id"], key=d["key"], model=d["model"], kind=d["kind"],
                           install=d.get("install", {})), by="test")
    text = f'[registry]\npath = "{reg_path}"\n[pipeline]\ndead_letter_path = "{tmp_path / "dl.sqlite"}"\n'
    cfg_file = tmp_path / "config.toml"
    cfg_file.write_text(text)
    return parse_config({"registry": {"path": str(reg_path)},
                         "pipeline": {"dead_letter_path": str(tmp_path / "dl.sqlite")}},
                        base_dir=tmp_path, environ={}), cfg_file


def messages(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's messages as (received, topic, envelope); a `decode` case becomes one ChirpStack uplink
    of its payload, received an hour after the record it carries."""
    if case["type"] == "pipeline":
        return case["messages"]
    model = get_model(case["model"])
    record_s = model.codec.decode(bytes.fromhex(case["hex"]), case["port"]).history[0].time_s
    received_ns = (record_s + 3600) * S
    topic, body = build_chirpstack_event("00112233445566aa", bytes.fromhex(case["hex"]), case["port"], 9,
                                         received_ns, [("0016c001f0000a01", -80.0, 5.0)])
    return [{"received": f"{received_ns}", "received_ns": received_ns, "topic": topic, "envelope": orjson.loads(body)}]


def devices_of(case: dict[str, Any]) -> dict[str, Any]:
    if case["type"] == "pipeline":
        return case
    kind = get_model(case["model"]).kind
    install = {"mount_height_mm": 3000.0} if kind == "water_level" else {}
    return {**case, "devices": [{"id": "HIST-1", "key": "00112233445566aa", "model": case["model"], "kind": kind,
                                 "install": install}]}


def received_ns(m: dict[str, Any]) -> int:
    return m["received_ns"] if "received_ns" in m else parse_rfc3339_ns(m["received"])


def check(case: dict[str, Any], outcomes: list[dict[str, Any]]) -> None:
    """`outcomes`: per message {"received_ns", "readings": [{time_ns, fields, health, history}], "dead": [reason]}."""
    expect = case["expect"]
    readings = [(o["received_ns"], r) for o in outcomes for r in o["readings"]]
    dead = [reason for o in outcomes for reason in o["dead"]]
    assert "internal_error" not in dead, f"an exception escaped a message: {dead}"
    if "readings" in expect:
        assert len(readings) == expect["readings"], readings
    if "min_readings" in expect:
        assert len(readings) >= expect["min_readings"], readings
    if "dead_letters" in expect:
        assert len(dead) == expect["dead_letters"], dead
    if "time_within_s" in expect:
        for received, r in readings:
            assert abs(r["time_ns"] - received) <= expect["time_within_s"] * S, (r, received)
    for want, (_, r) in zip(expect.get("reading_fields", []), readings, strict=False):
        assert {k: r["fields"].get(k) for k in want} == want
    if "fcnt_gaps" in expect:
        assert [r["health"].get("fcnt_gap") for _, r in readings] == expect["fcnt_gaps"]
    if "fields" in expect:  # a decode case: one history record, at its own time
        history = [r for _, r in readings if r["history"]]
        assert len(history) == 1, readings
        assert {k: history[0]["fields"].get(k) for k in expect["fields"]} == expect["fields"]
        assert history[0]["time_ns"] == case["record_time_s"] * S


def run_pipeline(tmp_path: Path, case: dict[str, Any]) -> list[dict[str, Any]]:
    cfg, _ = setup(tmp_path, devices_of(case))
    pipeline = make_pipeline(cfg, view=RegistryView(cfg.registry_database()), writer=None,  # type: ignore[arg-type]
                             deadletters=None, metrics=Metrics())  # type: ignore[arg-type]
    msgs = messages(case)
    incoming = [Incoming("lorawan", m["topic"], orjson.dumps(m["envelope"]), received_ns(m)) for m in msgs]
    if case.get("same_chunk"):
        results = [pipeline.process_chunk(incoming)]
        groups = [incoming]
    else:
        results = [pipeline.process_chunk([i]) for i in incoming]
        groups = [[i] for i in incoming]
    return [_outcome(group, result) for group, result in zip(groups, results, strict=True)]


def _outcome(group: list[Incoming], result: ChunkResult) -> dict[str, Any]:
    """A chunk's readings and dead letters (a `same_chunk` case is one chunk: times are checked against
    its first message's receive time, half a second from the second's)."""
    return {"received_ns": group[0].received_ns,
            "readings": [{"time_ns": r.time_ns, "fields": r.fields, "health": r.health, "history": r.history}
                         for r in result.readings],
            "dead": [d.reason for d in result.dead]}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_field_case_through_the_service_pipeline(tmp_path: Path, path: Path) -> None:
    case = load(path)
    check(case, run_pipeline(tmp_path, case))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_field_case_through_urbansense_trace(tmp_path: Path, path: Path) -> None:
    case = load(path)
    _, cfg_file = setup(tmp_path, devices_of(case))
    msgs = messages(case)
    jsonl = tmp_path / "in.jsonl"
    with jsonl.open("w") as fh:
        for m in msgs:
            fh.write(json.dumps({"topic": m["topic"], "payload": m["envelope"],
                                 "received": format_rfc3339_ns(received_ns(m))}) + "\n")
    result = CliRunner().invoke(app, ["--config", str(cfg_file), "trace", str(jsonl)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(msgs)
    outcomes = []
    for m, out in zip(msgs, lines, strict=True):
        readings = [{"time_ns": r["time_ns"], "fields": r["fields"], "history": r["history"],
                     "health": {"fcnt_gap": r.get("fcnt_gap")}} for r in out.get("readings", [])]
        outcomes.append({"received_ns": received_ns(m), "readings": readings,
                         "dead": [out["dead_letter"]["reason"]] if "dead_letter" in out else []})
    if "fcnt_gaps" in case["expect"]:
        case = {**case, "expect": {k: v for k, v in case["expect"].items() if k != "fcnt_gaps"}}
    check(case, outcomes)


def test_every_shared_field_case_has_an_identical_copy_in_the_repository() -> None:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is not here (only in the team's workspace)")
    shared = sorted(SHARED_DIR.glob("*.json"))
    assert shared
    for path in shared:
        copy = CASES_DIR / path.name
        assert copy.is_file(), f"{path.name} has no copy in {CASES_DIR}"
        assert copy.read_bytes() == path.read_bytes(), f"{path.name} differs from the shared case"


def test_trace_write_stores_what_it_prints(tmp_path: Path, influxd: Daemon, influx_db: str) -> None:
    cases = [load(CASES_DIR / "01-cs-gps-time-1980.json"), load(CASES_DIR / "06-encrypted-payload-skip-crypto.json")]
    devices = [d for c in cases for d in c["devices"]]
    _, cfg_file = setup(tmp_path, {"devices": devices})
    cfg_file.write_text(cfg_file.read_text() + f'[influxdb]\nurl = "{influxd.url}"\ndatabase = "{influx_db}"\n')
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"topic": m["topic"], "payload": m["envelope"], "received": m["received"]})
                             + "\n" for c in cases for m in c["messages"]) + "not json\n")
    result = CliRunner().invoke(app, ["--config", str(cfg_file), "trace", "--write", str(jsonl)])
    assert result.exit_code == 1  # the last line is not a message: said so, the others still run
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert out[-1] == {"line": 4, "input_error": out[-1]["input_error"]} and "not JSON" in out[-1]["input_error"]
    (printed,) = out[0]["readings"]
    assert printed["time"].startswith("2025-03-05T08:57:14") and printed["time_source"] == "rxInfo.time"
    rows = influx_query(influxd, influx_db, 'SELECT "distance_mm", "depth_mm" FROM "water_level"')
    assert rows[0]["values"] == [[printed["time_ns"], 2500.0, 500.0]]
    with DeadLetterStore(tmp_path / "dl.sqlite") as store:
        assert [d.reason for d in store.list()] == ["encrypted_payload", "encrypted_payload"]


def test_trace_takes_a_console_copy_with_a_bom_and_refuses_a_message_without_its_receive_time(
        tmp_path: Path) -> None:
    """What a technician pastes: a pretty-printed record saved by Notepad (BOM) is one message; a
    record without `received` is refused by name instead of being judged against today's clock."""
    case = load(CASES_DIR / "01-cs-gps-time-1980.json")
    _, cfg_file = setup(tmp_path, devices_of(case))
    (m,) = messages(case)
    record = {"topic": m["topic"], "payload": m["envelope"], "received": format_rfc3339_ns(received_ns(m))}
    pretty = tmp_path / "console.json"
    pretty.write_bytes(b"\xef\xbb\xbf" + json.dumps(record, indent=2).encode())
    result = CliRunner().invoke(app, ["--config", str(cfg_file), "trace", str(pretty)])
    assert result.exit_code == 0, result.output
    (out,) = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    (reading,) = out["readings"]
    assert abs(reading["time_ns"] - received_ns(m)) <= 120 * 10**9 and reading["fields"]["depth_mm"] == 500.0

    lines = tmp_path / "two.jsonl"
    lines.write_text(json.dumps(record) + "\n" + json.dumps({k: v for k, v in record.items() if k != "received"})
                     + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["--config", str(cfg_file), "trace", str(lines)])
    assert result.exit_code == 1
    first, second = (json.loads(line) for line in result.stdout.splitlines() if line.strip())
    assert "readings" in first and "received" in second["input_error"], second
