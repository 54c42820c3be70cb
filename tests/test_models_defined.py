"""Models without code: definition files, their checks, the envelopes that carry decoded objects."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path

import orjson
import pytest
from nbiotkit import imei
from typer.testing import CliRunner

from cli.app import app
from collectors.lorawan import parse
from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.lorawan.chirpstack_v3 import build_chirpstack_v3_uplink, parse_chirpstack_v3
from collectors.lorawan.tts import build_tts_uplink
from collectors.nbiot.platforms import parse_ctwing, parse_onenet_msg
from core.keys import DeviceKeyError, normalise_key
from core.uplink import EnvelopeError
from decoders import DecodeError, get_model
from decoders.definition import DefinitionError, MissingInput, decode_input, load_definition
from decoders.folders import ModelFolders
from decoders.registry import DEFINITIONS_DIR, defined_models

EUI = "a84041000181c4e2"
GW = "0016c001ff10a235"
T = 1_760_000_000_000_000_000
GOOD = """model = "acme-wl100"
kind = "water_level"
vendor = "acme"
reference = "acme WL100 manual, table 3"
install_params = ["mount_height_mm"]
dead_zone_mm = 200

[fields]
distance_mm = { path = "level.distance", unit = "cm", range = [0, 5000] }
battery_v = { path = "bat", scale = 0.001 }
acme_state = { path = "state", type = "str", values = { "0" = "ok", "1" = "blocked" } }

