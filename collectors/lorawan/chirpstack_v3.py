"""ChirpStack Application Server v3 MQTT integration: uplinks of both marshalers on both topic generations.

Topics: `application/<id>/device/<deveui>/rx` (older v3 releases) and
`application/<id>/device/<deveui>/event/up` (later v3, the same shape as v4). Marshalers:

* `json` (protobuf JSON): `devEUI`/`gatewayID` as base64, `objectJSON` a JSON text,
  numbers may be omitted when zero, `publishedAt`;
* `json_v3` (the legacy JSON): `devEUI`/`gatewayID` as hex, `object` an object.

`parse_chirpstack_v3` accepts either (DevEUI in hex or base64 is told apart by its length);
events other than uplinks (`join`, `ack`, `error`, `status`, `location`, `txack`) are
`not_uplink`, as for v4. `build_chirpstack_v3_uplink` writes the same messages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson

from collectors.lorawan import _fields as f
from core.rfc3339 import format_rfc3339_ns
from core.timepolicy import TimeCandidate, envelope_time, from_gps_duration, from_rfc3339
from core.uplink import EnvelopeError, Uplink

SOURCE = "chirpstack-v3"
DEFAULT_TOPIC = "application/+/device/+/rx"
_U32 = 0xFFFF_FFFF
_HINT = "is the ChirpStack v3 MQTT integration set to the json or json_v3 marshaler?"


def is_v3_uplink(topic: str, payload: bytes) -> bool:
    """True for a v3 message: an `/rx` topic, or a v3 body (top-level `devEUI`, no v4 `deviceInfo`)."""
    return topic.endswith("/rx") or (b'"devEUI"' in payload and b'"deviceInfo"' not in payload)


def eui_hex(value: object, path: str) -> str:
    """An 8-byte EUI given as hex (json_v3) or base64 (protobuf json) → 16 lowercase hex digits; `bad_deveui`."""
    if not isinstance(value, str):
        raise EnvelopeError("bad_deveui", f"{path} is a {type(value).__name__}, not a string")
    if len(value) == 16:
        return f.dev_eui(value, path)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 8:
        raise EnvelopeError("bad_deveui", f"{path} = {value[:40]!r} is neither 16 hex digits nor base64 of 8 bytes")
    return raw.hex()


def _topic_dev_eui(topic: str) -> str | None:
    """The DevEUI of a default-shaped v3 topic; `not_uplink` for other events; None for other shapes."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "application" or parts[2] != "device":
        return None
    event = parts[4] if len(parts) == 5 else "/".join(parts[4:])
    if event not in ("rx", "event/up"):
        raise EnvelopeError("not_uplink", f"ChirpStack v3 {event!r} event on {topic!r}, not an uplink")
    return eui_hex(parts[3], "topic DevEUI")


