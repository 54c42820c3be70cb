"""Kind-level derivations, pure: road water depth from distance, bin fill % from distance.

Water level: depth_mm = mount_height_mm − distance_mm, never negative (a distance beyond the
mount height is a dry road, 0). A distance inside the sensor's dead zone or outside its rated
span (the model's `ranges`) is unreliable: it is flagged and no depth is stored; the same goes
for a directly measured depth outside the gauge's span.

Bin fill: fill_pct = (bin_depth_mm − distance_mm) / bin_depth_mm × 100, clamped to 0–100.
A distance inside the dead zone means the contents reach the sensor, which cannot see them:
it is stored as 100 % (full, so collection is triggered) with a warning that the reading is
unreliable. A sensor under the container (`mounting="bottom"`) measures the fill height
itself: fill_pct = distance_mm / bin_depth_mm × 100, and a reading below its dead zone is 0 %.

Install parameters: `mount_height_mm` (water), `bin_depth_mm` (bins), optional `dead_zone_mm`
overriding the model's.
"""

from __future__ import annotations

from collections.abc import Mapping

from decoders.codec import Decoded, FieldValue
from decoders.model_info import KINDS, ModelInfo


def derive(kind: str, fields: Mapping[str, FieldValue], install: Mapping[str, float], model: ModelInfo) -> Decoded:
    """`fields` plus the kind's derived fields, and warnings for readings that could not be used."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    out = dict(fields)
    warnings: list[str] = []
    if kind == "water_level":
        _water_depth(out, install, model, warnings)
    elif kind == "bin_fill":
        _bin_fill(out, install, model, warnings)
    return Decoded(out, warnings)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _param(install: Mapping[str, float], name: str, warnings: list[str], what: str) -> float | None:
    value = _number(install.get(name))
    if value is None or value <= 0:
        warnings.append(f"{name} is not set for this device (got {install.get(name)!r}): {what} not derived")
        return None
    return value


def _dead_zone(install: Mapping[str, float], model: ModelInfo) -> float:
    value = _number(install.get("dead_zone_mm"))
    return model.dead_zone_mm if value is None or value < 0 else value


def _water_depth(out: dict[str, FieldValue], install: Mapping[str, float], model: ModelInfo,
                 warnings: list[str]) -> None:
    measured = _number(out.get("depth_mm"))
    if measured is not None:
        span = model.ranges.get("depth_mm")
        if span is not None and not span.lo <= measured <= span.hi:
            del out["depth_mm"]
            warnings.append(f"depth {measured:g} mm is outside the gauge's range {span.lo:g}–{span.hi:g} mm: "
                            "not stored")
        return
    distance = _number(out.get("distance_mm"))
    if distance is None:
        return
    mount = _param(install, "mount_height_mm", warnings, "depth")
    if mount is None:
        return
    dead = _dead_zone(install, model)
    if distance < dead:
        warnings.append(f"distance {distance:g} mm is inside the sensor's dead zone ({dead:g} mm): unreliable, "
                        "depth not stored (water may be up at the sensor: check on site)")
        return
    span = model.ranges.get("distance_mm")
    if span is not None and not span.lo <= distance <= span.hi:
        warnings.append(f"distance {distance:g} mm is outside the sensor's range {span.lo:g}–{span.hi:g} mm: "
                        "depth not stored")
        return
    out["depth_mm"] = max(0.0, mount - distance)


def _bin_fill(out: dict[str, FieldValue], install: Mapping[str, float], model: ModelInfo,
              warnings: list[str]) -> None:
    distance = _number(out.get("distance_mm"))
    if distance is None:
        return
    depth = _param(install, "bin_depth_mm", warnings, "fill level")
    if depth is None:
        return
    dead = _dead_zone(install, model)
    span = model.ranges.get("distance_mm")
    if span is not None and distance > span.hi:
        warnings.append(f"distance {distance:g} mm is beyond the sensor's range ({span.hi:g} mm): fill not stored")
        return
    if model.mounting == "bottom":
        if distance < dead:
            fill = 0.0
            warnings.append(f"fill height {distance:g} mm is below the sensor's minimum ({dead:g} mm): "
                            "reported as empty")
        else:
            fill = distance / depth * 100
    elif distance < dead:
        fill = 100.0
        warnings.append(f"distance {distance:g} mm is inside the sensor's dead zone ({dead:g} mm): contents at the "
                        "sensor, reported as full (reading unreliable)")
    else:
        fill = (depth - distance) / depth * 100
    out["fill_pct"] = round(min(100.0, max(0.0, fill)), 2)
    if out.get("tilted") is True:
        warnings.append("sensor is tilted: the fill level may be wrong")
