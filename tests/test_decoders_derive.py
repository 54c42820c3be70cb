"""Kind-level derivations: road water depth and bin fill level, with their edge cases."""

from __future__ import annotations

import pytest

from decoders import derive, get_model

WATER = get_model("milesight-em500-udl")  # rated 250–10000 mm, dead zone 250 mm
BIN = get_model("milesight-em310-udl")  # rated 250–4500 mm, dead zone 250 mm
UNDER_BIN = get_model("dragino-ldds20")  # mounted under the container: distance is the fill height


def water(distance: float, **install: float):
    return derive("water_level", {"distance_mm": distance, "battery_pct": 90.0}, install, WATER)


def fill(distance: float, model=BIN, **install: float):
    return derive("bin_fill", {"distance_mm": distance}, install, model)


def test_depth_is_mount_height_minus_distance() -> None:
    out = water(1850.0, mount_height_mm=2000.0)
    assert out.fields == {"distance_mm": 1850.0, "battery_pct": 90.0, "depth_mm": 150.0}
    assert out.warnings == []


@pytest.mark.parametrize("distance", [2000.0, 2400.0])
def test_distance_at_or_beyond_the_mount_height_is_a_dry_road(distance: float) -> None:
    out = water(distance, mount_height_mm=2000.0)
    assert out.fields["depth_mm"] == 0.0
    assert out.warnings == []


def test_distance_beyond_the_sensor_range_is_flagged_not_stored() -> None:
    out = water(12_000.0, mount_height_mm=15_000.0)
    assert "depth_mm" not in out.fields
    assert out.warnings == ["distance 12000 mm is outside the sensor's range 250–10000 mm: depth not stored"]


def test_distance_inside_the_dead_zone_is_flagged_not_stored() -> None:
    out = water(120.0, mount_height_mm=2000.0)
    assert "depth_mm" not in out.fields
    assert "dead zone (250 mm)" in out.warnings[0]


def test_install_dead_zone_overrides_the_model() -> None:
    out = water(300.0, mount_height_mm=2000.0, dead_zone_mm=400.0)
    assert "depth_mm" not in out.fields
    assert "dead zone (400 mm)" in out.warnings[0]


def test_missing_mount_height_is_a_warning() -> None:
    out = water(1850.0)
    assert "depth_mm" not in out.fields
    assert out.warnings == ["mount_height_mm is not set for this device (got None): depth not derived"]


def test_gauge_depth_passes_through_and_needs_no_mount_height() -> None:
    gauge = get_model("decentlab-dl-pr26")
    assert gauge.install_params == ()
    out = derive("water_level", {"depth_mm": 270.0}, {}, gauge)
    assert (out.fields, out.warnings) == ({"depth_mm": 270.0}, [])
    over = derive("water_level", {"depth_mm": 12_000.0}, {}, gauge)
    assert "depth_mm" not in over.fields
    assert "outside the gauge's range" in over.warnings[0]


@pytest.mark.parametrize(("distance", "expected"), [
    (1200.0, 0.0), (900.0, 25.0), (300.0, 75.0), (250.0, 79.17), (1500.0, 0.0)])
def test_fill_is_the_share_of_the_bin_depth_above_the_contents(distance: float, expected: float) -> None:
    out = fill(distance, bin_depth_mm=1200.0)
    assert out.fields["fill_pct"] == expected
    assert out.warnings == []


def test_distance_inside_the_dead_zone_means_full_and_unreliable() -> None:
    out = fill(100.0, bin_depth_mm=1200.0)
    assert out.fields["fill_pct"] == 100.0
    assert "reported as full" in out.warnings[0]


def test_distance_beyond_the_sensor_range_leaves_fill_out() -> None:
    out = fill(5000.0, bin_depth_mm=6000.0)
    assert "fill_pct" not in out.fields
    assert "beyond the sensor's range" in out.warnings[0]


def test_tilted_bin_sensor_adds_a_warning() -> None:
    out = derive("bin_fill", {"distance_mm": 900.0, "tilted": True}, {"bin_depth_mm": 1200.0}, BIN)
    assert out.fields["fill_pct"] == 25.0
    assert out.warnings == ["sensor is tilted: the fill level may be wrong"]


def test_sensor_under_the_bin_measures_fill_height() -> None:
    assert fill(900.0, UNDER_BIN, bin_depth_mm=1200.0).fields["fill_pct"] == 75.0
    assert fill(1500.0, UNDER_BIN, bin_depth_mm=1200.0).fields["fill_pct"] == 100.0
    low = fill(10.0, UNDER_BIN, bin_depth_mm=1200.0)
    assert low.fields["fill_pct"] == 0.0
    assert "reported as empty" in low.warnings[0]


@pytest.mark.parametrize("bad", [0.0, -5.0])
def test_nonsense_bin_depth_is_a_warning(bad: float) -> None:
    out = fill(900.0, bin_depth_mm=bad)
    assert "fill_pct" not in out.fields
    assert out.warnings[0].startswith("bin_depth_mm is not set")


def test_other_kinds_pass_through_and_input_is_not_changed() -> None:
    fields = {"laeq_db": 55.0}
    out = derive("noise", fields, {}, get_model("milesight-ws302"))
    assert out.fields == fields and out.fields is not fields
    with pytest.raises(ValueError, match="unknown kind 'weather'"):
        derive("weather", fields, {}, get_model("milesight-ws302"))
