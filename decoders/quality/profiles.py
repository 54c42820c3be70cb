"""How each kind (and model) is judged: rated ranges, spike rate, stuck time, fields that cannot be zero.

Defaults come from the vendors' rated spans in the models (`ModelInfo.ranges`) and the physics
of each kind (`KIND_DEFAULTS`); `[quality.kinds.<kind>]` and `[quality.models."<model>"]` in
config.toml override them (a model's settings win over its kind's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from core.kinds import KINDS
from decoders.fields import canonical_type
from decoders.model_info import ModelInfo

HEALTH = frozenset({"battery_pct", "battery_v", "temperature_c", "humidity_pct", "rssi_dbm", "snr_db"})
"""Device-health fields are not the measurement: they are not range-checked here."""


@dataclass(frozen=True, slots=True)
class Profile:
    """The checks for one model of one kind.

    `field`: the value spike and stuck watch. `max_rate_per_min` / `min_jump`: a change of at
    least `min_jump` faster than the rate is a spike (None: no spike check). `stuck_after_s`:
    the same value for longer is stuck (None: no stuck check). `zero_fields`: exactly 0 is not
    physical. `limits`: (field, lo, hi) rated spans, the model's narrowed by the kind's physics.
    """

    field: str
    max_rate_per_min: float | None = None
    min_jump: float = 0.0
    stuck_after_s: float | None = None
    zero_fields: tuple[str, ...] = ()
    limits: tuple[tuple[str, float, float], ...] = ()
    mounting: str = "top"


KIND_DEFAULTS: dict[str, Profile] = {
    # An ultrasonic echo off a leaf or a bird: 20 mm → 2,400 mm → 20 mm within one interval.
    # Road water rises at most tens of mm a minute even in a cloudburst (GB 51222 design storms);
    # 100 mm/min and a 300 mm jump leave real flash floods alone. A dry road reads the same
    # depth for weeks, so no stuck check.
    "water_level": Profile(KINDS["water_level"].primary_field, max_rate_per_min=100.0, min_jump=300.0,
                           limits=(("depth_mm", 0.0, 20_000.0),)),
    # LAeq over minutes never repeats to the 0.1 dB for an hour in a street; traffic makes
    # real 30 dB jumps, so no spike check. 0 dB(A) is below any street's floor.
    "noise": Profile(KINDS["noise"].primary_field, stuck_after_s=3600.0, zero_fields=("laeq_db",),
                     limits=(("laeq_db", 20.0, 140.0), ("lmax_db", 20.0, 150.0), ("lmin_db", 20.0, 140.0))),
    # City air always carries some particulates: 0 µg/m³ is a dead optical cell, not clean air.
    "dust": Profile(KINDS["dust"].primary_field, stuck_after_s=6 * 3600.0, zero_fields=("pm2_5_ugm3", "pm10_ugm3"),
                    limits=(("pm1_0_ugm3", 0.0, 2000.0), ("pm2_5_ugm3", 0.0, 2000.0),
                            ("pm10_ugm3", 0.0, 2000.0), ("tsp_ugm3", 0.0, 5000.0))),
    # Emptying is instant and a dumped bag is too: no spike check. A bin out of use sits still for days.
    "bin_fill": Profile(KINDS["bin_fill"].primary_field, stuck_after_s=72 * 3600.0, limits=(("fill_pct", 0.0, 100.0),)),
    # A bay can stay empty or taken for days.
    "parking": Profile(KINDS["parking"].primary_field),
}

_SETTINGS = ("field", "max_rate_per_min", "min_jump", "stuck_after_s", "zero_fields")


def build_profile(model: ModelInfo, kind: str, overrides: Mapping[str, object] | None = None) -> Profile:
    """The kind's defaults, with the model's rated spans and the configured `overrides` applied.

    `overrides` keys: field, max_rate_per_min, min_jump, stuck_after_s (0 switches the check
    off), zero_fields. `ValueError` for any other key.
    """
    base = KIND_DEFAULTS.get(kind, Profile(""))
    limits = {name: (lo, hi) for name, lo, hi in base.limits}
    for name, r in model.ranges.items():
        if name in HEALTH or canonical_type(name) is bool or name.startswith("_"):
            continue
        lo, hi = limits.get(name, (r.lo, r.hi))
        limits[name] = (max(lo, r.lo), min(hi, r.hi))
    profile = replace(base, limits=tuple((n, lo, hi) for n, (lo, hi) in sorted(limits.items())),
                      mounting=model.mounting)
    if overrides:
        unknown = sorted(set(overrides) - set(_SETTINGS))
        if unknown:
            raise ValueError(f"unknown quality setting {unknown[0]!r}; expected one of {', '.join(_SETTINGS)}")
        values = dict(overrides)
        if values.get("stuck_after_s") == 0:
            values["stuck_after_s"] = None
        if values.get("max_rate_per_min") == 0:
            values["max_rate_per_min"] = None
        if "zero_fields" in values:
            values["zero_fields"] = tuple(values["zero_fields"])  # type: ignore[arg-type]
        profile = replace(profile, **values)  # type: ignore[arg-type]
    return profile
