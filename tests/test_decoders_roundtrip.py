"""Property tests: decode(encode(x)) == x on every native codec's grid; no input makes a codec crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decoders import Decoded, DecodeError, ModelInfo, all_models, get_model
from decoders.fields import canonical_type

ENCODABLE = [m for m in all_models() if m.can_encode]
EVERY = all_models()
VECTORS = [json.loads(line) for line in (Path(__file__).parent / "data" / "decoder_vectors.jsonl").open()]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def grid_fields(info: ModelInfo) -> st.SearchStrategy[dict]:
    """Fields drawn from the model's ranges, typed as the schema wants."""
    parts = {}
    for name, r in info.ranges.items():
        typ = canonical_type(name) or info.codec.field_types[name]
        values = st.integers(0, r.count - 1).map(r.value)
        parts[name] = values.map(bool) if typ is bool else values.map(int) if typ is int else values
    return st.fixed_dictionaries(parts)


def assert_well_formed(info: ModelInfo, decoded: Decoded) -> None:
    assert isinstance(decoded, Decoded)
    assert all(isinstance(w, str) for w in decoded.warnings)
    for name, value in decoded.fields.items():
        expected = canonical_type(name) or info.codec.field_types[name]
        assert type(value) is expected, f"{info.model}: {name}={value!r} should be {expected.__name__}"


@pytest.mark.parametrize("info", ENCODABLE, ids=[m.model for m in ENCODABLE])
def test_decode_inverts_encode_on_the_grid(info: ModelInfo) -> None:
    @FAST
    @given(grid_fields(info))
    def check(fields: dict) -> None:
        payload, port = info.codec.encode(fields)
        decoded = info.codec.decode(payload, port)
        assert {k: decoded.fields.get(k) for k in fields} == fields
        assert all(type(decoded.fields[k]) is type(v) for k, v in fields.items())
        extra = set(decoded.fields) - set(fields)
        assert all(canonical_type(k) is None for k in extra), f"unexpected canonical fields {extra}"
        assert decoded.warnings == []

    check()


@pytest.mark.parametrize("info", ENCODABLE, ids=[m.model for m in ENCODABLE])
def test_range_ends_round_trip(info: ModelInfo) -> None:
    for pick in (lambda r: r.lo, lambda r: r.hi):
        fields = {}
        for name, r in info.ranges.items():
            typ = canonical_type(name) or info.codec.field_types[name]
            value = r.value(0 if pick(r) == r.lo else r.count - 1)
            fields[name] = bool(value) if typ is bool else int(value) if typ is int else value
        decoded = info.codec.decode(*info.codec.encode(fields))
        assert {k: decoded.fields.get(k) for k in fields} == fields


@pytest.mark.parametrize("info", EVERY, ids=[m.model for m in EVERY])
def test_arbitrary_bytes_decode_or_raise_decode_error(info: ModelInfo) -> None:
    ports = st.sampled_from(sorted({1, 2, 3, 5, 6, 10, 85, getattr(info.codec, "port", 1)})) | st.integers(0, 255)

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=40), ports)
    def check(payload: bytes, port: int) -> None:
        try:
            decoded = info.codec.decode(payload, port)
        except DecodeError as exc:
            assert str(exc)
            return
        assert_well_formed(info, decoded)

    check()


@pytest.mark.parametrize("vec", VECTORS, ids=[f"{v['model']}-{v['fport']}-{v['hex']}" for v in VECTORS])
def test_every_truncation_of_an_example_decodes_or_raises_decode_error(vec: dict) -> None:
    info = get_model(vec["model"])
    payload = bytes.fromhex(vec["hex"])
    for cut in range(len(payload)):
        try:
            decoded = info.codec.decode(payload[:cut], vec["fport"])
        except DecodeError:
            continue
        assert_well_formed(info, decoded)


@pytest.mark.parametrize("info", ENCODABLE, ids=[m.model for m in ENCODABLE])
def test_encode_rejects_fields_the_payload_cannot_carry(info: ModelInfo) -> None:
    from decoders import EncodeError

    sample = {name: (False if (canonical_type(name) or info.codec.field_types[name]) is bool else r.lo)
              for name, r in info.ranges.items()}
    with pytest.raises(EncodeError, match="no_such_field"):
        info.codec.encode({**sample, "no_such_field": 1.0})
