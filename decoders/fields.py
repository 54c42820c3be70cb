"""Canonical field names and their one type (from core.schema), vendor-field and health helpers."""

from __future__ import annotations

from collections.abc import Mapping

from core.schema import CANONICAL_TYPES, HEALTH_FIELDS, FieldType
from decoders.codec import FieldValue

PYTHON_TYPES: Mapping[FieldType, type] = {
    FieldType.FLOAT: float, FieldType.INTEGER: int, FieldType.BOOLEAN: bool, FieldType.STRING: str,
}

PAYLOAD_HEALTH_FIELDS: frozenset[str] = frozenset({"battery_pct", "battery_v", "temperature_c", "humidity_pct"})
"""Health fields a payload can carry; rssi/snr/fcnt come from the radio metadata instead."""


def canonical_type(name: str) -> type | None:
    """Python type of a canonical field (float, int or bool), None for a vendor field."""
    t = CANONICAL_TYPES.get(name)
    return PYTHON_TYPES[t] if t is not None else None


def is_canonical(name: str) -> bool:
    return name in CANONICAL_TYPES


def is_alarm(name: str) -> bool:
    """A vendor alarm flag: `<vendor>_<what>_alarm`, always a boolean."""
    return name not in CANONICAL_TYPES and name.endswith("_alarm")


def canonical_only(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """The fields with canonical names (what the example vectors pin)."""
    return {k: v for k, v in fields.items() if k in CANONICAL_TYPES}


def health_fields(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    """What goes to `device_health`: battery, temperature, humidity and vendor alarm flags."""
    return {k: v for k, v in fields.items() if k in HEALTH_FIELDS or is_alarm(k)}