def decoded_object(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The device-profile codec's result: `object` (json_v3) or `objectJSON` (json); None when absent."""
    obj = doc.get("object")
    if obj is None:
        text = doc.get("objectJSON")
        if text is None or text == "":
            return None
        if not isinstance(text, str):
            raise EnvelopeError("bad_field", f"objectJSON is a {type(text).__name__}, not a JSON text")
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise EnvelopeError("bad_json", f"objectJSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("bad_field", f"the decoded object is a {type(obj).__name__}, not an object")
    return obj


def parse_chirpstack_v3(topic: str, payload: bytes, received_ns: int) -> Uplink:
    """One ChirpStack v3 uplink (either marshaler) → `Uplink` with its decoded object; `EnvelopeError` if malformed.

    The times offered, best first: each gateway's `time` and `timeSinceGPSEpoch`, then
    `publishedAt` (see `core.timepolicy`). fPort 0 (MAC commands only) is `mac_only`. A refusal names the
    DevEUI the envelope gave, so a bad payload's dead letter is still found by device.
    """
    try:
        return _parse(topic, payload, received_ns)
    except EnvelopeError as exc:
        raise exc.naming(_named_eui(topic, payload)) from None


def _named_eui(topic: str, payload: bytes) -> str | None:
    """The DevEUI a refused v3 envelope names: `devEUI` when it reads, else its topic's; never raises."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = None
    eui = f.quietly(eui_hex, doc["devEUI"], "devEUI") if isinstance(doc, dict) and "devEUI" in doc else None
    return eui or f.quietly(_topic_dev_eui, topic)


def _parse(topic: str, payload: bytes, received_ns: int) -> Uplink:
    topic_eui = _topic_dev_eui(topic)
    doc = f.load_object(payload, _HINT)
    if "devEUI" not in doc:
        raise EnvelopeError("missing_field", "devEUI is absent")
    eui = eui_hex(doc["devEUI"], "devEUI")
    if topic_eui is not None and topic_eui != eui:
        raise EnvelopeError("topic_mismatch", f"topic DevEUI {topic_eui} but devEUI {eui}")
    data = f.base64_bytes(doc, "data", "data")
    port = f.uint(doc, "fPort", "fPort", 255)
    fcnt = f.uint(doc, "fCnt", "fCnt", _U32)
    if port == 0:
        raise EnvelopeError("mac_only", f"fPort 0 (fCnt {fcnt}): MAC commands only, no application payload")
    gateways: set[str] = set()
    best_rssi: float | None = None
    best_snr: float | None = None
    rx_info = f.array(doc, "rxInfo", "rxInfo")
    for i, rx in enumerate(rx_info):
        if type(rx) is not dict:
            raise EnvelopeError("bad_field", f"rxInfo[{i}] is a {type(rx).__name__}, not an object")
        if rx.get("gatewayID") is not None:
            gateways.add(eui_hex(rx["gatewayID"], f"rxInfo[{i}].gatewayID"))
        rssi = f.number(rx, "rssi", f"rxInfo[{i}].rssi") or 0.0
        snr = f.number(rx, "loRaSNR", f"rxInfo[{i}].loRaSNR") or 0.0
        if best_rssi is None or rssi > best_rssi:
            best_rssi, best_snr = rssi, snr
    times: list[TimeCandidate] = []
    for rx in rx_info:
        if rx.get("time") is not None:
            times.append(from_rfc3339("rxInfo.time", rx["time"]))
        if rx.get("timeSinceGPSEpoch") is not None:
            times.append(from_gps_duration("rxInfo.timeSinceGPSEpoch", rx["timeSinceGPSEpoch"]))
    if doc.get("publishedAt") is not None:
        times.append(from_rfc3339("publishedAt", doc["publishedAt"]))
    return Uplink(device_key=eui, payload=data, port=port, time_ns=envelope_time(times, received_ns), source=SOURCE,
                  received_ns=received_ns, fcnt=fcnt, rssi_dbm=best_rssi, snr_db=best_snr,
                  gateway_ids=tuple(sorted(gateways)), decoded=decoded_object(doc), times=tuple(times))


def build_chirpstack_v3_uplink(
    dev_eui: str,
    payload: bytes,
    fport: int,
    fcnt: int,
    time_ns: int,
    gateways: Sequence[tuple[str, float, float]],
    *,
    marshaler: Literal["json", "json_v3"] = "json",
    topic_generation: Literal["rx", "event"] = "event",
    decoded: Mapping[str, Any] | None = None,
    application_id: int = 12,
    device_name: str = "sensor",
) -> tuple[str, bytes]:
    """A ChirpStack v3 uplink (topic, JSON bytes) as its MQTT integration publishes it.

    `marshaler="json"` writes protobuf JSON (base64 EUIs, `objectJSON`, zero values as
    jsonpb emits them); `"json_v3"` the legacy JSON (hex EUIs, `object`).
    """
    eui = bytes.fromhex(dev_eui)
    stamp = format_rfc3339_ns(time_ns)
    pb = marshaler == "json"
    rx_info = []
    for gateway_id, rssi, snr in gateways:
        gw = bytes.fromhex(gateway_id)
        rx: dict[str, Any] = {"gatewayID": base64.b64encode(gw).decode() if pb else gw.hex(),
                              "time": stamp, "rssi": int(rssi), "loRaSNR": snr,
                              "location": {"latitude": 31.2304, "longitude": 121.4737, "altitude": 12}}
        if pb:
            rx.update({"timeSinceGPSEpoch": None, "channel": fcnt % 8, "rfChain": 0, "board": 0, "antenna": 0,
                       "fineTimestampType": "NONE", "context": "AAAAAA==", "uplinkID": "jhMh8Gq6RAOChSKbi83RHQ=="})
        else:
            rx["name"] = f"gw-{gw.hex()[-4:]}"
        rx_info.append(rx)
    doc: dict[str, Any] = {
        "applicationID": str(application_id), "applicationName": "urbansense", "deviceName": device_name,
        "devEUI": base64.b64encode(eui).decode() if pb else eui.hex(),
        "rxInfo": rx_info,
        "txInfo": {"frequency": 486_300_000, "modulation": "LORA",
                   "loRaModulationInfo": {"bandwidth": 125, "spreadingFactor": 9, "codeRate": "4/5"}}
        if pb else {"frequency": 486_300_000, "dr": 3},
        "adr": True, "dr": 3, "fCnt": fcnt, "fPort": fport,
        "data": base64.b64encode(payload).decode(),
    }
    if pb:
        doc.update({"objectJSON": orjson.dumps(decoded).decode() if decoded is not None else "",
                    "tags": {}, "confirmedUplink": False,
                    "devAddr": base64.b64encode((int(dev_eui, 16) & 0x01FF_FFFF).to_bytes(4, "big")).decode(),
                    "publishedAt": stamp})
    else:
        if decoded is not None:
            doc["object"] = dict(decoded)
        doc["tags"] = {}
    suffix = "rx" if topic_generation == "rx" else "event/up"
    return f"application/{application_id}/device/{eui.hex()}/{suffix}", orjson.dumps(doc)
