"""Network-server decoded objects beside the bytes: ChirpStack v4 `object`, TTS `decoded_payload`.

Kept apart from the envelope parsers (`chirpstack.py`, `tts.py`), which stay bytes-only: these
wrappers parse the same message once more only when it names a decoded object, and attach
it to the `Uplink` as `decoded`. ChirpStack v3 messages on the shared `application/` prefix
go to `chirpstack_v3`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from collectors.lorawan.chirpstack import parse_chirpstack
from collectors.lorawan.chirpstack_v3 import is_v3_uplink, parse_chirpstack_v3
from collectors.lorawan.tts import parse_tts
from core.uplink import EnvelopeError, Uplink


def _object(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise EnvelopeError("bad_field", f"{path} is a {type(value).__name__}, not an object")
    return value


def parse_chirpstack_any(topic: str, payload: bytes, received_ns: int) -> Uplink:
    """A ChirpStack uplink of v4 or v3 (told apart by topic and body), with the codec's `object` when present."""
    if is_v3_uplink(topic, payload):
        return parse_chirpstack_v3(topic, payload, received_ns)
    up = parse_chirpstack(topic, payload, received_ns)
    if b'"object"' not in payload:
        return up
    obj = _object(orjson.loads(payload).get("object"), "object")
    return up if obj is None else dataclasses.replace(up, decoded=obj)


def parse_tts_decoded(topic: str, payload: bytes, received_ns: int) -> Uplink:
    """A The Things Stack uplink with `uplink_message.decoded_payload` when the payload formatter made one."""
    up = parse_tts(topic, payload, received_ns)
    if b'"decoded_payload"' not in payload:
        return up
    obj = _object(orjson.loads(payload)["uplink_message"].get("decoded_payload"), "uplink_message.decoded_payload")
    return up if obj is None else dataclasses.replace(up, decoded=obj)
