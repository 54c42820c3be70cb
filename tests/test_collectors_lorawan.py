"""LoRaWAN envelope parsers: real-shaped ChirpStack v4 and The Things Stack v3 messages, errors, fuzzing."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutation import mutate

from collectors.lorawan import (
    FORMATS,
    build_chirpstack_event,
    build_tts_uplink,
    parse,
    parse_chirpstack,
    parse_tts,
)
from collectors.lorawan.decoded import parse_tts_decoded
from core.rfc3339 import format_rfc3339_ns, parse_rfc3339_ns
from core.uplink import EnvelopeError, Uplink

RECEIVED = 1_800_000_000_000_000_000

# Shaped like the `up` example of ChirpStack v4's integration docs (v4.0 era: zero values
# such as fCnt omitted, `+00:00` offsets, nanosecond fractions); the values are our own.
CHIRPSTACK_DOCS_STYLE = b"""{
  "deduplicationId": "5d2f7a0e-8c1b-4c8e-9f3a-61b2d4e7c9a0",
  "time": "2022-07-18T09:34:15.775023242+00:00",
  "deviceInfo": {
    "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
    "tenantName": "ChirpStack",
    "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
    "applicationName": "Noise monitors",
    "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
    "deviceProfileName": "Noise monitor CN470",
    "deviceName": "noise-xuhui-017",
    "devEui": "A81758FFFE0312F4",
    "tags": {"district": "xuhui"}
  },
  "devAddr": "00189440",
  "dr": 1,
  "fPort": 5,
  "data": "AQI3",
  "rxInfo": [{
    "gatewayId": "0016c001f153a14c",
    "uplinkId": 4217106255,
    "rssi": -36,
    "snr": 10.5,
    "context": "E3OWOQ==",
    "metadata": {"region_name": "cn470", "region_common_name": "CN470"}
  }],
  "txInfo": {
    "frequency": 486300000,
    "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 11, "codeRate": "CR_4_5"}}
  }
}"""
CHIRPSTACK_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/a81758fffe0312f4/event/up"

# Shaped like the uplink example of The Things Stack's data-formats docs; values are our own.
TTS_DOCS_STYLE = b"""{
  "end_device_ids": {
    "device_id": "bin-huangpu-102",
    "application_ids": {"application_id": "bins"},
    "dev_eui": "70B3D57ED0051A2C",
    "join_eui": "800000000000000C",
    "dev_addr": "00BCB929"
  },
  "correlation_ids": [
    "as:up:01E0WZGT6Y7657CPFPE5WEYDSQ",
    "gs:conn:01E0WDEC6T5T4XXBAX7S1VMFKE",
    "gs:uplink:01E0WZGSZWT07NE5TS2APTV1Z9",
    "ns:uplink:01E0WZGSZXZXZS8RFAWZX0F2FY",
    "rpc:/ttn.lorawan.v3.GsNs/HandleUplink:01E0WZGSZXGE1KS577PFBWRJEE"
  ],
  "received_at": "2020-02-12T15:15:46.014773143Z",
  "uplink_message": {
    "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
    "f_port": 3,
    "f_cnt": 1042,
    "frm_payload": "gkHe",
    "decoded_payload": {"fill_pct": 64},
    "rx_metadata": [{
      "gateway_ids": {"gateway_id": "gw-huangpu-1", "eui": "9C5C8E00001A05C4"},
      "time": "2020-02-12T15:15:45.787Z",
      "timestamp": 2463457000,
      "rssi": -35,
      "channel_rssi": -35,
      "snr": 5,
      "uplink_token": "ChIKEAoEZ3R3MRIInFyOAAAaBcQQ6L3Vlgk=",
      "channel_index": 2
    }],
    "settings": {
      "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
      "data_rate_index": 5,
      "coding_rate": "4/6",
      "frequency": "868300000",
      "timestamp": 2463457000,
      "time": "2020-02-12T15:15:45.787Z"
    },
    "consumed_airtime": "0.056576s",
    "received_at": "2020-02-12T15:15:45.789585559Z"
  }
}"""
TTS_TOPIC = "v3/bins@ttn/devices/bin-huangpu-102/up"


def _error(fn, *args) -> EnvelopeError:
    with pytest.raises(EnvelopeError) as info:
        fn(*args)
    return info.value


def _cs(doc: dict[str, Any], topic: str = CHIRPSTACK_TOPIC) -> Uplink:
    return parse_chirpstack(topic, orjson.dumps(doc), RECEIVED)


def _cs_doc() -> dict[str, Any]:
    return orjson.loads(CHIRPSTACK_DOCS_STYLE)


def _tts_doc() -> dict[str, Any]:
    return orjson.loads(TTS_DOCS_STYLE)


# --- ChirpStack ---------------------------------------------------------------------------


def test_chirpstack_event_without_fcnt_reads_frame_counter_zero_and_exact_time() -> None:
    up = parse_chirpstack(CHIRPSTACK_TOPIC, CHIRPSTACK_DOCS_STYLE, RECEIVED)
    assert up == Uplink(
        device_key="a81758fffe0312f4",
        payload=b"\x01\x02\x37",
        port=5,
        time_ns=1658136855_775023242,
        source="chirpstack",
        received_ns=RECEIVED,
        fcnt=0,
        rssi_dbm=-36.0,
        snr_db=10.5,
        gateway_ids=("0016c001f153a14c",),
        dedup_id="5d2f7a0e-8c1b-4c8e-9f3a-61b2d4e7c9a0",
    )


def test_chirpstack_event_heard_by_two_gateways_keeps_best_rssi_and_all_gateways() -> None:
    doc = _cs_doc()
    doc["rxInfo"] = [
        {"gatewayId": "e4e124dadef64eee", "rssi": -112, "snr": -7.25, "channel": 4},
        {"gatewayId": "0016C001F153A14C", "rssi": -68, "snr": 13.2, "channel": 4},
        {"gatewayId": "0016c001f153a14c", "rssi": -71, "snr": 12.0, "board": 1},
    ]
    up = _cs(doc)
    assert (up.rssi_dbm, up.snr_db) == (-68.0, 13.2)
    assert up.gateway_ids == ("0016c001f153a14c", "e4e124dadef64eee")


def test_chirpstack_omitted_zero_values_read_as_zero_or_empty() -> None:
    doc = _cs_doc()
    for key in ("data", "rxInfo", "deduplicationId"):
        del doc[key]
    up = _cs(doc)
    assert (up.payload, up.fcnt, up.gateway_ids, up.rssi_dbm, up.dedup_id) == (b"", 0, (), None, None)
    del doc["fPort"]  # omitted zero: fPort 0 carries MAC commands only
    assert _error(_cs, doc).reason == "mac_only"


def test_chirpstack_unreadable_times_fall_back_instead_of_refusing_the_uplink() -> None:
    for bad in ("2022-02-30T09:34:15Z", "yesterday", 12):
        doc = _cs_doc()
        doc["time"] = bad
        up = _cs(doc)
        assert up.times[0].source == "time" and up.times[0].time_ns is None and up.times[0].problem == "unparsable"
        assert up.time_ns == (up.times[1].time_ns if len(up.times) > 1 else RECEIVED)


def test_chirpstack_time_falls_back_to_gateway_then_server_then_receive_time() -> None:
    doc = _cs_doc()
    del doc["time"]
    doc["rxInfo"][0]["gwTime"] = "2025-06-13T12:44:52.653481+00:00"
    doc["rxInfo"][0]["nsTime"] = "2025-06-13T12:44:52.670509207+00:00"
    assert _cs(doc).time_ns == 1749818692_653481000
    del doc["rxInfo"][0]["gwTime"]
    assert _cs(doc).time_ns == 1749818692_670509207
    del doc["rxInfo"][0]["nsTime"]
    assert _cs(doc).time_ns == RECEIVED


def test_chirpstack_topic_must_agree_with_the_event() -> None:
    assert _error(_cs, _cs_doc(), CHIRPSTACK_TOPIC.replace("a81758", "a81759")).reason == "topic_mismatch"
    assert _error(_cs, _cs_doc(), CHIRPSTACK_TOPIC.replace("/up", "/status")).reason == "not_uplink"
    assert _cs(_cs_doc(), "custom/prefix/a81758fffe0312f4").device_key == "a81758fffe0312f4"


@pytest.mark.parametrize(
    ("mutate", "reason", "detail_mentions"),
    [
        (lambda d: d.pop("deviceInfo"), "missing_field", "deviceInfo"),
        (lambda d: d["deviceInfo"].pop("devEui"), "missing_field", "deviceInfo.devEui"),
        (lambda d: d["deviceInfo"].update(devEui="a81758fffe0312"), "bad_deveui", "16 hex"),
        (lambda d: d["deviceInfo"].update(devEui="a81758fffe0312zz"), "bad_deveui", "deviceInfo.devEui"),
        (lambda d: d.update(data="AQI3!"), "bad_base64", "data"),
        (lambda d: d.update(data=12), "bad_base64", "data"),
        (lambda d: d.update(fPort=256), "bad_field", "fPort"),
        (lambda d: d.update(fCnt=-1), "bad_field", "fCnt"),
        (lambda d: d.update(fCnt=True), "bad_field", "fCnt"),
        (lambda d: d.update(rxInfo={"gatewayId": "x"}), "bad_field", "rxInfo"),
        (lambda d: d["rxInfo"].append("gw"), "bad_field", "rxInfo[1]"),
        (lambda d: d["rxInfo"][0].update(rssi="-36"), "bad_field", "rxInfo[0].rssi"),
        (lambda d: d.update(deviceInfo=[]), "bad_field", "deviceInfo"),
    ],
)
def test_chirpstack_malformed_events_say_what_is_wrong(mutate, reason: str, detail_mentions: str) -> None:
    doc = _cs_doc()
    mutate(doc)
    err = _error(_cs, doc)
    assert err.reason == reason
    assert detail_mentions in err.detail


def test_chirpstack_protobuf_or_non_object_payload_is_bad_json_with_a_hint() -> None:
    protobuf = b"\n$3ac7e3c4-4401-4b8d-9386-a5c902f9202d\x12\x0c\x08\xb7\xf2\xd4\x96\x06"
    err = _error(parse_chirpstack, CHIRPSTACK_TOPIC, protobuf, RECEIVED)
    assert err.reason == "bad_json" and "JSON marshaler" in err.detail
    assert _error(parse_chirpstack, CHIRPSTACK_TOPIC, b"[1, 2]", RECEIVED).reason == "bad_json"


def test_chirpstack_builder_writes_what_chirpstack_writes() -> None:
    topic, body = build_chirpstack_event("A81758FFFE0312F4", b"\x01\x02", 5, 0, 1_700_000_000_250_000_000,
                                         [("0016c001f153a14c", -97, 7.5), ("0016c001f153a14d", -88, 0.0)],
                                         "9c6a1f1e-0c51-4f3e-8d8e-3a0b4f7d2c11")
    doc = orjson.loads(body)
    assert topic.endswith("/device/a81758fffe0312f4/event/up")
    assert 1200 <= len(body) <= 1500
    assert doc["time"] == "2023-11-14T22:13:20.250+00:00"
    assert doc["fCnt"] == 0 and doc["deviceInfo"]["devEui"] == "a81758fffe0312f4"
    assert doc["txInfo"]["modulation"]["lora"] == {"bandwidth": 125000, "spreadingFactor": 9, "codeRate": "CR_4_5"}
    assert "snr" not in doc["rxInfo"][1]
    assert {"gatewayId", "uplinkId", "nsTime", "rssi", "location", "context", "metadata", "crcStatus"} <= set(
        doc["rxInfo"][0])


# --- The Things Stack ---------------------------------------------------------------------


def test_tts_uplink_reads_network_server_time_and_as_up_dedup_id() -> None:
    up = parse_tts(TTS_TOPIC, TTS_DOCS_STYLE, RECEIVED)
    assert up == Uplink(
        device_key="70b3d57ed0051a2c",
        payload=bytes.fromhex("8241de"),
        port=3,
        time_ns=1581520545_789585559,
        source="tts",
        received_ns=RECEIVED,
        fcnt=1042,
        rssi_dbm=-35.0,
        snr_db=5.0,
        gateway_ids=("gw-huangpu-1",),
        dedup_id="as:up:01E0WZGT6Y7657CPFPE5WEYDSQ",
    )


def test_tts_non_uplink_messages_are_not_uplinks() -> None:
    join = _tts_doc()
    del join["uplink_message"]
    join["join_accept"] = {"session_key_id": "AXBSH1Pk6Z0G166RlH16CQ==", "received_at": "2020-02-17T07:49:09Z"}
    err = _error(parse_tts, TTS_TOPIC, orjson.dumps(join), RECEIVED)
    assert err.reason == "not_uplink" and "join_accept" in err.detail
    queued = "v3/bins@ttn/devices/bin-huangpu-102/down/queued"
    assert _error(parse_tts, queued, TTS_DOCS_STYLE, RECEIVED).reason == "not_uplink"


def test_tts_omitted_fields_and_fallbacks() -> None:
    doc = _tts_doc()
    up_msg = doc["uplink_message"]
    del up_msg["frm_payload"], up_msg["received_at"]
    del up_msg["rx_metadata"][0]["rssi"]
    up_msg["rx_metadata"][0]["channel_rssi"] = -101.5
    doc["correlation_ids"] = ["gs:uplink:01E0WZGSZWT07NE5TS2APTV1Z9", "ns:uplink:01E0WZGSZXZXZS8RFAWZX0F2FY"]
    up = parse_tts(TTS_TOPIC, orjson.dumps(doc), RECEIVED)
    assert (up.payload, up.rssi_dbm) == (b"", -101.5)
    assert up.time_ns == 1581520546_014773143
    assert up.dedup_id is not None and up.dedup_id.startswith("cids:")
    doc2 = copy.deepcopy(doc)
    doc2["correlation_ids"].reverse()
    assert parse_tts(TTS_TOPIC, orjson.dumps(doc2), RECEIVED).dedup_id != up.dedup_id
    del up_msg["f_port"]  # omitted zero: MAC commands only
    assert _error(parse_tts, TTS_TOPIC, orjson.dumps(doc), RECEIVED).reason == "mac_only"


@pytest.mark.parametrize(
    ("mutate", "reason", "detail_mentions"),
    [
        (lambda d: d["end_device_ids"].pop("dev_eui"), "missing_field", "ABP"),
        (lambda d: d.pop("end_device_ids"), "missing_field", "end_device_ids"),
        (lambda d: d["end_device_ids"].update(device_id="other"), "topic_mismatch", "other"),
        (lambda d: d["uplink_message"].update(frm_payload="g k"), "bad_base64", "frm_payload"),
        (lambda d: d["uplink_message"].update(f_cnt="12a"), "bad_field", "f_cnt"),
        (lambda d: d.update(uplink_message="up"), "bad_field", "uplink_message"),
        (lambda d: d["uplink_message"]["rx_metadata"][0].update(gateway_ids=7), "bad_field", "gateway_ids"),
    ],
)
def test_tts_malformed_messages_say_what_is_wrong(mutate, reason: str, detail_mentions: str) -> None:
    doc = _tts_doc()
    mutate(doc)
    err = _error(parse_tts, TTS_TOPIC, orjson.dumps(doc), RECEIVED)
    assert err.reason == reason
    assert detail_mentions in err.detail


# --- registry and dispatch ----------------------------------------------------------------


def test_parse_dispatches_by_topic_prefix() -> None:
    assert parse(CHIRPSTACK_TOPIC, CHIRPSTACK_DOCS_STYLE, RECEIVED).source == "chirpstack"
    assert parse(TTS_TOPIC, TTS_DOCS_STYLE, RECEIVED).source == "tts"
    err = _error(parse, "sensors/raw/123", b"{}", RECEIVED)
    assert err.reason == "unknown_topic" and "sensors/raw/123" in err.detail
    assert FORMATS["chirpstack"].default_topic == "application/+/device/+/event/up"
    default_topic, parser, _ = FORMATS["tts"]
    assert (default_topic, parser) == ("v3/+/devices/+/up", parse_tts_decoded)


# --- RFC 3339 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2022-07-18T09:34:15.775023242+00:00", 1658136855_775023242),
        ("2022-07-18T17:34:15.775023242+08:00", 1658136855_775023242),
        ("2022-07-18T04:04:15.7-05:30", 1658136855_700000000),
        ("2022-07-18t09:34:15.7750232429999z", 1658136855_775023242),
        ("2024-02-29 23:59:59.000000001Z", 1709251199_000000001),
        ("1969-12-31T23:59:59.5Z", -500_000_000),
    ],
)
def test_rfc3339_parses_to_exact_nanoseconds(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize("text", ["2023-02-29T00:00:00Z", "2022-07-18T24:00:00Z", "2022-07-18T09:34:60Z",
                                  "2022-07-18T09:34:15", "2022-07-18T09:34:15.Z", "2022-07-18T09:34:15+0800",
                                  "２０２２-07-18T09:34:15Z", "0000-01-01T00:00:00Z", ""])
def test_rfc3339_refuses_what_is_not_a_timestamp(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339_ns(text)


@given(st.integers(min_value=-62_135_596_800 * 10**9, max_value=253_402_300_799 * 10**9))
def test_rfc3339_round_trips_both_styles(ns: int) -> None:
    assert parse_rfc3339_ns(format_rfc3339_ns(ns)) == ns
    assert parse_rfc3339_ns(format_rfc3339_ns(ns, utc_suffix="+00:00", digits="auto")) == ns


# --- builders round-trip, and nothing but EnvelopeError escapes ---------------------------

_EUI = st.integers(min_value=0, max_value=2**64 - 1).map(lambda n: f"{n:016x}")
_TIME = st.integers(min_value=0, max_value=4_102_444_800 * 10**9)
_SNR = st.integers(min_value=-80, max_value=60).map(lambda q: q / 4)


@given(eui=_EUI, payload=st.binary(max_size=64), port=st.integers(1, 255), fcnt=st.integers(0, 2**32 - 1),
       time_ns=_TIME, gateways=st.lists(st.tuples(_EUI, st.integers(-140, 0), _SNR), max_size=4))
def test_chirpstack_builder_and_parser_agree(eui, payload, port, fcnt, time_ns, gateways) -> None:
    topic, body = build_chirpstack_event(eui, payload, port, fcnt, time_ns, gateways)
    up = parse_chirpstack(topic, body, RECEIVED)
    assert (up.device_key, up.payload, up.port, up.fcnt, up.time_ns) == (eui, payload, port, fcnt, time_ns)
    assert up.gateway_ids == tuple(sorted({g for g, _, _ in gateways}))
    if gateways:
        best = max(gateways, key=lambda g: g[1])
        assert (up.rssi_dbm, up.snr_db) == (best[1], best[2])
    assert up.dedup_id and parse_chirpstack(topic, body, 0).dedup_id == up.dedup_id


@given(eui=_EUI, payload=st.binary(max_size=64), port=st.integers(1, 255), fcnt=st.integers(0, 2**32 - 1),
       time_ns=_TIME, gateways=st.lists(st.tuples(st.from_regex(r"[a-z0-9-]{3,20}", fullmatch=True),
                                                  st.integers(-1400, 0).map(lambda r: r / 10), _SNR), max_size=4))
def test_tts_builder_and_parser_agree(eui, payload, port, fcnt, time_ns, gateways) -> None:
    topic, body = build_tts_uplink(eui, payload, port, fcnt, time_ns, gateways)
    up = parse_tts(topic, body, RECEIVED)
    assert (up.device_key, up.payload, up.port, up.fcnt, up.time_ns) == (eui, payload, port, fcnt, time_ns)
    assert up.gateway_ids == tuple(sorted({g for g, _, _ in gateways}))
    if gateways:
        best = max(gateways, key=lambda g: g[1])
        assert (up.rssi_dbm, up.snr_db) == (best[1], best[2])


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
    | st.sampled_from(["", "AQI3", "A81758FFFE0312F4", "2022-07-18T09:34:15Z", "as:up:01E0"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_TOPICS = st.sampled_from([CHIRPSTACK_TOPIC, TTS_TOPIC, "application/x/device/zz/event/up",
                           "v3/a@b/devices/d/up/extra", "v3/a@b/devices/bin-huangpu-102/up"])


def _accepts_or_refuses_cleanly(topic: str, body: bytes) -> None:
    for parser in (parse_chirpstack, parse_tts, parse):
        try:
            up = parser(topic, body, RECEIVED)
        except EnvelopeError as e:
            assert e.reason and e.detail
        else:
            assert isinstance(up, Uplink) and len(up.device_key) == 16 and 0 <= up.port <= 255


@settings(max_examples=300)
@given(topic=_TOPICS, body=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_envelope_errors(topic: str, body: bytes) -> None:
    _accepts_or_refuses_cleanly(topic, body)


@settings(max_examples=300)
@given(topic=_TOPICS, doc=_JSON)
def test_arbitrary_json_raises_only_envelope_errors(topic: str, doc: Any) -> None:
    _accepts_or_refuses_cleanly(topic, orjson.dumps(doc))


_VALID = [
    (CHIRPSTACK_TOPIC, orjson.loads(CHIRPSTACK_DOCS_STYLE)),
    (TTS_TOPIC, orjson.loads(TTS_DOCS_STYLE)),
    (lambda t, b: (t, orjson.loads(b)))(*build_chirpstack_event("a81758fffe0312f4", b"\x01", 1, 9, 10**18,
                                                               [("0016c001f153a14c", -90, 3.5)] * 2)),
    (lambda t, b: (t, orjson.loads(b)))(*build_tts_uplink("a81758fffe0312f4", b"\x01", 1, 9, 10**18,
                                                         [("gw-1", -90.5, 3.5)])),
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_events_raise_only_envelope_errors(data: st.DataObject) -> None:
    topic, original = data.draw(st.sampled_from(_VALID))
    doc = copy.deepcopy(original)
    for _ in range(data.draw(st.integers(1, 3))):
        if not mutate(data, doc, _JSON):
            break
    _accepts_or_refuses_cleanly(topic, orjson.dumps(doc))
