"""Named units a model definition may give a source field in, and their conversion to canonical units.

Each unit is (dimension, factor, offset) against its dimension's base: base = value * factor + offset.
A canonical field's unit comes from `core.schema`; `conversion(src, field_unit)` is the
(scale, offset) that turns a source value into it, so `cm` → `distance_mm` is (10, 0) and
`°F` → `temperature_c` is (5/9, -160/9).
"""

from __future__ import annotations

from core.schema import HEALTH_SPECS, MEASUREMENTS

_UNITS: dict[str, tuple[str, float, float]] = {
    "mm": ("length", 0.001, 0.0), "cm": ("length", 0.01, 0.0), "m": ("length", 1.0, 0.0),
    "V": ("voltage", 1.0, 0.0), "mV": ("voltage", 0.001, 0.0),
    "%": ("ratio", 1.0, 0.0), "‰": ("ratio", 0.1, 0.0),
    "°C": ("temperature", 1.0, 273.15), "K": ("temperature", 1.0, 0.0),
    "°F": ("temperature", 5 / 9, 273.15 - 32 * 5 / 9),
    "dB(A)": ("sound_a", 1.0, 0.0), "dB(C)": ("sound_c", 1.0, 0.0),
    "dBm": ("power", 1.0, 0.0), "dB": ("ratio_db", 1.0, 0.0),
    "µg/m³": ("mass_conc", 1.0, 0.0), "mg/m³": ("mass_conc", 1000.0, 0.0),
    "°": ("angle", 1.0, 0.0), "rad": ("angle", 57.29577951308232, 0.0),
}
_ALIASES = {"degC": "°C", "C": "°C", "℃": "°C", "degF": "°F", "F": "°F", "dBA": "dB(A)", "dBC": "dB(C)",
            "ug/m3": "µg/m³", "μg/m³": "µg/m³", "ug/m³": "µg/m³", "mg/m3": "mg/m³", "deg": "°",
            "percent": "%", "v": "V", "mv": "mV"}

CANONICAL_UNITS: dict[str, str] = {
    spec.name: spec.unit for m in MEASUREMENTS.values() for spec in m.fields if spec.unit
} | {spec.name: spec.unit for spec in HEALTH_SPECS if spec.unit}
"""Canonical field → its unit as `core.schema` states it (fields without a unit are absent)."""


def known_units() -> list[str]:
    """Every named unit a definition may use (aliases such as `degC`, `ug/m3` are accepted too)."""
    return sorted(_UNITS)


def conversion(unit: str, field: str) -> tuple[float, float]:
    """(scale, offset) from `unit` to `field`'s canonical unit; ValueError says why not."""
    src = _UNITS.get(_ALIASES.get(unit, unit))
    if src is None:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(known_units())}")
    target_unit = CANONICAL_UNITS.get(field)
    if target_unit is None:
        raise ValueError(f"field {field!r} has no canonical unit to convert {unit!r} to; use scale/offset")
    dst = _UNITS[target_unit]
    if src[0] != dst[0]:
        raise ValueError(f"unit {unit!r} cannot be converted to {field}'s unit {target_unit!r}")
    scale = src[1] / dst[1]
    return scale, (src[2] - dst[2]) / dst[1]
