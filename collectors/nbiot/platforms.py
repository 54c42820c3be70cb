"""Operator IoT platform pushes → `Uplink`s, pure: China Telecom CTWing/AEP and China Mobile OneNET.

CTWing (AEP subscription push, `messageType = "dataReport"`): `IMEI`, `timestamp` (ms) and
`payload` — either `{"APPdata": base64}` (transparent bytes) or the object the product's
profile already decoded (`serviceData`, or the properties beside `serviceId`). OneNET:
`{"msg", "nonce", "signature"}` (old NB-IoT platform: `msg_signature`), signature =
Base64(MD5(token + nonce + msg)); `msg` is one message or a list (old platform: `imei` and/or
`dev_id`, `at` ms, `type` 1 = data point, `ds_id` the datastream such as the IPSO id
`3303_0_5700`, `value` a number, text, hex or base64), or the new platform's JSON text
(`deviceName`, `data.params` properties).

Transparent bytes are our UDP frame when they parse as one (its IMEI must equal the
platform's), else the model's bare report (message type 0x01). Decoded properties go to
the `Uplink` as `decoded` and, for the native models' profile path, as JSON (port 0).
OneNET data points of one device at one time (several datastreams in one push) become one
uplink whose `decoded` maps each `ds_id` to its value. A device is keyed by its IMEI when
the message has one (its `dev_id`, as `onenet:<dev_id>`, is then an alternative key), else
by `onenet:<dev_id>`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import string
from typing import Any

import orjson

from collectors.nbiot.frame import parse_frame, to_uplink
from core.keys import DeviceKeyError, normalise_imei, onenet_key
from core.timepolicy import TimeCandidate, envelope_time, from_number
from core.uplink import EnvelopeError, Uplink

DATA, PLATFORM_JSON = 0x01, 0
_HEX = frozenset(string.hexdigits)


def onenet_signature(token: str, nonce: str, msg: str) -> str:
    return base64.b64encode(hashlib.md5((token + nonce + msg).encode()).digest()).decode()


def onenet_signature_ok(token: str, nonce: str, msg: str, signature: str) -> bool:
    """Constant-time check; a '+' turned into ' ' by form decoding is put back."""
    return hmac.compare_digest(onenet_signature(token, nonce, msg), signature.replace(" ", "+"))


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("bad_json", str(exc)) from None


def _imei(value: object) -> str:
    try:
        return normalise_imei(str(value))
    except DeviceKeyError as exc:
        raise EnvelopeError("bad_imei", str(exc)) from None


def _times(name: str, value: object) -> tuple[TimeCandidate, ...]:
    """The platform's timestamp as a candidate (unit by magnitude: the platforms send ms); absent → ()."""
    return () if value is None else (from_number(name, value),)


def _bytes_uplink(raw: bytes, imei: str, times: tuple[TimeCandidate, ...], source: str,
                  received_ns: int) -> Uplink:
    """Our frame inside the platform's bytes (its device time offered first, then the platform's), else bare bytes."""
    try:
        frame = parse_frame(raw)
    except EnvelopeError:
        return Uplink(imei, raw, DATA, envelope_time(times, received_ns), source, received_ns, times=times)
    if frame.imei != imei:
        raise EnvelopeError("imei_mismatch", f"frame carries IMEI {frame.imei}, the platform says {imei}", imei)
    up = to_uplink(frame, source, received_ns)
    both = up.times + times
    return dataclasses.replace(up, time_ns=envelope_time(both, received_ns), times=both)


def parse_ctwing(body: bytes, received_ns: int) -> list[Uplink]:
    """A CTWing push body → its uplink (empty for message types other than dataReport)."""
    doc = _json(body)
    if not isinstance(doc, dict):
        raise EnvelopeError("bad_envelope", "CTWing push is not a JSON object")
    if doc.get("messageType", "dataReport") != "dataReport":
        return []
    imei = _imei(doc.get("IMEI") or doc.get("imei"))
    try:
        return _ctwing_report(doc, imei, received_ns)
    except EnvelopeError as exc:  # a bad payload's dead letter still names the IMEI it came from
        raise exc.naming(imei) from None


