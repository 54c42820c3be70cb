"""The InfluxDB schema: measurements, tag keys, and the one fixed type of every canonical field.

Coercion here is what guarantees that InfluxDB never rejects one of our points for a field
type conflict: a canonical field always has its schema type, a vendor field is float if
numeric, boolean if bool, string if str. docs/schema.md is the human-readable copy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class FieldType(StrEnum):
    """InfluxDB field types, named as `SHOW FIELD KEYS` and its error messages name them."""

    FLOAT = "float"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    unit: str
    description: str


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    description: str
    fields: tuple[FieldSpec, ...]
    tags: tuple[str, ...]


F, INT, B, S = FieldType.FLOAT, FieldType.INTEGER, FieldType.BOOLEAN, FieldType.STRING

TAG_KEYS: tuple[str, ...] = ("device_id", "model", "district", "zone_class", "site")
"""Reading tags, bounded cardinality; `site` only where set. Everything else is a field."""

ALERT_TAG_KEYS: tuple[str, ...] = ("rule_id", "device_id", "severity", "to_state", "district", "kind")
"""Tags of `alerts` points, as `alerts.points.transition_point` writes them."""

HEALTH_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("battery_pct", F, "%", "battery level, 0–100"),
    FieldSpec("battery_v", F, "V", "battery voltage"),
    FieldSpec("temperature_c", F, "°C", "device or ambient temperature"),
    FieldSpec("humidity_pct", F, "%", "relative humidity"),
    FieldSpec("rssi_dbm", F, "dBm", "received signal strength of the uplink"),
    FieldSpec("snr_db", F, "dB", "signal-to-noise ratio of the uplink"),
    FieldSpec("fcnt", INT, "", "frame counter of the uplink"),
    FieldSpec("fcnt_gap", INT, "", "frames missing since the previous uplink"),
    FieldSpec("time_source", S, "", "which time the reading got (e.g. time, rxInfo.nsTime, device_time, "
                                    "received): see the time policy"),
    FieldSpec("reachable", B, "",
              "polled device answered (false: timeout or Modbus exception); written on each change"),
    FieldSpec("received", B, "", "always true, on every stored reading: the device was heard (the dashboards' "
                                 "online count; NB-IoT and Modbus devices report no RSSI)"),
)
HEALTH_FIELDS: frozenset[str] = frozenset(s.name for s in HEALTH_SPECS)

QUALITY_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("quality", S, "", "judgement of the reading: good, suspect or bad (decoders/quality)"),
    FieldSpec("quality_check", S, "", "the failed checks, worst first, comma-separated (absent when good)"),
    FieldSpec("online_slot", INT, "", "1 for the device's first report in an expected-interval slot, else 0"),
)
"""Written on every reading of every kind by the quality judge (docs/schema.md, "Data quality")."""

MEASUREMENTS: dict[str, Measurement] = {m.name: m for m in (
    Measurement("noise", "sound level meters", (
        FieldSpec("laeq_db", F, "dB(A)", "A-weighted equivalent level over the device's interval"),
        FieldSpec("lmax_db", F, "dB(A)", "maximum level in the interval"),
        FieldSpec("lmin_db", F, "dB(A)", "minimum level in the interval"),
        FieldSpec("lcpeak_db", F, "dB(C)", "C-weighted peak level"),
        *QUALITY_SPECS,
    ), TAG_KEYS),
    Measurement("dust", "particulate matter monitors", (
        FieldSpec("pm1_0_ugm3", F, "µg/m³", "PM1.0 mass concentration"),
        FieldSpec("pm2_5_ugm3", F, "µg/m³", "PM2.5 mass concentration"),
        FieldSpec("pm10_ugm3", F, "µg/m³", "PM10 mass concentration"),
        FieldSpec("tsp_ugm3", F, "µg/m³", "total suspended particulates"),
        *QUALITY_SPECS,
    ), TAG_KEYS),
    Measurement("bin_fill", "waste bin fill-level sensors", (
        FieldSpec("distance_mm", F, "mm", "measured distance from the sensor to the contents"),
        FieldSpec("fill_pct", F, "%", "fill level 0–100, derived from distance and the bin's depth"),
        FieldSpec("tilt_deg", F, "°", "tilt angle of the lid or bin, where given"),
        FieldSpec("tilted", B, "", "tilt alarm, where given"),
        *QUALITY_SPECS,
    ), TAG_KEYS),
    Measurement("parking", "parking bay occupancy sensors", (
        FieldSpec("occupied", B, "", "a vehicle is in the bay"),
        FieldSpec("vehicle_count", INT, "", "vehicles counted by the device, where given"),
        *QUALITY_SPECS,
    ), TAG_KEYS),
    Measurement("water_level", "road waterlogging sensors", (
        FieldSpec("distance_mm", F, "mm", "distance from the sensor to the water surface (distance sensors)"),
        FieldSpec("depth_mm", F, "mm",
                  "water depth on the road: mount height − distance, or measured by pressure/radar"),
        *QUALITY_SPECS,
    ), TAG_KEYS),
    Measurement("device_health", "health of every device, whatever its kind", HEALTH_SPECS, TAG_KEYS),
    Measurement("alerts", "alert transitions from the rules engine", (
        FieldSpec("from_state", S, "", "state before the transition: inactive, pending, firing, resolved"),
        FieldSpec("summary", S, "", "one-line human summary"),
        FieldSpec("fingerprint", S, "", "stable id of the (rule, device) alert"),
        FieldSpec("value", F, "rule's unit", "the computed value the rule compared (when known)"),
        FieldSpec("threshold", F, "rule's unit", "what it was compared with (when known)"),
        FieldSpec("eta_s", F, "s", "predicted time to reach the target (trend rules)"),
    ), ALERT_TAG_KEYS),
)}

def _canonical_types() -> dict[str, FieldType]:
    types: dict[str, FieldType] = {}
    for m in MEASUREMENTS.values():
        if m.name == "alerts":
            continue
        for spec in m.fields:
            if types.setdefault(spec.name, spec.type) is not spec.type:
                raise AssertionError(f"field {spec.name} has two types in the schema")
    return types


CANONICAL_TYPES: dict[str, FieldType] = _canonical_types()
"""Reading field name → its one type, across all kinds (a name means the same thing everywhere)."""

ALERT_TYPES: dict[str, FieldType] = {s.name: s.type for s in MEASUREMENTS["alerts"].fields}

RESERVED_KEYS: frozenset[str] = frozenset({"time"})
"""InfluxDB refuses a field or tag named `time`."""

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_STRING_BYTES = 64 * 1024
"""InfluxDB 1.x limits a string field value to 64 KiB."""


@dataclass(frozen=True, slots=True)
class DroppedField:
    """A field left out of a point, and why; the point itself is still written."""

    measurement: str
    field: str
    value: str
    reason: str


class FieldRejected(ValueError):
    """A value that cannot become its field's type; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _to_float(value: object) -> float:
    if isinstance(value, bool):
        raise FieldRejected("boolean for a float field")
    if isinstance(value, numbers.Real):
        try:
            f = float(value)
        except OverflowError:
            raise FieldRejected("number too large for a float") from None
        if not math.isfinite(f):
            raise FieldRejected(f"{f} is not a finite number")
        return f
    raise FieldRejected(f"{type(value).__name__} for a float field")


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise FieldRejected("boolean for an integer field")
    if isinstance(value, numbers.Integral):
        i = int(value)
    elif isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f) or f != int(f):
            raise FieldRejected(f"{value!r} is not a whole number")
        i = int(f)
    else:
        raise FieldRejected(f"{type(value).__name__} for an integer field")
    if not INT64_MIN <= i <= INT64_MAX:
        raise FieldRejected("integer outside the 64-bit range")
    return i


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and int(value) in (0, 1):
        return bool(int(value))
    raise FieldRejected(f"{value!r} is not a boolean")


