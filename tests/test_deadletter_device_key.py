"""A dead letter keeps the device key its envelope named when the payload is bad: the DevEUI of a ChirpStack
(v4, v3) or The Things Stack uplink whose data, port or counter cannot be read — or, for JSON that does not
parse, the DevEUI in its topic — and the IMEI of a CTWing push whose APPdata is not base64, so an operator
can find a broken sensor's refused messages by device (`urbansense deadletter list --device`)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.lorawan.chirpstack_v3 import build_chirpstack_v3_uplink
from collectors.lorawan.tts import build_tts_uplink
from collectors.nbiot.platforms import parse_ctwing
from core.device import Device
from core.uplink import EnvelopeError, Incoming
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.collectors import envelope_parsers
from service.metrics import Metrics
from service.pipeline import Pipeline

S = 1_000_000_000
NOW = 1_741_165_034 * S
PARK = "0011223344556606"
GW = [("gw-east-07", -97.0, 3.5)]


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    path = tmp_path / "registry.sqlite"
    with Registry(path) as reg:
        reg.add(Device(id="P-1", key=PARK, model="nwave-nps405", kind="parking"), by="test")
    return Pipeline(view=RegistryView(path), writer=None, deadletters=None, metrics=Metrics(),  # type: ignore[arg-type]
                    parsers=envelope_parsers())


def dead_of(pipeline: Pipeline, topic: str, body: bytes) -> tuple[str, str | None]:
    result = pipeline.process_chunk([Incoming("lorawan", topic, body, NOW)])
    (dead,) = result.dead
    assert not result.readings
    return dead.reason, dead.device_key


def edited(body: bytes, *path_and_value: object) -> bytes:
    doc = orjson.loads(body)
    *path, key, value = path_and_value
    node = doc
    for p in path:
        node = node[p]
    node[key] = value
    return orjson.dumps(doc)


def test_chirpstack_uplinks_with_a_bad_payload_keep_their_deveui(pipeline: Pipeline) -> None:
    topic, body = build_chirpstack_event(PARK, b"\x91", 1, 912, NOW, GW)
    assert dead_of(pipeline, topic, edited(body, "data", "%%not base64%%")) == ("bad_base64", PARK)
    assert dead_of(pipeline, topic, edited(body, "fCnt", "many")) == ("bad_field", PARK)
    upper = edited(edited(body, "deviceInfo", "devEui", PARK.upper()), "fPort", -1)  # the slow path, any case
    assert dead_of(pipeline, topic, upper) == ("bad_field", PARK)
    assert dead_of(pipeline, topic, body[:-7]) == ("bad_json", PARK)  # cut short: the topic names the device


def test_chirpstack_v3_and_tts_uplinks_with_a_bad_payload_keep_their_deveui(pipeline: Pipeline) -> None:
    topic, body = build_chirpstack_v3_uplink(PARK, b"\x91", 1, 912, NOW, [("0016c001ff10a235", -97.0, 3.5)])
    assert dead_of(pipeline, topic, edited(body, "data", "%%not base64%%")) == ("bad_base64", PARK)
    topic, body = build_tts_uplink(PARK, b"\x91", 1, 912, NOW, GW)
    assert dead_of(pipeline, topic, edited(body, "uplink_message", "frm_payload", "%%")) == ("bad_base64", PARK)
    assert dead_of(pipeline, topic, edited(body, "uplink_message", "f_port", 300)) == ("bad_field", PARK)


def test_a_ctwing_push_with_bad_appdata_keeps_its_imei() -> None:
    push = {"messageType": "dataReport", "IMEI": "866123450000008", "timestamp": NOW // 1_000_000,
            "payload": {"APPdata": "%%not base64%%"}}
    with pytest.raises(EnvelopeError) as err:
        parse_ctwing(orjson.dumps(push), NOW)
    assert (err.value.reason, err.value.device_key) == ("bad_base64", "866123450000008")
    with pytest.raises(EnvelopeError) as err:
        parse_ctwing(orjson.dumps({**push, "payload": "?"}), NOW)
    assert (err.value.reason, err.value.device_key) == ("bad_envelope", "866123450000008")
