"""The cheap paths agree with the precise ones: same `Uplink`, or a hand-over to the path that raises."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutation import mutate

from collectors.lorawan import build_chirpstack_event
from collectors.lorawan.chirpstack import _parse_checked, _parse_common
from core.rfc3339 import _parse_after_minute, _parse_minute, parse_rfc3339_ns
from core.uplink import EnvelopeError

RECEIVED = 1_800_000_000_000_000_000
_TOPIC, _BODY = build_chirpstack_event("a81758fffe0312f4", b"\x01\x02\x03", 1, 9, 1_700_000_000_123_456_789,
                                       [("0016C001F153A14C", -90, 3.5), ("0016c001f153a14d", -80, -1.25)])
_EVENT = orjson.loads(_BODY)
_ODD = st.sampled_from([None, True, 0, -1, 256, 2**32, 1.5, 7.0, "", "7", "AQID", "AQI", "AQ-_", "A81758FFFE0312F4",
                        "a81758fffe0312f4", "a81758fffe0312f٤", "2022-07-18T09:34:15Z",
                        "2022-07-18T09:34:15.1+08:00", "x", [], {}, [{}], {"rssi": -1}])


def _checked(topic: str, doc: dict[str, Any]) -> Any:
    try:
        return _parse_checked(topic, orjson.dumps(doc), RECEIVED, None)
    except EnvelopeError as e:
        return e.reason


def test_common_event_takes_the_fast_path_with_the_same_result() -> None:
    fast = _parse_common(_TOPIC, _EVENT, RECEIVED)
    assert fast is not None
    assert fast == _parse_checked(_TOPIC, _BODY, RECEIVED, None)
    assert fast.gateway_ids == ("0016c001f153a14c", "0016c001f153a14d") and fast.rssi_dbm == -80.0


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_never_accepts_what_the_precise_path_refuses(data: st.DataObject) -> None:
    doc = copy.deepcopy(_EVENT)
    topic = data.draw(st.sampled_from([_TOPIC, _TOPIC.replace("a81758fffe0312f4", "A81758FFFE0312F4"),
                                       _TOPIC.replace("/up", "/join"), "custom/topic"]))
    for _ in range(data.draw(st.integers(0, 3))):
        mutate(data, doc, _ODD)
    fast = _parse_common(topic, doc, RECEIVED)
    if fast is not None:
        assert fast == _checked(topic, doc)


_STAMP = st.builds(lambda prefix, tail: prefix + tail,
                   st.sampled_from(["2022-07-18T09:34", "2024-02-29t23:59", "1970-01-01 00:00"]),
                   st.text(st.sampled_from(":0123456789.Zz+-٣ "), max_size=16))


def _reference(text: str) -> Any:
    try:
        return _parse_after_minute(text, _parse_minute(text))
    except ValueError:
        return "refused"


@settings(max_examples=1000)
@given(text=_STAMP)
def test_rfc3339_fast_path_agrees_with_the_regex(text: str) -> None:
    try:
        got: Any = parse_rfc3339_ns(text)
    except ValueError:
        got = "refused"
    assert got == _reference(text)


def test_rfc3339_common_forms() -> None:
    assert parse_rfc3339_ns("2022-07-18T09:34:15.775023242+00:00") == 1_658_136_855_775_023_242
    assert parse_rfc3339_ns("2022-07-18T09:34:15.7750232429Z") == 1_658_136_855_775_023_242
    assert parse_rfc3339_ns("2022-07-18T09:34:15Z") == 1_658_136_855_000_000_000