def _to_str(value: object) -> str:
    if not isinstance(value, str):
        raise FieldRejected(f"{type(value).__name__} for a string field")
    if len(value) * 4 > MAX_STRING_BYTES and len(value.encode("utf-8", "replace")) > MAX_STRING_BYTES:
        raise FieldRejected("string longer than 64 KiB")
    return value


_COERCE: dict[FieldType, Callable[[object], float | int | bool | str]] = {
    F: _to_float, INT: _to_int, B: _to_bool, S: _to_str}


_PYTHON_TYPES = {F: float, INT: int, B: bool, S: str}


def field_type(kind: str, name: str) -> type:
    """The Python type a field of measurement `kind` is written as: float, int, bool or str.

    Vendor (non-canonical) fields follow their value; for them this answers float, the
    type of every numeric vendor field.
    """
    types = ALERT_TYPES if kind == "alerts" else CANONICAL_TYPES
    return _PYTHON_TYPES[types.get(name, F)]


def field_type_of(name: str, value: object) -> FieldType:
    """The type `name` is written with: its schema type if canonical, else from the value's Python type."""
    canonical = CANONICAL_TYPES.get(name)
    if canonical is not None:
        return canonical
    if isinstance(value, bool):
        return B
    if isinstance(value, str):
        return S
    return F


def coerce_field(name: str, value: object, types: dict[str, FieldType] = CANONICAL_TYPES) -> float | int | bool | str:
    """`value` as its field's type, or `FieldRejected` (NaN/inf, wrong kind of value, out of range)."""
    if name in RESERVED_KEYS:
        raise FieldRejected(f"field name {name!r} is reserved by InfluxDB")
    want = types.get(name)
    if want is None:
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _to_str(value)
        if isinstance(value, numbers.Real):
            return _to_float(value)
        raise FieldRejected(f"{type(value).__name__} is not a number, boolean or string")
    return _COERCE[want](value)


def coerce_fields(measurement: str, fields: dict[str, object]) -> tuple[dict[str, float | int | bool | str],
                                                                         list[DroppedField]]:
    """All of `fields` coerced to their schema types, plus the ones that had to be dropped and why."""
    types = ALERT_TYPES if measurement == "alerts" else CANONICAL_TYPES
    kept: dict[str, float | int | bool | str] = {}
    dropped: list[DroppedField] = []
    for name, value in fields.items():
        try:
            kept[name] = coerce_field(name, value, types)
        except FieldRejected as exc:
            dropped.append(DroppedField(measurement, name, short_repr(value), exc.reason))
    return kept, dropped


def short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
