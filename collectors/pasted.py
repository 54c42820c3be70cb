"""A message as a technician copies it from a network server's or platform's console, whatever its kind.

`urbansense decode --envelope FILE` uses it to try a real message against a model before any
device is registered: the same parsers as the service, without topic or signature checks.
"""

from __future__ import annotations

import orjson

from collectors.lorawan.decoded import parse_chirpstack_any, parse_tts_decoded
from collectors.nbiot.platforms import onenet_parts, parse_ctwing, parse_onenet_msg
from core.uplink import EnvelopeError, Uplink

KINDS = "a ChirpStack v4/v3 event, a The Things Stack uplink, a CTWing push or a OneNET push"


def parse_pasted(body: bytes, received_ns: int) -> list[Uplink]:
    """The uplinks in one pasted message, told apart by its keys; `EnvelopeError` when it is none of `KINDS`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("bad_json", f"{exc} (expected {KINDS} as JSON)") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("bad_json", f"top level is a JSON {type(doc).__name__}; expected {KINDS}")
    if "deviceInfo" in doc or "devEUI" in doc:
        return [parse_chirpstack_any("application/", body, received_ns)]
    if "end_device_ids" in doc:
        return [parse_tts_decoded("v3/", body, received_ns)]
    if "msg" in doc:
        return parse_onenet_msg(onenet_parts(body)[0], received_ns)
    if "IMEI" in doc or "imei" in doc:
        return parse_ctwing(body, received_ns)
    raise EnvelopeError("unknown_envelope", f"keys {', '.join(list(doc)[:8])}: expected {KINDS}")
