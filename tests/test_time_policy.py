"""The time policy (core/timepolicy.py) on its own and over whole envelopes of every source."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbiotkit import imei

from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.nbiot.frame import build_frame
from core.device import Device
from core.rfc3339 import format_rfc3339_ns
from core.timepolicy import (
    INFLUX_MAX_NS,
    INFLUX_MIN_NS,
    RECEIVED,
    TimeCandidate,
    TimePolicy,
    choose_time,
    from_gps_duration,
    from_number,
    from_rfc3339,
    spread,
)
from core.uplink import Incoming
from decoders import get_model
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.collectors import envelope_parsers
from service.config import parse_config
from service.dedup import Deduplicator
from service.metrics import Metrics
from service.pipeline import Pipeline
from service.trace import parse_line

S = 1_000_000_000
NOW = 1_741_165_034 * S  # 2025-03-05T08:57:14Z
POLICY = TimePolicy()


def test_ambiguous_integer_units_are_read_by_magnitude() -> None:
    for value in (1_741_165_034, 1_741_165_034_000, 1_741_165_034_000_000, 1_741_165_034_000_000_000):
        assert from_number("t", value).time_ns == NOW
    assert from_number("t", 1_741_165_034).unit_ns == S
    assert from_number("t", 0).problem == "zero" and from_number("t", -5).problem == "zero"
    assert from_number("t", float("nan")).problem == "unparsable" and from_number("t", True).time_ns is None


def test_the_first_source_time_inside_the_window_wins_and_the_refused_ones_are_named() -> None:
    gps_1980 = from_gps_duration("rxInfo.timeSinceGpsEpoch", "1379840.234s")
    assert gps_1980.time_ns is not None and format_rfc3339_ns(gps_1980.time_ns).startswith("1980-01-21")
    choice = choose_time([from_rfc3339("time", "1980-01-21T23:17:20.234+00:00"),
                          from_rfc3339("rxInfo.gwTime", "0001-01-01T00:00:00+00:00"), gps_1980,
                          from_rfc3339("rxInfo.nsTime", "2025-03-05T08:57:14.2Z")], NOW, POLICY)
    assert choice.source == "rxInfo.nsTime" and choice.time_ns == NOW + 200_000_000
    assert [r for _, r in choice.refused] == ["past", "out_of_range", "past"]
    future = choose_time([TimeCandidate("device_time", NOW + 121 * S)], NOW, POLICY)
    assert (future.source, future.time_ns, future.refused) == (RECEIVED, NOW, (("device_time", "future"),))
    assert choose_time([TimeCandidate("device_time", NOW + 119 * S)], NOW, POLICY).source == "device_time"
    old = NOW - 30 * 86400 * S
    assert choose_time([TimeCandidate("history", old)], NOW, POLICY).source == RECEIVED
    assert choose_time([TimeCandidate("history", old)], NOW, POLICY, history=True).time_ns == old


def test_frames_stamped_in_the_same_second_get_their_own_microsecond_by_frame_counter() -> None:
    second = choose_time([from_number("device_time", NOW // S)], NOW + 500_000_000, POLICY)
    times = {spread(second, seq) for seq in range(200)}
    assert len(times) == 200 and all(NOW <= t < NOW + S for t in times)
    assert spread(second, 7) == spread(second, 7)  # a retransmission lands on its own point again
    precise = choose_time([from_rfc3339("time", "2025-03-05T08:57:14.123456789Z")], NOW, POLICY)
    assert spread(precise, 7) == precise.time_ns


# -- whole envelopes: ChirpStack, NB-IoT UDP, CTWing, OneNET with any time at all ----------------------------

IMEI = imei(1)
EUI = "0011223344556601"
_INT_TIMES = st.one_of(st.integers(-(2**63), 2**64 - 1), st.integers(0, 2**32 - 1),  # the JSON integer range
                       st.sampled_from([0, 1, NOW // S, NOW // 1_000_000, NOW // 1000, NOW, NOW // S + 121,
                                        NOW // S - 8 * 86400, 2**63 - 1, 253402300799, 253402300799999]))
_NUM_TIMES = st.one_of(_INT_TIMES, st.floats(allow_nan=True, allow_infinity=True))
_TEXT_TIMES = st.one_of(
    st.builds(lambda y, mo, d, h, s, frac: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:00:{s:02d}{frac}Z",
              st.integers(1, 9999), st.integers(1, 12), st.integers(1, 28), st.integers(0, 23), st.integers(0, 59),
              st.sampled_from(["", ".5", ".123456789", ".000000000001"])),
    st.sampled_from(["0001-01-01T00:00:00+00:00", "1980-01-21T23:17:20.234+00:00", "2262-04-12T00:00:00Z",
                     "1677-09-20T00:00:00Z", "not a time", ""]),
    st.text(max_size=30))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    path = tmp_path_factory.mktemp("timepolicy") / "registry.sqlite"
    with Registry(path) as reg:
        reg.add(Device(id="W-1", key=EUI, model="milesight-em500-udl", kind="water_level",
                       install={"mount_height_mm": 3000.0}), by="test")
        reg.add(Device(id="NB-1", key=IMEI, model="generic-nb-noise", kind="noise"), by="test")
    return Pipeline(view=RegistryView(path), writer=None, deadletters=None, metrics=Metrics(),  # type: ignore[arg-type]
                    parsers=envelope_parsers(), time_policy=POLICY, dedup=Deduplicator(0))


def _stored_times_obey_the_policy(pipeline: Pipeline, msg: Incoming) -> None:
    result = pipeline.process_chunk([msg])
    assert not result.dead, result.dead
    assert result.readings
    for r in result.readings:
        assert INFLUX_MIN_NS < r.time_ns < INFLUX_MAX_NS
        if r.history:
            continue
        assert msg.received_ns - POLICY.max_past_s * S <= r.time_ns <= msg.received_ns + POLICY.max_future_s * S + S
    assert result.body.count(b"\n") >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(time=_TEXT_TIMES, gw=_TEXT_TIMES, ns=_TEXT_TIMES, gps=st.text(max_size=12) | st.just("1379840.234s"),
       received=st.integers(NOW - 10**18, NOW + 10**18))
def test_chirpstack_events_with_any_times_are_stored_within_the_policy(pipeline: Pipeline, time: str, gw: str,
                                                                       ns: str, gps: str, received: int) -> None:
    payload, port = get_model("milesight-em500-udl").codec.encode({"distance_mm": 2500.0, "battery_pct": 90.0})
    topic, body = build_chirpstack_event(EUI, payload, port, 1, NOW, [("0016c001f0000a01", -80.0, 5.0)])
    doc = orjson.loads(body)
    doc["time"] = time
    doc["rxInfo"][0].update(gwTime=gw, nsTime=ns, timeSinceGpsEpoch=gps)
    _stored_times_obey_the_policy(pipeline, Incoming("lorawan", topic, orjson.dumps(doc), received))


def _noise_payload() -> bytes:
    payload, _ = get_model("generic-nb-noise").codec.encode({"laeq_db": 55.0, "lmax_db": 61.0, "lmin_db": 48.0})
    return payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(device_s=st.integers(0, 2**32 - 1), platform=_NUM_TIMES, received=st.integers(NOW - 10**18, NOW + 10**18),
       seq=st.integers(0, 0xFFFF))
def test_nbiot_udp_ctwing_and_onenet_with_any_times_are_stored_within_the_policy(
        pipeline: Pipeline, device_s: int, platform: float, received: int, seq: int) -> None:
    frame = build_frame(IMEI, 1, seq, _noise_payload(), device_time_s=device_s)
    ctwing = {"messageType": "dataReport", "IMEI": IMEI, "timestamp": platform,
              "payload": {"APPdata": base64.b64encode(frame).decode()}}
    msg = orjson.dumps({"type": 1, "imei": IMEI, "at": platform, "value": _noise_payload().hex()}).decode()
    for source, body in (("nbiot-udp", frame), ("ctwing", orjson.dumps(ctwing)),
                         ("onenet", orjson.dumps({"msg": msg, "nonce": "n", "signature": "s"}))):
        # parsed as each collector parses it, then the service's pipeline
        incoming = parse_line(orjson.dumps({"topic": "", "payload": base64.b64encode(body).decode(),
                                            "source": source}), received)
        _stored_times_obey_the_policy(pipeline, incoming)


def test_policy_defaults_are_the_documented_config_defaults(tmp_path: Path) -> None:
    cfg = parse_config({}, base_dir=tmp_path, environ={})
    assert cfg.pipeline.time_policy() == TimePolicy()
    assert (TimePolicy().max_future_s, TimePolicy().max_past_s) == (120.0, 7 * 86400.0)
