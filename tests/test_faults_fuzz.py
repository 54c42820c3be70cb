"""Arbitrary bytes and JSON through the whole pipeline: every message becomes a line or a dead letter, nothing raises.

The envelope parsers and each codec have their own property tests; this one runs the
whole path (envelope → registry → codec → derive → line protocol) with one device of
every supported model, so only the pipeline's documented refusal (`Rejected`) can come out.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from core.uplink import Incoming
from decoders import all_models
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.collectors import envelope_parsers
from service.dedup import Deduplicator
from service.metrics import Metrics
from service.pipeline import Pipeline

MODELS = list(all_models())
KEYS = [f"{0x70B3D50000000000 + i:016x}" for i in range(len(MODELS))]
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=5), max_leaves=20)
_TOPIC = st.sampled_from(["application/a/device/{key}/event/up", "v3/app@ttn/devices/dev/up", "x/y"])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    path = tmp_path_factory.mktemp("fuzz") / "registry.sqlite"
    with Registry(path) as reg:
        for i, (info, key) in enumerate(zip(MODELS, KEYS, strict=True)):
            install = {p: 1500.0 for p in info.install_params}
            reg.add(Device(id=f"D-{i:03d}", key=key, model=info.model, kind=info.kind, install=install), by="test")
    view = RegistryView(path)
    view.refresh()
    return Pipeline(view=view, writer=None, deadletters=None, metrics=Metrics(),  # type: ignore[arg-type]
                    parsers=envelope_parsers(), dedup=Deduplicator(0))  # every example reuses one frame


def check(pipeline: Pipeline, topic: str, payload: bytes) -> None:
    result = pipeline.process_chunk([Incoming("lorawan", topic, payload, 1, ack=lambda: None)])
    body, readings, dead, acks = result.body, result.readings, result.dead, result.acks
    assert (1 if readings else 0) + len(dead) + len(result.skipped) == 1 and len(acks) == 1
    if dead:
        assert dead[0].reason and dead[0].detail and dead[0].payload == payload
    elif readings:
        assert body.endswith(b"\n")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), payload=st.binary(max_size=64), port=st.integers(0, 255))
def test_arbitrary_payloads_from_every_model_become_a_reading_or_a_dead_letter(
        pipeline: Pipeline, key: str, payload: bytes, port: int) -> None:
    topic, event = build_chirpstack_event(key, payload, port, 1, 1_760_000_000_000_000_000, [("a" * 16, -80.0, 5.0)],
                                          "00000000-0000-0000-0000-000000000001")
    check(pipeline, topic, event)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=_TOPIC, key=st.sampled_from(KEYS), doc=_JSON)
def test_arbitrary_json_envelopes_become_a_reading_or_a_dead_letter(pipeline: Pipeline, topic: str, key: str,
                                                                    doc: Any) -> None:
    check(pipeline, topic.format(key=key), json.dumps(doc).encode())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=_TOPIC, key=st.sampled_from(KEYS), body=st.binary(max_size=200))
def test_arbitrary_bytes_become_a_dead_letter(pipeline: Pipeline, topic: str, key: str, body: bytes) -> None:
    check(pipeline, topic.format(key=key), body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), data=_JSON, fields=st.dictionaries(st.sampled_from(
    ["data", "fPort", "fCnt", "time", "rxInfo", "object"]), _JSON, max_size=3))
def test_valid_envelopes_with_arbitrary_fields_become_a_reading_or_a_dead_letter(
        pipeline: Pipeline, key: str, data: Any, fields: dict) -> None:
    topic, event = build_chirpstack_event(key, b"\x01\x02", 2, 1, 1_760_000_000_000_000_000,
                                          [("a" * 16, -80.0, 5.0)], "00000000-0000-0000-0000-000000000001")
    doc = orjson.loads(event)
    doc.update(fields)
    if isinstance(data, str):
        doc["data"] = base64.b64encode(data.encode()).decode()
    check(pipeline, topic, json.dumps(doc).encode())


def test_every_model_is_in_the_fuzzed_registry(pipeline: Pipeline) -> None:
    assert len(pipeline.view.by_key) == len(MODELS) > 10
