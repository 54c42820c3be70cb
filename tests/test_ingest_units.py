"""Issue 13 in the pipeline, without servers: encrypted payloads, MAC-only frames, Dragino datalog, readiness."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.lorawan.tts import build_tts_uplink
from core.device import Device
from core.uplink import Incoming
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.collectors import envelope_parsers
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.supervise import Readiness, Supervisor

S = 1_000_000_000
NOW = 1_741_165_034 * S
BIN = "a840410000000b01"
PARK = "0011223344556606"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    path = tmp_path / "registry.sqlite"
    with Registry(path) as reg:
        reg.add(Device(id="B-1", key=BIN, model="dragino-dds20-lb", kind="bin_fill",
                       install={"bin_depth_mm": 1200.0}), by="test")
        reg.add(Device(id="P-1", key=PARK, model="nwave-nps405", kind="parking"), by="test")
    return Pipeline(view=RegistryView(path), writer=None, deadletters=None, metrics=Metrics(),  # type: ignore[arg-type]
                    parsers=envelope_parsers())


def test_tts_payload_still_encrypted_is_refused_with_what_to_configure(pipeline: Pipeline) -> None:
    topic, body = build_tts_uplink(PARK, b"\x91", 1, 912, NOW, [("gw-east-07", -97.0, 3.5)])
    doc = orjson.loads(body)
    doc["uplink_message"]["app_s_key"] = {"encrypted_key": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQ", "kek_label": "as:kek"}
    result = pipeline.process_chunk([Incoming("lorawan", topic, orjson.dumps(doc), NOW)])
    (dead,) = result.dead
    assert dead.reason == "encrypted_payload" and not result.readings
    assert "skip_payload_crypto" in dead.detail and "AppSKey" in dead.detail


def test_mac_only_frames_are_skipped_and_counted_not_decoded(pipeline: Pipeline) -> None:
    topic, body = build_chirpstack_event(PARK, b"\x03\x07", 0, 5, NOW, [("a" * 16, -80.0, 5.0)])
    result = pipeline.process_chunk([Incoming("lorawan", topic, body, NOW, ack=lambda: None)])
    assert (result.readings, result.dead, len(result.acks)) == ([], [], 1)
    assert result.skipped[0][0] == "mac_only"
    assert pipeline.metrics.skipped.labels("mac_only")._value.get() == 1


def test_a_retransmitted_frame_is_one_reading_and_a_counter_reset_is_not_a_duplicate(pipeline: Pipeline) -> None:
    def up(fcnt: int, payload: bytes, t: int, dedup: str) -> Incoming:
        topic, body = build_chirpstack_event(PARK, payload, 1, fcnt, t, [("a" * 16, -80.0, 5.0)], dedup)
        return Incoming("lorawan", topic, body, t + 100_000_000)

    result = pipeline.process_chunk([up(104, b"\x81", NOW, "d1"), up(104, b"\x81", NOW + 48 * S, "d2"),
                                     up(105, b"\x00", NOW + 60 * S, "d3"), up(105, b"\x00", NOW + 61 * S, "d3"),
                                     up(0, b"\x81", NOW + 120 * S, "d4")])
    assert [r.health["fcnt"] for r in result.readings] == [104, 105, 0]
    assert [reason for reason, _ in result.skipped] == ["duplicate", "duplicate"]
    assert "same deduplication id d3" in result.skipped[1][1]


def test_dragino_datalog_records_become_history_readings_at_their_own_times(pipeline: Pipeline) -> None:
    records = [(3300, 812, NOW // S - 7200), (3290, 650, NOW // S - 3600)]
    payload = b"".join(struct.pack(">HHhBI", bat, mm, 0, 0, t) for bat, mm, t in records)
    topic, body = build_chirpstack_event(BIN, payload, 3, 40, NOW, [("a" * 16, -80.0, 5.0)])
    result = pipeline.process_chunk([Incoming("lorawan", topic, body, NOW)])
    history = [r for r in result.readings if r.history]
    assert [(r.time_ns, r.fields["distance_mm"]) for r in history] == [(t * S, float(mm)) for _, mm, t in records]
    assert all("fill_pct" in r.fields for r in history)
    assert result.body.count(b"history=true") == 2
    assert base64.b64encode(payload)


def test_readiness_names_every_reason_and_a_broken_check_is_a_reason_not_an_error() -> None:
    ready = Readiness()
    ready.add_check("lorawan", lambda: None)
    assert ready() == (True, "ok")
    ready.add_check("influxdb", lambda: "InfluxDB unreachable")
    ready.add_check("spool", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    ready.latch("task pipeline", "task pipeline died: RuntimeError: x")
    ok, text = ready()
    assert not ok
    assert text.split("; ") == ["task pipeline: task pipeline died: RuntimeError: x",
                                "influxdb: InfluxDB unreachable",
                                "spool: readiness check failed: ZeroDivisionError: division by zero"]


@pytest.mark.asyncio
async def test_a_task_that_returns_while_the_service_runs_is_a_failure_but_not_once_stopping() -> None:
    failed: list[str] = []
    counter = Counter("f", "f", ["task"], registry=CollectorRegistry())
    sup = Supervisor(Readiness(), counter, failed.append)

    async def quits() -> None:
        return None

    await sup.spawn("registry", quits())
    assert failed == ["registry"] and counter.labels("registry")._value.get() == 1
    assert not sup.readiness()[0]
    sup.stopping()
    await sup.spawn("rules", quits())
    assert failed == ["registry"]
