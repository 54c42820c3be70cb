"""The TLV engine (Milesight, Elsys): sized items skipped, unsizable ones rejected, sentinels, weighting."""

from __future__ import annotations

import pytest

from decoders import DecodeError, EncodeError, get_model


def decode(model: str, hex_: str, port: int = 85):
    return get_model(model).codec.decode(bytes.fromhex(hex_), port)


def test_device_attributes_sent_on_join_are_skipped() -> None:
    # power-on, protocol version, serial number, hardware/firmware version, class: all sized, none reported
    join = "ff0bff" "ff0101" "ff166329c42503920003" "ff090100" "ff0a0101" "ff0f00"
    decoded = decode("milesight-em400-udl", join + "01755c")
    assert decoded.fields == {"battery_pct": 92.0}
    assert decoded.warnings == []


def test_history_item_is_a_record_at_its_own_time_beside_the_live_fields() -> None:
    decoded = decode("milesight-em500-udl", "20ce" "00e1f565" "d204" "03821e00")
    assert decoded.fields == {"distance_mm": 30.0}
    assert [(r.time_s, r.fields) for r in decoded.history] == [(0x65F5E100, {"distance_mm": 1234.0})]


def test_an_item_of_unknown_length_rejects_the_frame() -> None:
    with pytest.raises(DecodeError, match=r"unknown item 0999 at offset 3.*cannot be read"):
        decode("milesight-em500-udl", "01755c" "099912" "03821e00")


def test_a_truncated_item_says_what_is_missing() -> None:
    with pytest.raises(DecodeError, match=r"item 0382 \(distance\) at offset 3 needs 2 byte\(s\), 1 left"):
        decode("milesight-em500-udl", "01755c" "03821e")


def test_empty_payload_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="empty payload"):
        decode("milesight-em310-udl", "")


@pytest.mark.parametrize(("raw", "reason"), [("ffff", "collection failed"), ("fdff", "out of range")])
def test_swl_error_codes_are_warnings_not_depths(raw: str, reason: str) -> None:
    decoded = decode("milesight-em500-swl", "017564" "0377" + raw)
    assert decoded.fields == {"battery_pct": 100.0}
    assert decoded.warnings == [f"depth_mm: sensor {reason}"]


def test_swl_depth_is_centimetres_on_the_wire() -> None:
    assert decode("milesight-em500-swl", "0377" "1e00").fields == {"depth_mm": 300.0}
    payload, port = get_model("milesight-em500-swl").codec.encode({"depth_mm": 300.0})
    assert (payload.hex(), port) == ("03771e00", 85)


def test_a_depth_that_encodes_to_an_error_code_is_refused() -> None:
    with pytest.raises(EncodeError, match="reserved value"):
        get_model("milesight-em500-swl").codec.encode({"depth_mm": 655_330.0})


def test_a_flag_other_than_0_or_1_is_rejected() -> None:
    with pytest.raises(DecodeError, match="tilted must be 0 or 1, got 2"):
        decode("milesight-em310-udl", "040002")


def test_alarm_items_report_the_reading_and_a_vendor_alarm_flag() -> None:
    codec = get_model("milesight-em400-udl").codec
    fields = {"distance_mm": 1843.0, "milesight_distance_alarm": True}
    payload, _ = codec.encode(fields)
    assert payload.hex() == "8482330701"
    assert codec.decode(payload, 85).fields == fields
    assert codec.encode({"distance_mm": 1843.0})[0].hex() == "04823307"


def test_ws302_c_weighted_levels_keep_vendor_names() -> None:
    decoded = decode("milesight-ws302", "055b" "06" "3f02" "da01" "6a02")
    assert decoded.fields == {"milesight_lp_db": 57.5, "milesight_lceq_db": 47.4, "milesight_lcmax_db": 61.8}
    assert "C-weighted" in decoded.warnings[0]
    codec = get_model("milesight-ws302").codec
    assert codec.decode(*codec.encode(decoded.fields)).fields == decoded.fields


def test_ws302_reserved_weighting_is_rejected() -> None:
    with pytest.raises(DecodeError, match="reserved weighting byte 0x03"):
        decode("milesight-ws302", "055b" "03" "3f02" "da01" "6a02")


def test_ws302_encode_fills_the_instantaneous_level_from_leq() -> None:
    codec = get_model("milesight-ws302").codec
    payload, port = codec.encode({"laeq_db": 47.4})
    assert (payload.hex(), port) == ("055b05da01da01da01", 85)


def test_elsys_unknown_type_rejects_the_frame() -> None:
    with pytest.raises(DecodeError, match="unknown item 20 at offset 3"):
        decode("elsys-ers-sound", "0100e2" "20ffff", 5)


def test_elsys_skips_sized_types_it_does_not_report() -> None:
    decoded = decode("elsys-ers-sound", "03010203" "150f0a" "070e10", 5)
    assert decoded.fields == {"lmax_db": 15.0, "laeq_db": 10.0, "battery_v": 3.6}


def test_encode_refuses_values_outside_the_format() -> None:
    codec = get_model("milesight-em500-udl").codec
    with pytest.raises(EncodeError, match="outside what the payload can carry"):
        codec.encode({"distance_mm": 70_000.0})
    with pytest.raises(EncodeError, match="must be a number"):
        codec.encode({"distance_mm": "far"})
