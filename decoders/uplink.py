"""`decode_uplink`: one uplink of one registered device to its `Reading` — the one chain from bytes to fields.

The pipeline, `urbansense device watch` and the simulators all use it, so what a technician
sees on site, what a simulator expects and what is stored are decoded the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.device import Device
from core.reading import FieldValue, Reading
from core.rejected import Rejected
from core.uplink import Uplink
from decoders.codec import DecodeError
from decoders.definition import MissingInput, decode_input
from decoders.derive import derive
from decoders.fields import health_fields
from decoders.model_info import ModelInfo
from decoders.registry import UnknownModel, get_model


@dataclass(slots=True)
class DecodedUplink:
    """The reading and the decoder's and derivation's non-fatal warnings (the reading is still stored).

    `model` and `raw` (the decoded fields before derivation) are what the quality judge needs;
    both are None for a health report without a payload. `history` holds the records the device
    stored and sent later (Milesight history, Dragino datalog) as (the record's Unix time in s as
    the device wrote it, derived canonical fields); the pipeline judges their times
    (`core.timepolicy`) and stores each as a history reading.
    """

    reading: Reading
    warnings: list[str] = field(default_factory=list)
    model: ModelInfo | None = None
    raw: Mapping[str, FieldValue] | None = None
    history: list[tuple[int, dict[str, FieldValue]]] = field(default_factory=list)


def decode_uplink(device: Device, uplink: Uplink, tags: tuple[tuple[str, str], ...] | None = None) -> DecodedUplink:
    """Model lookup, decode, kind derivation (`depth_mm`, `fill_pct`) and the health split.

    `fields` are canonical (docs/schema.md); `health` holds battery, temperature, humidity,
    vendor alarms, the radio metadata (RSSI dBm, SNR dB, fCnt) and `received = True` (the
    dashboards' "heard", which NB-IoT and Modbus need: they report no RSSI); the fCnt gap needs the
    device's history and is the caller's. A health report (`uplink.reachable` set, empty
    payload) is a reading with `health = {"reachable": ...}` only. `tags` default to
    `device.tags()` (the pipeline passes its cached tuple). Raises `Rejected`
    (`unknown_model`, `missing_input`, `decode_error`) when the uplink cannot become a reading.
    """
    tags = device.tags() if tags is None else tags
    if uplink.reachable is not None and not uplink.payload:
        return DecodedUplink(Reading(device.id, device.kind, uplink.time_ns, {}, tags,
                                     {"reachable": uplink.reachable}))
    try:
        model = get_model(device.model)
    except UnknownModel as exc:
        raise Rejected("unknown_model", str(exc), uplink.device_key) from None
    try:
        decoded = decode_input(model.codec, uplink.payload, uplink.port, uplink.decoded)
    except MissingInput as exc:
        raise Rejected("missing_input", str(exc), uplink.device_key) from None
    except DecodeError as exc:
        raise Rejected("decode_error", f"{device.model} port {uplink.port}: {exc}", uplink.device_key) from None
    derived = derive(device.kind, decoded.fields, device.install, model)
    fields = derived.fields
    health: dict[str, FieldValue] = health_fields(fields)
    health["received"] = True  # "heard", for every transport, RSSI or not (docs/schema.md)
    if uplink.rssi_dbm is not None:
        health["rssi_dbm"] = uplink.rssi_dbm
    if uplink.snr_db is not None:
        health["snr_db"] = uplink.snr_db
    if uplink.fcnt is not None:
        health["fcnt"] = uplink.fcnt
    warnings = decoded.warnings + derived.warnings if derived.warnings else decoded.warnings
    history = [(rec.time_s, derive(device.kind, rec.fields, device.install, model).fields) for rec in decoded.history]
    return DecodedUplink(Reading(device.id, device.kind, uplink.time_ns, fields, tags, health), warnings, model,
                         decoded.fields, history)