[example]
object = { level = { distance = 123.4 }, bat = 3600, state = 1 }
expect = { distance_mm = 1234.0, battery_v = 3.6, acme_state = "blocked" }
"""


def test_five_shipped_definitions_each_cite_a_source_and_decode_their_example() -> None:
    shipped = sorted(DEFINITIONS_DIR.glob("*.toml"))
    assert len(shipped) >= 5 and len(defined_models()) == len(shipped)
    for path in shipped:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        assert doc["reference"] and doc["example"]["expect"], path.name
        info = load_definition(path)  # loading runs the example against `expect`
        assert info.source == "defined" and info.origin == str(path)
    assert {m.kind for m in defined_models()} >= {"dust", "noise", "bin_fill", "water_level"}


def test_a_definition_maps_paths_units_types_and_ranges(tmp_path: Path) -> None:
    (tmp_path / "acme-wl100.toml").write_text(GOOD, encoding="utf-8")
    info = load_definition(tmp_path / "acme-wl100.toml")
    got = info.codec.decode_object({"level": {"distance": "250.5"}, "bat": 3300, "state": "0"})
    assert got.fields == {"distance_mm": 2505.0, "battery_v": 3.3, "acme_state": "ok"}
    out_of_range = info.codec.decode_object({"level": {"distance": 5000}, "bat": 3300})
    assert "distance_mm" not in out_of_range.fields and "outside 0..5000" in out_of_range.warnings[0]


def test_models_check_names_every_one_of_three_mistakes(tmp_path: Path) -> None:
    bad = GOOD.replace('unit = "cm"', 'unit = "furlong"').replace('scale = 0.001', 'scale = "0.001"')
    (tmp_path / "acme-wl100.toml").write_text(bad, encoding="utf-8")
    (tmp_path / "acme-nz1.toml").write_text(GOOD.replace("acme-wl100", "acme-nz1").replace(
        'kind = "water_level"', 'kind = "noise"').replace('install_params = ["mount_height_mm"]\n', ""),
        encoding="utf-8")
    result = CliRunner().invoke(app, ["models", "check", str(tmp_path)])
    assert result.exit_code == 1
    text = result.stderr
    assert f"{tmp_path / 'acme-wl100.toml'}: fields.distance_mm.unit: unknown unit 'furlong'" in text
    assert f"{tmp_path / 'acme-wl100.toml'}: fields.battery_v.scale: expected a number, got '0.001'" in text
    assert f"{tmp_path / 'acme-nz1.toml'}: fields.distance_mm: 'distance_mm' is not a field of kind 'noise'" in text
    assert "3 problem(s)" in text


def test_a_definition_refuses_unknown_keys_wrong_fields_and_a_failing_example(tmp_path: Path) -> None:
    path = tmp_path / "acme-wl100.toml"
    path.write_text(GOOD.replace("[fields]", "colour = 'red'\n[fields]").replace("acme_state", "state")
                    .replace("expect = { distance_mm = 1234.0", "expect = { distance_mm = 1.0"), encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    problems = caught.value.problems
    assert "colour: unknown key" in problems[0]
    assert any(p.startswith("fields.state: 'state' is neither a canonical field") for p in problems)
    path.write_text(GOOD.replace("distance_mm = 1234.0", "distance_mm = 1.0"), encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"example.expect.distance_mm: decoded 1234.0, expected 1.0"):
        load_definition(path)


def test_the_models_choice_wins_and_the_dead_letter_says_what_was_missing() -> None:
    lrs = get_model("senso8-lrs20uxx").codec  # input = ["object", "bytes"]
    report = bytes.fromhex("0c005704080000")
    assert decode_input(lrs, report, 10, {"distance": 50.0, "battery": 9}).fields["distance_mm"] == 500.0
    assert decode_input(lrs, report, 10, None).fields["distance_mm"] == 1032.0
    am308 = get_model("milesight-am308").codec  # input = ["object"]
    with pytest.raises(MissingInput, match=r"reads a decoded object .* this uplink carries 2 payload byte"):
        decode_input(am308, b"\x01\x02", 85, None)
    native = get_model("milesight-em500-udl").codec
    with pytest.raises(MissingInput, match="decodes payload bytes; this uplink carries only a decoded object"):
        decode_input(native, b"", 85, {"distance": 1})


# --- envelopes that carry decoded objects -----------------------------------------------------------


def test_chirpstack_v4_object_and_tts_decoded_payload_reach_the_uplink() -> None:
    topic, body = build_chirpstack_event(EUI, b"\x01", 85, 7, T, [(GW, -80, 7.0)])
    doc = orjson.loads(body)
    doc["object"] = {"pm2_5": 37, "pm10": 52}
    assert parse(topic, orjson.dumps(doc), T).decoded == {"pm2_5": 37, "pm10": 52}
    assert parse(topic, body, T).decoded is None
    topic, body = build_tts_uplink(EUI, b"\x01", 10, 3, T, [("gw-1", -70.0, 7.5)])
    doc = orjson.loads(body)
    doc["uplink_message"]["decoded_payload"] = {"distance": 88.5, "battery": 90}
    up = parse(topic, orjson.dumps(doc), T)
    assert (up.device_key, up.decoded) == (EUI, {"distance": 88.5, "battery": 90})


@pytest.mark.parametrize("marshaler", ["json", "json_v3"])
@pytest.mark.parametrize("generation", ["rx", "event"])
def test_chirpstack_v3_both_marshalers_and_topic_generations(marshaler: str, generation: str) -> None:
    topic, body = build_chirpstack_v3_uplink(EUI, b"\x0c\x00", 10, 41, T, [(GW, -101, 4.5)], marshaler=marshaler,
                                             topic_generation=generation, decoded={"distance": 77.7})
    up = parse(topic, body, T + 5)
    assert (up.device_key, up.payload, up.port, up.fcnt, up.time_ns) == (EUI, b"\x0c\x00", 10, 41, T)
    assert (up.rssi_dbm, up.snr_db, up.gateway_ids, up.decoded) == (-101, 4.5, (GW,), {"distance": 77.7})
    doc = orjson.loads(body)
    assert doc["devEUI"] == (base64.b64encode(bytes.fromhex(EUI)).decode() if marshaler == "json" else EUI)


def test_chirpstack_v3_other_events_and_bad_deveui_are_refused_by_name() -> None:
    topic, body = build_chirpstack_v3_uplink(EUI, b"", 1, 1, T, [], topic_generation="rx")
    for event in ("join", "status", "ack", "error", "event/join"):
        with pytest.raises(EnvelopeError) as caught:
            parse_chirpstack_v3(topic.replace("/rx", f"/{event}"), body, T)
        assert caught.value.reason == "not_uplink"
    doc = orjson.loads(body)
    doc["devEUI"] = "AgIC"
    with pytest.raises(EnvelopeError) as caught:
        parse_chirpstack_v3("application/1/device/x/rx", orjson.dumps(doc), T)
    assert caught.value.reason == "bad_deveui" and "neither 16 hex digits nor base64" in caught.value.detail


def test_ctwing_service_data_is_the_decoded_object() -> None:
    push = {"messageType": "dataReport", "IMEI": imei(12), "timestamp": 1_760_000_000_000,
            "payload": {"serviceId": "data_report", "serviceData": {"liquid_level": 2.3, "battery_value": 70}}}
    (up,) = parse_ctwing(orjson.dumps(push), T)
    assert up.decoded == {"liquid_level": 2.3, "battery_value": 70} and up.time_ns == T
    push["payload"]["APPdata"] = base64.b64encode(b"\x01\x02").decode()
    (both,) = parse_ctwing(orjson.dumps(push), T)
    assert (both.payload, both.decoded) == (b"\x01\x02", {"liquid_level": 2.3, "battery_value": 70})


def test_onenet_values_of_every_form_and_dev_id_keys() -> None:
    def msg(**m: object) -> str:
        return orjson.dumps({"type": 1, "at": 1_760_000_000_000, "ds_id": "3330_0_5700", **m}).decode()

    (num,) = parse_onenet_msg(msg(dev_id=504920001, value=1.85), T)
    assert (num.device_key, num.payload, num.decoded) == ("onenet:504920001", b"", {"3330_0_5700": 1.85})
    (text,) = parse_onenet_msg(msg(dev_id=504920001, value="blocked"), T)
    assert text.decoded == {"3330_0_5700": "blocked"} and text.payload == b""
    (hexed,) = parse_onenet_msg(msg(imei=imei(12), dev_id=7, value="0a0b"), T)
    assert (hexed.device_key, hexed.payload, hexed.alt_keys) == (imei(12), b"\n\x0b", ("onenet:7",))
    (b64,) = parse_onenet_msg(msg(dev_id=7, value=base64.b64encode(b"\x01\x02\x03").decode()), T)
    assert b64.payload == b"\x01\x02\x03"
    batch = orjson.dumps([orjson.loads(msg(dev_id=9, value=1.85)), orjson.loads(msg(dev_id=9, ds_id="3_0_9",
                          value=64)), orjson.loads(msg(dev_id=9, ds_id="3_0_7", value=3610))]).decode()
    (merged,) = parse_onenet_msg(batch, T)
    assert merged.decoded == {"3330_0_5700": 1.85, "3_0_9": 64, "3_0_7": 3610}
    assert get_model("ipso-distance-onenet").codec.decode_object(merged.decoded).fields == {
        "distance_mm": 1850.0, "battery_pct": 64.0, "battery_v": 3.61}
    assert normalise_key("OneNET:504920001") == "onenet:504920001"
    with pytest.raises(DeviceKeyError, match="OneNET dev_id"):
        normalise_key("onenet:has space")


def test_model_folders_reload_keep_the_last_good_version_and_refuse_packaged_ids(tmp_path: Path) -> None:
    folders = ModelFolders([tmp_path])
    assert folders.refresh() and folders.models == []
    path = tmp_path / "acme-wl100.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert folders.refresh() and get_model("acme-wl100").origin == str(path)
    assert not folders.refresh()
    path.write_text(GOOD.replace('unit = "cm"', 'unit = "cubit"'), encoding="utf-8")
    assert folders.refresh()
    assert get_model("acme-wl100").codec.decode_object({"level": {"distance": 1}}).fields["distance_mm"] == 10.0
    assert any("fields.distance_mm.unit: unknown unit 'cubit'" in p for p in folders.problems)
    (tmp_path / "clash.toml").write_text(GOOD.replace('"acme-wl100"', '"milesight-am308"').replace(
        'vendor = "acme"', 'vendor = "milesight"').replace("acme_state", "milesight_state"), encoding="utf-8")
    folders.refresh()
    assert any("'milesight-am308' is a packaged model" in p for p in folders.problems)
    ModelFolders([]).refresh()


def test_a_codec_that_does_not_load_is_named_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "acme-wl100.js").write_text("function decodeUplink(input) { return {data: {}; }", encoding="utf-8")
    (tmp_path / "acme-wl100.toml").write_text(GOOD.replace('reference =', 'codec = "acme-wl100.js"\nreference ='),
                                              encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"codec: JS codec acme-wl100.js: script does not load: SyntaxError"):
        load_definition(tmp_path / "acme-wl100.toml")


def test_onenet_new_platform_device_names_and_a_bad_dev_id() -> None:
    msg = orjson.dumps({"deviceName": "wl-gauge-07", "messageType": "notify", "notifyTime": 1_760_000_000_000,
                        "data": {"params": {"3330_0_5700": {"value": 1.2}}}}).decode()
    (up,) = parse_onenet_msg(msg, T)
    assert (up.device_key, up.decoded) == ("onenet:wl-gauge-07", {"3330_0_5700": 1.2})
    with pytest.raises(EnvelopeError) as caught:
        parse_onenet_msg(orjson.dumps({"type": 1, "dev_id": "a b", "value": 1}).decode(), T)
    assert caught.value.reason == "bad_dev_id"


def test_a_codec_must_be_a_file_beside_the_definition(tmp_path: Path) -> None:
    (tmp_path / "acme-wl100.toml").write_text(GOOD.replace('reference =', 'codec = "../../etc/evil.js"\nreference ='),
                                              encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"codec: expected the name of a .js file beside the definition"):
        load_definition(tmp_path / "acme-wl100.toml")


def test_models_lists_the_citys_folder_with_its_origin_and_decode_uses_it(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "acme-wl100.toml").write_text(GOOD, encoding="utf-8")
    (folder / "acme-broken.toml").write_text("model = 'acme-broken'\n", encoding="utf-8")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[decoders]\npaths = ["models"]\n', encoding="utf-8")
    try:
        listed = CliRunner().invoke(app, ["--config", str(cfg), "models", "--json"])
        rows = {r["model"]: r for r in map(orjson.loads, listed.stdout.splitlines())}  # JSON Lines
        assert rows["acme-wl100"]["origin"] == str(folder / "acme-wl100.toml")
        assert rows["milesight-am308"]["origin"] == "packaged: decoders/definitions/milesight-am308.toml"
        assert rows["milesight-em500-udl"]["origin"] == "packaged: decoders/models"
        assert f"refused: {folder / 'acme-broken.toml'}: kind: required value is missing" in listed.stderr
        decoded = CliRunner().invoke(app, ["--config", str(cfg), "decode", "-m", "acme-wl100", "--json",
                                           "--object", '{"level": {"distance": 80}, "bat": 3300}'])
        assert orjson.loads(decoded.stdout)["fields"] == {"distance_mm": 800.0, "battery_v": 3.3}
        added = CliRunner().invoke(app, ["--config", str(cfg), "device", "add", "OW-1", "--key", "onenet:504920001",
                                         "--model", "acme-wl100", "--mount-height-mm", "3000", "--registry",
                                         str(tmp_path / "r.sqlite")])
        assert added.exit_code == 0, added.output
    finally:
        ModelFolders([]).refresh()


def test_models_check_prints_brackets_in_reasons_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "acme-wl100.toml").write_text(GOOD.replace("range = [0, 5000]", "range = [5000, 0]"), encoding="utf-8")
    result = CliRunner().invoke(app, ["models", "check", str(tmp_path)])
    assert "fields.distance_mm.range: expected [min, max] with min < max (got [5000, 0])" in result.stderr


def test_a_hostile_object_gives_a_short_clear_error() -> None:
    hostile = {("k" * 10_000) + str(i): i for i in range(1000)}
    with pytest.raises(DecodeError) as caught:
        get_model("milesight-am308").codec.decode_object(hostile)
    assert len(str(caught.value)) < 600 and "none of its paths" in str(caught.value)


@pytest.mark.parametrize("marshaler", ["json", "json_v3"])
def test_decode_a_whole_pasted_message(tmp_path: Path, marshaler: str) -> None:
    _, body = build_chirpstack_v3_uplink(EUI, bytes.fromhex("0c005704080000"), 10, 5, T, [(GW, -100, 3.0)],
                                         marshaler=marshaler, decoded={"distance": 55.5, "battery": 80})
    (tmp_path / "event.json").write_bytes(body)
    r = CliRunner().invoke(app, ["decode", "-m", "senso8-lrs20uxx", "--json", "--envelope",
                                 str(tmp_path / "event.json")])
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.stdout)["fields"] == {"distance_mm": 555.0, "battery_pct": 80.0}
    one = orjson.dumps({"msg": {"type": 1, "dev_id": 5, "ds_id": "3330_0_5700", "at": 1, "value": 1.5}})
    r = CliRunner().invoke(app, ["decode", "-m", "ipso-distance-onenet", "--json", "--envelope", "-"], input=one)
    assert orjson.loads(r.stdout)["fields"] == {"distance_mm": 1500.0}
    r = CliRunner().invoke(app, ["decode", "-m", "ipso-distance-onenet", "--envelope", "-"], input=b'{"a": 1}')
    assert r.exit_code == 1 and "unknown_envelope" in r.stderr and "ChirpStack v4/v3 event" in r.stderr


def test_install_params_must_fit_the_kind(tmp_path: Path) -> None:
    path = tmp_path / "acme-wl100.toml"
    path.write_text(GOOD.replace('install_params = ["mount_height_mm"]', 'install_params = ["bin_depth_mm"]'),
                    encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definition(path)
    assert caught.value.problems == [
        "install_params: 'bin_depth_mm' is not used by kind 'water_level' (its parameters: mount_height_mm, "
        "dead_zone_mm)",
        "install_params: a water_level model that reports distance_mm needs 'mount_height_mm', from which the "
        "service derives its level"]
