"""The Things Stack v3 MQTT integration: uplink messages (`v3/<app>@<tenant>/devices/<device>/up`).

`parse_tts` is pure (bytes in, `Uplink` out); `build_tts_uplink` writes the same messages
the way The Things Stack marshals them, for the simulator and the tests.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from collectors.lorawan import _fields as f
from core.rfc3339 import format_rfc3339_ns
from core.timepolicy import TimeCandidate, envelope_time, from_rfc3339
from core.uplink import EnvelopeError, Uplink

SOURCE = "tts"
DEFAULT_TOPIC = "v3/+/devices/+/up"
_U32 = 0xFFFF_FFFF
_NOT_JSON_HINT = "The Things Stack publishes JSON on v3/... topics"
_RX = "uplink_message.rx_metadata"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def parse_tts(topic: str, payload: bytes, received_ns: int) -> Uplink:
    """Turn one The Things Stack v3 JSON uplink message into an `Uplink`; `EnvelopeError` if malformed.

    A message without `uplink_message` (join, downlink and service events) is `not_uplink`.
    Omitted zero values read as zero (`f_cnt`, `f_port`) or empty (`frm_payload`). The times
    offered, best first: the network server's `uplink_message.received_at`, the top-level
    (application server) `received_at`, each gateway's `time` and `received_at` (see
    `core.timepolicy`). The dedup id is the `as:up:` correlation id, else a hash of all
    correlation ids. fPort 0 (MAC only) is `mac_only`; a payload still encrypted (`app_s_key`
    sent with it, e.g. `skip_payload_crypto`) is `encrypted_payload`.
    """
    topic_device = _topic_device_id(topic)
    doc = f.load_object(payload, _NOT_JSON_HINT)
    ids = f.obj(doc, "end_device_ids", "end_device_ids")
    up = doc.get("uplink_message")
    if up is None:
        kind = next((k for k in doc if k not in ("end_device_ids", "correlation_ids", "received_at")), "?")
        raise EnvelopeError("not_uplink", f"The Things Stack message carries {kind!r}, not uplink_message")
    if not isinstance(up, dict):
        raise EnvelopeError("bad_field", f"uplink_message is a {type(up).__name__}, not an object")
    if topic_device is not None:
        device_id = f.text(ids, "device_id", "end_device_ids.device_id", required=False)
        if device_id is not None and device_id != topic_device:
            raise EnvelopeError("topic_mismatch",
                                f"topic device {topic_device!r} but end_device_ids.device_id {device_id!r}")
    raw_eui = f.text(ids, "dev_eui", "end_device_ids.dev_eui", required=False)
    if raw_eui is None:
        raise EnvelopeError("missing_field",
                            "end_device_ids.dev_eui is absent (an ABP device registered without a DevEUI?)")
    eui = f.dev_eui(raw_eui, "end_device_ids.dev_eui")
    try:  # from here on a refusal names the DevEUI (its dead letter stays findable by device)
        data = f.base64_bytes(up, "frm_payload", "uplink_message.frm_payload")
        port = f.uint(up, "f_port", "uplink_message.f_port", 255)
        fcnt = f.uint(up, "f_cnt", "uplink_message.f_cnt", _U32)
        if up.get("app_s_key"):
            raise EnvelopeError(
                "encrypted_payload",
                "uplink_message.app_s_key is present: The Things Stack forwarded the FRMPayload still encrypted "
                "(skip_payload_crypto). Turn payload crypto back on for this application or device, or decrypt "
                "with the AppSKey unwrapped by its KEK before urbansense")
        if port == 0:
            raise EnvelopeError("mac_only", f"f_port 0 (f_cnt {fcnt}): MAC commands only, no application payload")

        gateways: set[str] = set()
        best_rssi: float | None = None
        best_snr: float | None = None
        rx_times: list[TimeCandidate] = []
        for i, rx in enumerate(f.array(up, "rx_metadata", "uplink_message.rx_metadata")):
            if type(rx) is not dict:
                raise EnvelopeError("bad_field", f"{_RX}[{i}] is a {type(rx).__name__}, not an object")
            gw_ids = rx.get("gateway_ids")
            gw = gw_ids.get("gateway_id") if type(gw_ids) is dict else None
            rssi = rx.get("rssi")
            if rssi is None:
                rssi = rx.get("channel_rssi", 0)
            snr = rx.get("snr", 0)
            if type(gw) is not str or type(rssi) not in f.NUMBER or type(snr) not in f.NUMBER:
                gw, rssi, snr = _checked_rx(rx, f"{_RX}[{i}]")
            if gw:
                gateways.add(gw)
            if best_rssi is None or rssi > best_rssi:
                best_rssi, best_snr = rssi, snr
            for key in ("time", "received_at"):
                if rx.get(key) is not None:
                    rx_times.append(from_rfc3339(f"rx_metadata.{key}", rx[key]))

        times = tuple(from_rfc3339(name, parent["received_at"])
                      for name, parent in (("uplink_message.received_at", up), ("received_at", doc))
                      if parent.get("received_at") is not None) + tuple(rx_times)
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
            dedup_id=_dedup_id(f.array(doc, "correlation_ids", "correlation_ids")),
            times=times,
        )
    except EnvelopeError as exc:
        raise exc.naming(eui) from None


def _checked_rx(rx: dict[str, Any], path: str) -> tuple[str | None, float, float]:
    """Gateway id, RSSI and SNR of one rx_metadata entry, with omitted values and precise errors."""
    ids = f.obj(rx, "gateway_ids", f"{path}.gateway_ids", required=False)
    gw = f.text(ids, "gateway_id", f"{path}.gateway_ids.gateway_id", required=False)
    rssi = f.number(rx, "rssi", f"{path}.rssi")
    if rssi is None:
        rssi = f.number(rx, "channel_rssi", f"{path}.channel_rssi") or 0.0
    return gw, rssi, f.number(rx, "snr", f"{path}.snr") or 0.0


def _topic_device_id(topic: str) -> str | None:
    """The device id of a `v3/<app>@<tenant>/devices/<device>/<event>` topic; None for other shapes."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "v3" or parts[2] != "devices":
        return None
    if parts[4] != "up" or len(parts) != 5:
        raise EnvelopeError("not_uplink", f"The Things Stack {'/'.join(parts[4:])!r} message on {topic!r}")
    return parts[3]


