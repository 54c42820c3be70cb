"""JavaScript codecs: TS013 in/out, field mapping, and runaway codecs stopped by the per-call limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from decoders import DecodeError, EncodeUnsupported, get_model
from decoders.engines.js import ENGINES, JsCodec, JsField
from decoders.registry import load_js_model

ENGINE_NAMES = sorted(ENGINES)
# engine="auto" picks QuickJS for scripts without regular expressions, V8 for the others.

NASTY = r"""
var kept = [];
function decodeUplink(input) {
  var b = input.bytes;
  switch (input.fPort) {
    case 1: return { data: { level: { value: (b[0] << 8) | b[1], unit: "cm" }, ok: true, n: 3 },
                     warnings: ["from " + input.recvTime.getUTCFullYear()] };
    case 2: while (true) {}
    case 3: var a = []; while (true) { a.push(new Array(100000).fill(7)); }
    case 4: return decodeUplink({ bytes: b, fPort: 4, recvTime: input.recvTime });
    case 5: throw new Error("bad frame");
    case 6: return { errors: ["frame too short", "checksum"] };
    case 7: return 42;
    case 8: return { data: { level: { value: "n/a" }, ok: 1, n: 2.5 } };
    case 9: for (var i = 0; i < 50; i++) { kept.push(new Array(200000).fill(1)); } return { data: {} };
  }
  return { data: {} };
}
"""


def make_codec(tmp_path: Path, engine: str, source: str = NASTY, time_limit_s: float = 0.05,
               **limits: float) -> JsCodec:
    script = tmp_path / "nasty.js"
    script.write_text(source)
    mapping = {"level.value": JsField("distance_mm", scale=10.0), "ok": JsField("acme_ok", kind=bool),
               "n": JsField("vehicle_count", kind=int)}
    return JsCodec("acme-test", "parking", script, mapping, engine=engine, time_limit_s=time_limit_s,
                   memory_limit=16 << 20, **limits)


@pytest.fixture(params=ENGINE_NAMES)
def codec(request: pytest.FixtureRequest, tmp_path: Path) -> JsCodec:
    return make_codec(tmp_path, request.param)


def test_data_is_mapped_to_canonical_names_with_unit_scale(codec: JsCodec) -> None:
    decoded = codec.decode(b"\x00\x2a", 1)
    assert decoded.fields == {"distance_mm": 420.0, "acme_ok": True, "vehicle_count": 3}
    assert decoded.warnings[0].startswith("from 20")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(("port", "limit"), [(2, "time limit"), (3, "memory limit"), (4, "stack depth limit")])
def test_runaway_codec_is_stopped_and_the_next_uplink_decodes(tmp_path: Path, engine: str, port: int,
                                                              limit: str) -> None:
    # memory and stack runaways get a generous time limit, so a loaded machine cannot make time win the race
    codec = make_codec(tmp_path, engine, time_limit_s=0.05 if limit == "time limit" else 5.0)
    with pytest.raises(DecodeError, match=f"JS codec stopped, it exceeded .*{limit}"):
        codec.decode(b"\x00\x01", port)
    assert codec.decode(b"\x00\x01", 1).fields["distance_mm"] == 10.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_memory_kept_across_calls_hits_the_limit_and_recovers(tmp_path: Path, engine: str) -> None:
    # a generous time limit, so that on a loaded machine the memory limit is what stops it
    codec = make_codec(tmp_path, engine, time_limit_s=5.0)
    with pytest.raises(DecodeError, match="memory limit"):
        for _ in range(5):
            codec.decode(b"", 9)
    assert codec.decode(b"\x00\x02", 1).fields["distance_mm"] == 20.0


@pytest.mark.timeout(30)
def test_catastrophic_regex_goes_to_v8_and_is_stopped(tmp_path: Path) -> None:
    # QuickJS cannot interrupt its regex engine; "auto" sends regex-using scripts to V8.
    source = NASTY.replace("case 2: while (true) {}",
                           'case 2: return { data: { ok: /^(a+)+$/.test(new Array(40).join("a") + "!") } };')
    codec = make_codec(tmp_path, "auto", source)
    with pytest.raises(DecodeError, match="time limit"):
        codec.decode(b"", 2)
    assert codec.decode(b"\x00\x03", 1).fields["distance_mm"] == 30.0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_limits_hold_when_decoding_inside_an_asyncio_loop(tmp_path: Path, engine: str) -> None:
    codec = make_codec(tmp_path, engine)

    async def in_the_service_loop() -> dict:
        with pytest.raises(DecodeError, match="time limit"):
            codec.decode(b"", 2)
        return codec.decode(b"\x00\x04", 1).fields

    assert asyncio.run(in_the_service_loop())["distance_mm"] == 40.0


def test_thrown_errors_and_reported_errors_are_decode_errors(codec: JsCodec) -> None:
    with pytest.raises(DecodeError, match=r"JS codec threw: .*bad frame"):
        codec.decode(b"", 5)
    with pytest.raises(DecodeError, match="JS codec reported: frame too short; checksum"):
        codec.decode(b"", 6)
    with pytest.raises(DecodeError, match="returned 42, expected an object"):
        codec.decode(b"", 7)


def test_values_of_the_wrong_type_are_warnings(codec: JsCodec) -> None:
    decoded = codec.decode(b"", 8)
    assert decoded.fields == {}
    assert len(decoded.warnings) == 3
    assert any("vehicle_count: codec gave n=2.5, not a int" in w for w in decoded.warnings)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
@pytest.mark.parametrize(("source", "message"), [
    ("function decodeUplink(input) { return {data: {}; }", "script does not load"),
    ("function Decoder(bytes, port) { return {}; }", "does not define a function decodeUplink"),
])
def test_a_broken_script_fails_every_decode_clearly(tmp_path: Path, engine: str, source: str, message: str) -> None:
    codec = make_codec(tmp_path, engine, source)
    for _ in range(2):
        with pytest.raises(DecodeError, match=message):
            codec.decode(b"\x01", 1)


def test_js_models_cannot_encode() -> None:
    info = get_model("nwave-ncc405")
    assert (info.source, info.can_encode, info.ranges) == ("js", False, {})
    with pytest.raises(EncodeUnsupported, match="decodes only"):
        info.codec.encode({"vehicle_count": 3})


def test_a_js_model_is_a_js_file_plus_a_toml_mapping(tmp_path: Path) -> None:
    (tmp_path / "acme-counter.js").write_text(
        "function decodeUplink(i) { return {data: {count: i.bytes[0], mv: 3300}}; }")
    (tmp_path / "acme-counter.toml").write_text(
        'model = "acme-counter"\nkind = "parking"\nscript = "acme-counter.js"\n'
        '[fields]\ncount = { name = "vehicle_count", type = "int" }\nmv = { name = "battery_v", scale = 0.001 }\n')
    info = load_js_model(tmp_path / "acme-counter.toml")
    assert (info.model, info.kind, info.vendor, info.source) == ("acme-counter", "parking", "acme", "js")
    assert info.codec.decode(b"\x07", 1).fields == {"vehicle_count": 7, "battery_v": 3.3}


def test_a_js_model_description_with_a_bad_kind_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text('model = "x"\nkind = "weather"\nscript = "x.js"\n[fields]\n')
    with pytest.raises(ValueError, match="kind 'weather' is not one of"):
        load_js_model(tmp_path / "x.toml")
