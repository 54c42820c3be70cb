"""ChirpStack v4 MQTT integration: uplink events on `application/<app>/device/<deveui>/event/up` (JSON).

`parse_chirpstack` is pure (bytes in, `Uplink` out); `build_chirpstack_event` writes the
same events the way ChirpStack marshals them, for the simulator and the tests.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from collectors.lorawan import _fields as f
from core.rfc3339 import format_rfc3339_ns
from core.timepolicy import TimeCandidate, envelope_time, from_gps_duration, from_rfc3339
from core.uplink import EnvelopeError, Uplink

SOURCE = "chirpstack"
DEFAULT_TOPIC = "application/+/device/+/event/up"
_U32 = 0xFFFF_FFFF
_NOT_JSON_HINT = "is the ChirpStack MQTT integration set to the JSON marshaler?"
_NUMBER = f.NUMBER


def parse_chirpstack(topic: str, payload: bytes, received_ns: int) -> Uplink:
    """Turn one ChirpStack v4 JSON uplink event into an `Uplink`; `EnvelopeError` on anything malformed.

    Omitted protobuf zero values read as zero (`fCnt`, `fPort`) or empty (`data`). The times
    offered, best first: the event's `time`, each gateway's `gwTime` (or v3-style `time`) and
    `timeSinceGpsEpoch`, then each `nsTime` (see `core.timepolicy`). A MAC-only frame (fPort 0)
    is `mac_only`; a payload still encrypted (`joinServerContext` with an AppSKey) is
    `encrypted_payload`. RSSI and
    SNR come from the gateway with the best RSSI. A topic of the default shape is cross-checked
    (event type `up`, same DevEUI); other topic templates are accepted as they are.
    """
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return _parse_checked(topic, payload, received_ns, None)
    if type(doc) is dict:
        up = _parse_common(topic, doc, received_ns)
        if up is not None:
            return up
        return _parse_checked(topic, payload, received_ns, doc)
    return _parse_checked(topic, payload, received_ns, None)


def _parse_common(topic: str, doc: dict[str, Any], received_ns: int) -> Uplink | None:
    """The well-typed common shape, checked with cheap exact-type tests; None sends it to `_parse_checked`.

    It accepts only what `_parse_checked` accepts and returns the same `Uplink`; anything unusual
    (absent time, case differences, URL-safe base64, a null field) takes the precise path.
    """
    info = doc.get("deviceInfo")
    if type(info) is not dict:
        return None
    eui = info.get("devEui")
    if type(eui) is not str or len(eui) != 16 or eui.strip(f.HEX_DIGITS):
        return None
    if not (topic.endswith("/event/up") and topic.startswith("application/") and topic.count("/") == 5
            and topic.endswith(eui, 0, -9) and topic.endswith("/device/", 0, -25)):
        parts = topic.split("/")
        if len(parts) == 6 and parts[0] == "application" and parts[2] == "device" and parts[4] == "event":
            return None  # the default shape with another event type or DevEUI: `_parse_checked` says which
    data = doc.get("data")
    if data is None:
        raw = b""
    elif type(data) is str:
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except ValueError:
            return None
    else:
        return None
    port = doc.get("fPort", 0)
    fcnt = doc.get("fCnt", 0)
    if type(port) is not int or type(fcnt) is not int or not 1 <= port <= 255 or not 0 <= fcnt <= _U32:
        return None
    if "joinServerContext" in doc:
        return None
    dedup_id = doc.get("deduplicationId")
    if dedup_id is not None and type(dedup_id) is not str:
        return None
    rx_info = doc.get("rxInfo")
    if rx_info is None:
        rx_info = ()
    elif type(rx_info) is not list:
        return None
    gateways: set[str] = set()
    best_rssi = best_snr = None
    for rx in rx_info:
        if type(rx) is not dict:
            return None
        gw = rx.get("gatewayId")
        rssi = rx.get("rssi", 0)
        snr = rx.get("snr", 0)
        if type(gw) is not str or type(rssi) not in _NUMBER or type(snr) not in _NUMBER:
            return None
        if gw:
            gateways.add(gw.lower())
        if best_rssi is None or rssi > best_rssi:
            best_rssi, best_snr = rssi, snr
    times = _times(doc, rx_info)
    return Uplink(eui.lower(), raw, port, envelope_time(times, received_ns), SOURCE, received_ns, fcnt,
                  None if best_rssi is None else float(best_rssi), None if best_snr is None else float(best_snr),
                  tuple(sorted(gateways)), dedup_id or None, times=times)


def _times(doc: dict[str, Any], rx_info: Sequence[Any]) -> tuple[TimeCandidate, ...]:
    """Every time the event offers, best first; never raises (the policy judges them)."""
    out: list[TimeCandidate] = []
    if doc.get("time") is not None:
        out.append(from_rfc3339("time", doc["time"]))
    ns_times: list[TimeCandidate] = []
    for rx in rx_info:
        if type(rx) is not dict:
            continue
        for key in ("gwTime", "time"):
            if rx.get(key) is not None:
                out.append(from_rfc3339(f"rxInfo.{key}", rx[key]))
        if rx.get("timeSinceGpsEpoch") is not None:
            out.append(from_gps_duration("rxInfo.timeSinceGpsEpoch", rx["timeSinceGpsEpoch"]))
        if not ns_times and rx.get("nsTime") is not None:  # one network-server time is enough
            ns_times.append(from_rfc3339("rxInfo.nsTime", rx["nsTime"]))
    return (*out, *ns_times)


def _refuse_encrypted(doc: dict[str, Any]) -> None:
    """`encrypted_payload` when ChirpStack forwarded the FRMPayload without its AppSKey."""
    ctx = doc.get("joinServerContext")
    if isinstance(ctx, dict) and ctx.get("appSKey"):
        raise EnvelopeError(
            "encrypted_payload",
            "ChirpStack sent joinServerContext.appSKey: the payload is still encrypted with a session key "
            "held by the join server. Configure the join server to give ChirpStack the AppSKey (or "
            "decrypt with the key-encryption key before urbansense)")


def _parse_checked(topic: str, payload: bytes, received_ns: int, doc: dict[str, Any] | None) -> Uplink:
    """Every check in order, each failure a precise `EnvelopeError` naming the DevEUI the envelope gave (so a bad
    payload's dead letter is still found by device); `doc` is the payload when already loaded."""
    try:
        return _checked(topic, payload, received_ns, doc)
    except EnvelopeError as exc:
        raise exc.naming(_named_eui(topic, doc)) from None


def _named_eui(topic: str, doc: dict[str, Any] | None) -> str | None:
    """The DevEUI a refused envelope names: `deviceInfo.devEui` when it reads, else its topic's; never raises."""
    info = doc.get("deviceInfo") if doc is not None else None
    eui = info.get("devEui") if isinstance(info, dict) else None
    return (f.quietly(f.dev_eui, eui, "deviceInfo.devEui") if isinstance(eui, str) else None) or f.quietly(
        _topic_dev_eui, topic)


def _checked(topic: str, payload: bytes, received_ns: int, doc: dict[str, Any] | None) -> Uplink:
    topic_eui = _topic_dev_eui(topic)
    if doc is None:
        doc = f.load_object(payload, _NOT_JSON_HINT)
    info = f.obj(doc, "deviceInfo", "deviceInfo")
    eui = f.dev_eui(f.text(info, "devEui", "deviceInfo.devEui"), "deviceInfo.devEui")
    if topic_eui is not None and topic_eui != eui:
        raise EnvelopeError("topic_mismatch", f"topic DevEUI {topic_eui} but deviceInfo.devEui {eui}")
    data = f.base64_bytes(doc, "data", "data")
    port = f.uint(doc, "fPort", "fPort", 255)
    fcnt = f.uint(doc, "fCnt", "fCnt", _U32)
    dedup_id = f.text(doc, "deduplicationId", "deduplicationId", required=False)
    _refuse_encrypted(doc)
    if port == 0:
        raise EnvelopeError("mac_only", f"fPort 0 (fCnt {fcnt}): MAC commands only, no application payload")

    rx_info = f.array(doc, "rxInfo", "rxInfo")
    gateways: set[str] = set()
    best_rssi: float | None = None
    best_snr: float | None = None
    for i, rx in enumerate(rx_info):
        if type(rx) is not dict:
            raise EnvelopeError("bad_field", f"rxInfo[{i}] is a {type(rx).__name__}, not an object")
        gw = rx.get("gatewayId")
        rssi = rx.get("rssi", 0)
        snr = rx.get("snr", 0)
        if type(gw) is not str or type(rssi) not in f.NUMBER or type(snr) not in f.NUMBER:
            gw = f.text(rx, "gatewayId", f"rxInfo[{i}].gatewayId", required=False)
            rssi = f.number(rx, "rssi", f"rxInfo[{i}].rssi") or 0
            snr = f.number(rx, "snr", f"rxInfo[{i}].snr") or 0
        if gw:
            gateways.add(gw.lower())
        if best_rssi is None or rssi > best_rssi:
            best_rssi, best_snr = rssi, snr

    times = _times(doc, rx_info)
    return Uplink(
        device_key=eui,
        payload=data,
        port=port,
        time_ns=envelope_time(times, received_ns),
        source=SOURCE,
        received_ns=received_ns,
        fcnt=fcnt,
        rssi_dbm=None if best_rssi is None else float(best_rssi),
        snr_db=None if best_snr is None else float(best_snr),
        gateway_ids=tuple(sorted(gateways)),
        dedup_id=dedup_id or None,
        times=times,
    )


def _topic_dev_eui(topic: str) -> str | None:
    """The DevEUI of a default-shaped topic (`not_uplink` for another event type); None for other shapes."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event":
        return None
    if parts[5] != "up":
        raise EnvelopeError("not_uplink", f"ChirpStack {parts[5]!r} event on {topic!r}, not an uplink")
    return f.dev_eui(parts[3], "topic DevEUI")


def build_chirpstack_event(
    dev_eui: str,
    payload: bytes,
    fport: int,
    fcnt: int,
    time_ns: int,
    gateways: Sequence[tuple[str, float, float]],
    dedup_id: str | None = None,
    *,
    application_id: str = "6f1c2a4e-3b7d-4e8a-9c21-5d0e7f3a9b14",
    application_name: str = "urbansense",
    device_name: str | None = None,
    device_profile_name: str = "urban-sensor-cn470",
    tags: dict[str, str] | None = None,
    frequency_hz: int = 486_300_000,
    spreading_factor: int = 9,
    region: str = "cn470_10",
) -> tuple[str, bytes]:
    """A ChirpStack v4 uplink event (topic, JSON bytes) as its MQTT integration publishes it.

    `gateways` are `(gateway_id, rssi_dbm, snr_db)`, in the order the network server lists them.
    Top-level fields are all present (ChirpStack emits defaults there); gateway fields that are
    zero are omitted, as ChirpStack does.
    """
    eui = dev_eui.lower()
    stamp = format_rfc3339_ns(time_ns, utc_suffix="+00:00", digits="auto")
    rx_info = []
    for n, (gateway_id, rssi, snr) in enumerate(gateways):
        rx: dict[str, Any] = {
            "gatewayId": gateway_id.lower(),
            "uplinkId": (fcnt * 7919 + n * 104729 + 1) & 0xFFFF,
            "nsTime": format_rfc3339_ns(time_ns + 180_000_000 + n * 2_417_300, utc_suffix="+00:00",
                                        digits="auto"),
            "rssi": int(rssi),
            "snr": snr,
            "channel": (fcnt + n) % 8,
            "rfChain": n % 2,
            "location": {"latitude": round(31.2304 + n * 0.0071, 6),
                         "longitude": round(121.4737 - n * 0.0053, 6), "altitude": 12.0 + n},
            "context": base64.b64encode(((fcnt * 1_000_003 + n) & _U32).to_bytes(4, "big")).decode(),
            "metadata": {"region_config_id": region, "region_common_name": "CN470"},
            "crcStatus": "CRC_OK",
        }
        rx_info.append({k: v for k, v in rx.items() if v != 0})
    event = {
        "deduplicationId": dedup_id or str(uuid.UUID(int=(time_ns << 64 | int(eui, 16)) & (2**128 - 1),
                                                     version=4)),
        "time": stamp,
        "deviceInfo": {
            "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
            "tenantName": "Urban Management Bureau",
            "applicationId": application_id,
            "applicationName": application_name,
            "deviceProfileId": "0b7e8f4c-52a1-4c3e-b6d9-2f41a8c07e55",
            "deviceProfileName": device_profile_name,
            "deviceName": device_name or f"sensor-{eui[-6:]}",
            "devEui": eui,
            "deviceClassEnabled": "CLASS_A",
            "tags": tags or {},
        },
        "devAddr": f"{int(eui, 16) & 0x01FF_FFFF | 0x2600_0000:08x}",
        "adr": True,
        "dr": 12 - spreading_factor if spreading_factor <= 12 else 0,
        "fCnt": fcnt,
        "fPort": fport,
        "confirmed": False,
        "data": base64.b64encode(payload).decode(),
        "rxInfo": rx_info,
        "txInfo": {
            "frequency": frequency_hz,
            "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": spreading_factor,
                                    "codeRate": "CR_4_5"}},
        },
        "regionConfigId": region,
    }
    return f"application/{application_id}/device/{eui}/event/up", orjson.dumps(event)