def _ctwing_report(doc: dict[str, Any], imei: str, received_ns: int) -> list[Uplink]:
    times = _times("ctwing.timestamp", doc.get("timestamp"))
    time_ns = envelope_time(times, received_ns)
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise EnvelopeError("bad_envelope", "CTWing dataReport without a payload object")
    if "APPdata" in payload:
        try:
            raw = base64.b64decode(str(payload["APPdata"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EnvelopeError("bad_base64", f"APPdata: {exc}") from None
        up = _bytes_uplink(raw, imei, times, "ctwing", received_ns)
        decoded = payload.get("serviceData")
        return [dataclasses.replace(up, decoded=decoded) if isinstance(decoded, dict) else up]
    props = _ctwing_properties(payload)
    return [Uplink(imei, orjson.dumps(props), PLATFORM_JSON, time_ns, "ctwing", received_ns, decoded=props,
                   times=times)]


def _ctwing_properties(payload: dict[str, Any]) -> dict[str, Any]:
    """The profile-decoded properties: `serviceData` when the push nests them, else the payload without `serviceId`."""
    data = payload.get("serviceData")
    if data is not None:
        if not isinstance(data, dict):
            raise EnvelopeError("bad_envelope", f"CTWing payload.serviceData is a {type(data).__name__}, not an object")
        return data
    return {k: v for k, v in payload.items() if k != "serviceId"}


def onenet_parts(body: bytes) -> tuple[str, str, str]:
    """(msg as signed, nonce, signature) of a OneNET POST body."""
    doc = _json(body)
    if not isinstance(doc, dict) or "msg" not in doc:
        raise EnvelopeError("bad_envelope", "OneNET push is not a JSON object with msg")
    msg = doc["msg"]
    text = msg if isinstance(msg, str) else orjson.dumps(msg).decode()
    return text, str(doc.get("nonce", "")), str(doc.get("signature") or doc.get("msg_signature") or "")


def _onenet_bytes(value: object) -> bytes | None:
    """The bytes of a hex or base64 text value; None for numbers, other text and objects."""
    if not isinstance(value, str) or not value:
        return None
    if len(value) % 2 == 0 and set(value) <= _HEX:
        return bytes.fromhex(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _onenet_keys(m: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(device key, alternative keys): the IMEI when given (a valid `dev_id` as the alternative), else the dev_id."""
    dev_id = m.get("dev_id")
    if m.get("imei") is not None:
        try:
            alt = (onenet_key(dev_id),) if dev_id is not None else ()
        except DeviceKeyError:
            alt = ()
        return _imei(m["imei"]), alt
    if dev_id is None:
        raise EnvelopeError("missing_field", "OneNET data point names no device: neither imei nor dev_id")
    try:
        return onenet_key(dev_id), ()
    except DeviceKeyError as exc:
        raise EnvelopeError("bad_dev_id", str(exc)) from None


def _onenet_one(m: object, received_ns: int) -> Uplink | None:
    if not isinstance(m, dict):
        raise EnvelopeError("bad_envelope", "OneNET message is not a JSON object")
    if "deviceName" in m:
        data = m.get("data")
        params = data.get("params") if isinstance(data, dict) else None
        if m.get("messageType", "notify") != "notify" or not isinstance(params, dict):
            return None
        props = {k: v.get("value") if isinstance(v, dict) else v for k, v in params.items()}
        name = str(m["deviceName"])
        key = _imei(name) if name.isdigit() and len(name) == 15 else _onenet_keys({"dev_id": name})[0]
        times = _times("onenet.notifyTime", m.get("notifyTime") or m.get("time"))
        return Uplink(key, orjson.dumps(props), PLATFORM_JSON, envelope_time(times, received_ns), "onenet",
                      received_ns, times=times,
                      decoded=props)
    if m.get("type", 1) != 1:
        return None
    key, alt = _onenet_keys(m)
    if "value" not in m:
        raise EnvelopeError("bad_envelope", "OneNET data point without a value", key)
    value = m["value"]
    times = _times("onenet.at", m.get("at"))
    time_ns = envelope_time(times, received_ns)
    decoded = {str(m.get("ds_id") or "value"): value}
    raw = _onenet_bytes(value)
    if raw is None:
        return Uplink(key, b"", DATA, time_ns, "onenet", received_ns, decoded=decoded, alt_keys=alt, times=times)
    up = _bytes_uplink(raw, key, times, "onenet", received_ns) if key.isdigit() else \
        Uplink(key, raw, DATA, time_ns, "onenet", received_ns, times=times)
    return dataclasses.replace(up, decoded=decoded, alt_keys=alt)


def _merge(group: list[Uplink]) -> Uplink:
    """Several datastreams of one device at one time → one uplink; their bytes, if any, do not combine."""
    if len(group) == 1:
        return group[0]
    decoded: dict[str, Any] = {}
    for up in group:
        decoded.update(up.decoded or {})
    return dataclasses.replace(group[0], payload=b"", decoded=decoded)


def parse_onenet_msg(msg: str, received_ns: int) -> list[Uplink]:
    """The data messages in a (signature-checked) OneNET `msg`; device status messages are skipped.

    Data points with the same device and time are merged into one uplink.
    """
    doc = _json(msg.encode())
    items = doc if isinstance(doc, list) else [doc]
    groups: dict[tuple[str, int], list[Uplink]] = {}
    for m in items:
        up = _onenet_one(m, received_ns)
        if up is not None:
            groups.setdefault((up.device_key, up.time_ns), []).append(up)
    return [_merge(g) for g in groups.values()]
