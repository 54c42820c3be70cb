"""The quality checks, each a pure function of a value (and, for spike and stuck, a little history).

Each returns True when the reading fails the check. Names (`CHECKS`) are what the
`quality_check` field carries; `SEVERITY` says whether a failure makes a reading `bad`
(the value is wrong: rules ignore it) or `suspect` (it may be right: it is kept and used,
and a `quality` rule watches for devices whose data stays suspect).
"""

from __future__ import annotations

GOOD, SUSPECT, BAD = "good", "suspect", "bad"
QUALITIES = (GOOD, SUSPECT, BAD)

RANGE, SPIKE, STUCK, FLAT_ZERO, INSTALL = "range", "spike", "stuck", "flat_zero", "install"
CHECKS = (RANGE, SPIKE, STUCK, FLAT_ZERO, INSTALL)
SEVERITY = {RANGE: BAD, SPIKE: BAD, INSTALL: BAD, STUCK: SUSPECT, FLAT_ZERO: SUSPECT}
"""A value outside what the sensor or the physics allows is bad; a value that may be real is suspect."""

_NS_PER_MIN = 60_000_000_000


def out_of_range(value: float, lo: float, hi: float) -> bool:
    """Outside the rated span [lo, hi] (the vendor's, from the model, or the kind's physics)."""
    return not lo <= value <= hi


def is_spike(value: float, ref_value: float, ref_ns: int, time_ns: int, max_rate_per_min: float,
             min_jump: float) -> bool:
    """An implausible rate of change from the last accepted value: |Δ| ≥ `min_jump` and |Δ|/Δt > the rate.

    Δt is floored at one second so that two readings a moment apart cannot divide by ~0.
    """
    jump = abs(value - ref_value)
    if jump < min_jump:
        return False
    minutes = max(time_ns - ref_ns, 1_000_000_000) / _NS_PER_MIN
    return jump / minutes > max_rate_per_min


def is_stuck(run_start_ns: int, time_ns: int, stuck_after_s: float) -> bool:
    """The same value since `run_start_ns`, for longer than the kind allows."""
    return time_ns - run_start_ns > stuck_after_s * 1_000_000_000


def is_flat_zero(value: float) -> bool:
    """Exactly zero where the physics says it cannot be (PM2.5 in a city's air, a sound level)."""
    return value == 0


def install_violation(kind: str, fields: dict, install: dict, mounting: str = "top") -> str | None:
    """What the install parameters make impossible, as a sentence; None when the reading fits them.

    Water: a depth above the sensor's mount height (the gauge would be under water; its own
    configured height differs from the registry's). Bin: a top-mounted sensor seeing further
    than the bin is deep (+10 %), or a bottom-mounted one a fill height above the bin's depth.
    """
    if kind == "water_level":
        depth, mount = fields.get("depth_mm"), install.get("mount_height_mm")
        if _num(depth) and _num(mount) and mount > 0 and depth > mount:
            return f"depth {depth:g} mm above the mount height {mount:g} mm"
    elif kind == "bin_fill":
        distance, bin_depth = fields.get("distance_mm"), install.get("bin_depth_mm")
        if _num(distance) and _num(bin_depth) and bin_depth > 0:
            if mounting == "bottom" and distance > bin_depth:
                return f"fill height {distance:g} mm above the bin depth {bin_depth:g} mm"
            if mounting == "top" and distance > bin_depth * 1.1:
                return f"distance {distance:g} mm beyond the bin depth {bin_depth:g} mm"
    return None


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
