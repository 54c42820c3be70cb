"""Fixed-layout families: Decentlab protocol v2, Dragino distance frames, Bosch and Nwave parking."""

from __future__ import annotations

import pytest

from decoders import DecodeError, EncodeError, get_model
from decoders.models.nwave_nps405 import duration_code, duration_min


def decode(model: str, hex_: str, port: int):
    return get_model(model).codec.decode(bytes.fromhex(hex_), port)


@pytest.mark.parametrize(("hex_", "message"), [
    ("03012f00020bb1", "protocol version 3, expected 2"),
    ("02012f", "3 byte(s), a Decentlab frame has a 5-byte header"),
    ("02012f00040bb1", "names sensors this model does not have"),
    ("02012f00020bb1ff", "announces 7 bytes, got 8 (trailing bytes)"),
    ("02012f000304d2", "announces 11 bytes, got 7 (truncated)"),
])
def test_decentlab_frame_errors_say_what_is_wrong(hex_: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode("decentlab-dl-mbx", hex_, 1)


def test_decentlab_distance_without_valid_samples_is_not_reported() -> None:
    decoded = decode("decentlab-dl-mbx", "02012f000104d20000", 1)
    assert decoded.fields == {"decentlab_valid_samples": 0}
    assert decoded.warnings == ["distance_mm: no valid samples in this measurement"]


def test_pr26_depth_is_hydrostatic() -> None:
    codec = get_model("decentlab-dl-pr26").codec
    half_bar = 16384 + 16384
    decoded = codec.decode(bytes.fromhex("0201670001") + half_bar.to_bytes(2, "big") + bytes.fromhex("6017"), 1)
    assert decoded.fields["decentlab_pressure_bar"] == 0.5
    assert decoded.fields["depth_mm"] == 5099.0  # 0.5 bar of fresh water = 5.0986 m


def test_pr26_pressure_is_decode_only() -> None:
    with pytest.raises(EncodeError, match="decode-only"):
        get_model("decentlab-dl-pr26").codec.encode({"decentlab_pressure_bar": 0.5})


def test_dragino_firmware_1_0_frame_has_no_temperature() -> None:
    decoded = decode("dragino-ldds75", "0d3b0aef01", 2)
    assert decoded.fields == {"battery_v": 3.387, "distance_mm": 2799.0, "dragino_interrupt": True}


def test_dragino_no_sensor_and_invalid_reading_are_warnings() -> None:
    assert decode("dragino-ldds75", "0d3b0aef00000000", 2).warnings == [
        "distance_mm: no ultrasonic sensor detected (sensor flag 0)"]
    assert decode("dragino-ldds75", "0d3b000000000001", 2).warnings == [
        "distance_mm: no ultrasonic sensor detected (raw 0)"]
    decoded = decode("dragino-ldds20", "0d3b001400000001", 2)
    assert "distance_mm" not in decoded.fields
    assert decoded.warnings == ["distance_mm: invalid reading (raw 20)"]


def test_dragino_probe_temperature_is_signed_tenths() -> None:
    assert decode("dragino-ldds75", "0d3b0aef00ff9c01", 2).fields["temperature_c"] == -10.0


def test_dragino_zero_celsius_cannot_be_encoded() -> None:
    with pytest.raises(EncodeError, match="0 for 'no probe'"):
        get_model("dragino-ldds75").codec.encode({"battery_v": 3.3, "distance_mm": 1000.0, "temperature_c": 0.0})


def test_dds20_lb_status_and_datalog_ports() -> None:
    assert decode("dragino-dds20-lb", "29010a01ff0cf6", 5).fields == {"battery_v": 3.318}
    datalog = decode("dragino-dds20-lb", "0cf602ee00000065a1b2c3" * 2, 3)
    assert datalog.fields == {}
    assert [(r.time_s, r.fields) for r in datalog.history] == [
        (0x65A1B2C3, {"battery_v": 3.318, "distance_mm": 750.0})] * 2
    with pytest.raises(DecodeError, match="fPort 3"):
        decode("dragino-ldds20", "0cf602ee00000065a1b2c3", 3)


def test_bosch_ports_without_readings_and_unknown_ports() -> None:
    assert decode("bosch-tps110", "0102", 4).warnings == ["fPort 4 (device information) carries no readings"]
    with pytest.raises(DecodeError, match="unexpected fPort 9"):
        decode("bosch-tps110", "01", 9)
    with pytest.raises(DecodeError, match="fPort 3 frame has 16 byte"):
        decode("bosch-tps110", "24030000750300000000000000" "1d0203", 3)


def test_bosch_encode_picks_the_heartbeat_when_temperature_is_given() -> None:
    codec = get_model("bosch-tps110").codec
    assert codec.encode({"occupied": True}) == (b"\x01", 1)
    assert codec.encode({"occupied": False, "temperature_c": -1.0}) == (b"\x00\xff", 2)


@pytest.mark.parametrize("minutes", [0.0, 74.0, 89.0, 90.0, 160.0, 235.0, 240.0, 600.0])
def test_nwave_duration_scale_round_trips(minutes: float) -> None:
    assert duration_min(duration_code(minutes)) == minutes
    codec = get_model("nwave-nps405").codec
    fields = {"occupied": True, "nwave_previous_state_min": minutes}
    assert codec.decode(*codec.encode(fields)).fields == fields


def test_nwave_duration_overflow_is_a_warning() -> None:
    decoded = decode("nwave-nps405", "ff", 1)
    assert decoded.fields == {"occupied": True}
    assert "longer than 660 min" in decoded.warnings[0]


def test_nwave_heartbeat_needs_both_battery_and_temperature() -> None:
    with pytest.raises(EncodeError, match="temperature_c"):
        get_model("nwave-nps405").codec.encode({"occupied": True, "battery_v": 3.3})
