"""The registry: lookup, close matches, coverage per kind, and every model's declarations hold."""

from __future__ import annotations

from collections import Counter

import pytest

from decoders import KINDS, FieldRange, ModelInfo, UnknownModel, all_models, get_model, health_fields
from decoders.fields import canonical_type

MODELS = all_models()


def test_lookup_ignores_case_and_spaces() -> None:
    assert get_model(" Milesight-EM500-UDL ").model == "milesight-em500-udl"


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(UnknownModel) as caught:
        get_model("milesight-em500-ud")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("unknown device model 'milesight-em500-ud'; did you mean milesight-em500-udl")
    assert caught.value.close_matches[0] == "milesight-em500-udl"


def test_unknown_model_without_close_match_lists_all() -> None:
    with pytest.raises(UnknownModel, match="known models: bosch-tps110, ctwing-nb-water-level, decentlab-dl-mbx"):
        get_model("zzz")


def test_enough_native_models_per_kind() -> None:
    native = Counter(m.kind for m in MODELS if m.source == "native")
    assert native["water_level"] >= 3 and native["bin_fill"] >= 3 and native["parking"] >= 3
    assert native["noise"] >= 2 and native["dust"] >= 2


@pytest.mark.parametrize("info", MODELS, ids=[m.model for m in MODELS])
def test_model_declarations_are_consistent(info: ModelInfo) -> None:
    assert info.kind in KINDS and info.codec.kind == info.kind and info.codec.model == info.model
    assert info.model.startswith(f"{info.vendor}-") and info.model == info.model.lower()
    assert info.reference and info.title
    assert set(info.ranges) <= set(info.fields)
    for name, typ in info.codec.field_types.items():
        canonical = canonical_type(name)
        assert canonical is None or typ is canonical, f"{name} is {typ.__name__}, schema says {canonical.__name__}"
        assert canonical is not None or name.startswith(f"{info.vendor}_"), f"{name} needs the {info.vendor}_ prefix"
    for name, r in info.ranges.items():
        assert isinstance(r, FieldRange)
        if (canonical_type(name) or info.codec.field_types[name]) is bool:
            assert (r.lo, r.hi, r.step) == (0, 1, 1)


@pytest.mark.parametrize("info", MODELS, ids=[m.model for m in MODELS])
def test_install_params_match_what_the_kind_derivation_needs(info: ModelInfo) -> None:
    if info.kind == "bin_fill":
        assert info.install_params == ("bin_depth_mm",)
        assert "distance_mm" in (info.ranges if info.can_encode else info.fields)
    elif info.kind == "water_level" and "distance_mm" in info.fields:
        assert info.install_params == ("mount_height_mm",) and info.dead_zone_mm > 0
    else:
        assert info.install_params == ()
    if info.kind == "water_level" and "depth_mm" in info.fields:
        assert "depth_mm" in info.ranges


def test_js_models_are_decode_only_and_native_ones_encode() -> None:
    for m in MODELS:
        assert m.can_encode is (m.source == "native")
        assert bool(m.ranges) is m.can_encode


def test_native_model_wins_over_a_js_model_with_the_same_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from decoders import registry

    native = get_model("milesight-em500-udl")
    shadow = replace(get_model("nwave-ncc405"), model=native.model)
    monkeypatch.setattr(registry, "js_models", lambda: (shadow,))
    registry._by_id.cache_clear()
    try:
        assert registry.get_model(native.model) is native
    finally:
        registry._by_id.cache_clear()


def test_sample_gives_typed_fields_on_the_grid() -> None:
    import random

    info = get_model("milesight-em310-udl")
    fields = info.sample(random.Random(4))
    assert set(fields) == set(info.ranges)
    assert type(fields["tilted"]) is bool and type(fields["distance_mm"]) is float
    assert info.codec.decode(*info.codec.encode(fields)).fields == fields


def test_health_fields_include_vendor_alarms() -> None:
    fields = {"distance_mm": 1601.0, "battery_pct": 80.0, "milesight_distance_alarm": True, "tilted": False}
    assert health_fields(fields) == {"battery_pct": 80.0, "milesight_distance_alarm": True}


def test_field_range_grid() -> None:
    r = FieldRange(2.5, 3.52, 0.004)
    assert (r.decimals, r.count, r.value(0), r.value(211), r.value(10_000)) == (3, 256, 2.5, 3.344, 3.52)
    assert r.snap(3.3451) == 3.344 and 3.0 in r and 4.0 not in r
    with pytest.raises(ValueError):
        FieldRange(1, 0, 1)