def _dedup_id(correlation_ids: list[Any]) -> str | None:
    if not correlation_ids:
        return None
    for cid in correlation_ids:
        if isinstance(cid, str) and cid.startswith("as:up:"):
            return cid
    joined = "\n".join(str(c) for c in correlation_ids)
    return "cids:" + hashlib.blake2b(joined.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _go_float(x: float) -> float | int:
    """A float as Go's JSON writes it: integral values without a fraction."""
    return int(x) if float(x).is_integer() else x


def _ulid(time_ns: int, salt: int) -> str:
    """A ULID-shaped id (48-bit ms time + 80 bits) in Crockford base32, like TTS correlation ids."""
    n = ((time_ns // 1_000_000) & (2**48 - 1)) << 80 | (salt * 0x9E3779B97F4A7C15) & (2**80 - 1)
    return "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def build_tts_uplink(
    dev_eui: str,
    payload: bytes,
    fport: int,
    fcnt: int,
    time_ns: int,
    gateways: Sequence[tuple[str, float, float]],
    *,
    device_id: str | None = None,
    application_id: str = "urbansense",
    tenant: str = "ttn",
    frequency_hz: int = 868_100_000,
    spreading_factor: int = 7,
) -> tuple[str, bytes]:
    """A The Things Stack v3 uplink message (topic, JSON bytes) as its MQTT integration publishes it.

    `gateways` are `(gateway_id, rssi_dbm, snr_db)`. Zero values are omitted, as The Things Stack does.
    """
    eui = dev_eui.upper()
    device_id = device_id or f"eui-{eui.lower()}"
    salt = int(eui, 16) ^ fcnt
    stamp = format_rfc3339_ns(time_ns)
    rx_metadata = []
    for n, (gateway_id, rssi, snr) in enumerate(gateways):
        rx: dict[str, Any] = {
            "gateway_ids": {"gateway_id": gateway_id, "eui": f"{(salt + n) & (2**64 - 1):016X}"},
            "time": format_rfc3339_ns(time_ns - 40_000_000 + n * 1_000),
            "timestamp": (time_ns // 1_000 + n) & _U32,
            "rssi": _go_float(rssi),
            "channel_rssi": _go_float(rssi),
            "snr": _go_float(snr),
            "location": {"latitude": round(52.3731 + n * 0.004, 6), "longitude": round(4.8922 + n * 0.006, 6),
                         "altitude": 4 + n, "source": "SOURCE_REGISTRY"},
            "uplink_token": base64.b64encode(f"{gateway_id}:{time_ns}:{n}".encode()).decode(),
            "channel_index": (fcnt + n) % 8,
            "received_at": format_rfc3339_ns(time_ns - 35_000_000 + n * 2_000_000),
        }
        rx_metadata.append({k: v for k, v in rx.items() if v != 0})
    uplink = {
        "session_key_id": base64.b64encode(salt.to_bytes(16, "big", signed=False)[-16:]).decode(),
        "f_port": fport,
        "f_cnt": fcnt,
        "frm_payload": base64.b64encode(payload).decode(),
        "rx_metadata": rx_metadata,
        "settings": {
            "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": spreading_factor,
                                   "coding_rate": "4/5"}},
            "frequency": str(frequency_hz),
            "timestamp": (time_ns // 1_000) & _U32,
            "time": format_rfc3339_ns(time_ns - 40_000_000),
        },
        "received_at": stamp,
        "consumed_airtime": "0.061696s",
        "network_ids": {"net_id": "000013", "ns_id": "EC656E0000000181", "tenant_id": tenant,
                        "cluster_id": "eu1", "cluster_address": "eu1.cloud.thethings.network"},
    }
    message = {
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": application_id},
            "dev_eui": eui,
            "join_eui": "0000000000000000",
            "dev_addr": f"{int(eui, 16) & 0x01FF_FFFF | 0x2600_0000:08X}",
        },
        "correlation_ids": [f"as:up:{_ulid(time_ns, salt)}", f"gs:conn:{_ulid(time_ns - 10**12, 7)}",
                            f"gs:up:host:{_ulid(time_ns, salt + 1)}", f"gs:uplink:{_ulid(time_ns, salt + 2)}",
                            f"ns:uplink:{_ulid(time_ns, salt + 3)}",
                            f"rpc:/ttn.lorawan.v3.GsNs/HandleUplink:{_ulid(time_ns, salt + 4)}"],
        "received_at": format_rfc3339_ns(time_ns + 12_000_000),
        "uplink_message": {k: v for k, v in uplink.items() if v not in (0, "", None)},
    }
    return f"v3/{application_id}@{tenant}/devices/{device_id}/up", orjson.dumps(message)
