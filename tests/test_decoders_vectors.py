"""Every vendor example vector decodes to the canonical fields it pins (tests/data/decoder_vectors.jsonl)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from decoders import DecodeError, all_models, canonical_only, get_model
from decoders.fields import canonical_type

VECTORS = [json.loads(line) for line in (Path(__file__).parent / "data" / "decoder_vectors.jsonl").open()]
IDS = [f"{v['model']}-{v['fport']}-{v['hex']}" for v in VECTORS]


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_vendor_example_decodes_to_its_canonical_fields(vec: dict) -> None:
    info = get_model(vec["model"])
    assert info.kind == vec["kind"]
    payload = bytes.fromhex(vec["hex"])
    if "error" in vec:
        # The vendor example contradicts the published layout (see the vector's note): rejected.
        with pytest.raises(DecodeError, match=re.escape(vec["error"])):
            info.codec.decode(payload, vec["fport"])
        return
    decoded = info.codec.decode(payload, vec["fport"])
    assert canonical_only(decoded.fields) == vec["canonical"]
    for name, value in vec.get("vendor_fields", {}).items():
        assert decoded.fields[name] == value, name


@pytest.mark.parametrize("vec", [v for v in VECTORS if "error" not in v],
                         ids=[i for i, v in zip(IDS, VECTORS, strict=True) if "error" not in v])
def test_decoded_fields_have_their_one_type(vec: dict) -> None:
    info = get_model(vec["model"])
    decoded = info.codec.decode(bytes.fromhex(vec["hex"]), vec["fport"])
    for name, value in decoded.fields.items():
        expected = canonical_type(name) or info.codec.field_types[name]
        assert type(value) is expected, f"{name}={value!r} should be {expected.__name__}"
        if canonical_type(name) is None:
            assert name.startswith(f"{info.vendor}_"), f"vendor field {name} lacks the {info.vendor}_ prefix"


def test_every_vector_names_its_source_and_every_model_has_examples() -> None:
    assert all(v["source"].strip() for v in VECTORS)
    with_examples = {v["model"] for v in VECTORS if "error" not in v}
    # a defined model carries its example in its definition file, checked when it loads
    missing = [m.model for m in all_models() if m.model not in with_examples and m.source != "defined"]
    assert missing == []


def test_every_rejected_vendor_example_explains_the_discrepancy() -> None:
    rejected = [v for v in VECTORS if "error" in v]
    assert rejected and all(v.get("note") or "unknown FPort" in str(v["vendor_output"]) for v in rejected)


def test_noise_and_bin_fill_examples_come_from_the_vendor_files() -> None:
    kinds = {v["kind"] for v in VECTORS if "error" not in v and v["canonical"]}
    assert {"noise", "bin_fill", "water_level", "dust", "parking"} <= kinds
