"""The NB-IoT frame envelope and the platform push parsers, on bytes."""

from __future__ import annotations

import base64

import orjson
import pytest
from nbiotkit import imei
from pymodbus.framer import FramerRTU

from collectors.nbiot.frame import build_ack, build_frame, crc16_modbus, parse_frame
from collectors.nbiot.platforms import onenet_signature, parse_ctwing, parse_onenet_msg
from core.uplink import EnvelopeError
from decoders import get_model
from sim.nbiot import ctwing_push, ctwing_push_decoded, onenet_push

IMEI = imei(7)


def test_crc_is_crc16_modbus() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    data = bytes(range(40))
    assert crc16_modbus(data) == int.from_bytes(FramerRTU.compute_CRC(data).to_bytes(2, "big"), "little")


def test_frame_round_trip_and_ack() -> None:
    raw = build_frame(IMEI, 1, 513, b"\x07\x3a\x0e\x10\x00\xd7", device_time_s=1_760_000_000, ack_requested=True)
    assert raw[0] == 0x68 and raw[-1] == 0x16 and raw[2:10].hex() == IMEI + "f"
    f = parse_frame(raw)
    assert (f.imei, f.msg_type, f.seq, f.device_time_s, f.ack_requested) == (IMEI, 1, 513, 1_760_000_000, True)
    assert get_model("generic-nb-wl").codec.decode(f.payload, f.msg_type).fields["distance_mm"] == 1850.0
    ack = parse_frame(build_ack(f))
    assert (ack.imei, ack.msg_type, ack.seq, ack.payload) == (IMEI, 0, 513, b"\x00")
    assert len(build_ack(f)) <= len(raw)


def _flip(raw: bytes, i: int) -> bytes:
    return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:]


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda r: r[:10], "frame_length"),
    (lambda r: r[:-4] + r[-3:], "frame_length"),
    (lambda r: b"\x69" + r[1:], "frame_marker"),
    (lambda r: _flip(r, 20), "bad_checksum"),
    (lambda r: _flip(r, 9), "bad_checksum"),
])
def test_malformed_frames_are_refused_with_a_reason(mangle, reason: str) -> None:
    raw = build_frame(IMEI, 1, 1, b"\x00\x01\x02\x03\x04\x05")
    with pytest.raises(EnvelopeError) as caught:
        parse_frame(mangle(raw))
    assert caught.value.reason == reason


def test_a_frame_with_a_correct_crc_but_an_invalid_imei_is_refused() -> None:
    wrong = IMEI[:-1] + str((int(IMEI[-1]) + 1) % 10)
    raw = bytearray(build_frame(IMEI, 1, 1, b"\x00"))
    raw[2:10] = bytes.fromhex(wrong + "f")
    raw[-3:-1] = crc16_modbus(bytes(raw[:-3])).to_bytes(2, "little")
    with pytest.raises(EnvelopeError, match="check digit") as caught:
        parse_frame(bytes(raw))
    assert caught.value.reason == "bad_imei"


def test_ctwing_transparent_and_decoded_pushes() -> None:
    frame = build_frame(IMEI, 1, 9, b"\x07\x3a\x0e\x10\x00\xd7")
    (up,) = parse_ctwing(ctwing_push(IMEI, frame, 1_760_000_000_123), 5)
    assert (up.device_key, up.port, up.time_ns, up.fcnt) == (IMEI, 1, 1_760_000_000_123_000_000, 9)
    (up,) = parse_ctwing(ctwing_push_decoded(IMEI, {"distance": 1234, "battery_voltage": 3.5}, 1000), 5)
    assert get_model("generic-nb-wl").codec.decode(up.payload, up.port).fields == {"distance_mm": 1234.0,
                                                                                  "battery_v": 3.5}
    other = build_frame(imei(8), 1, 9, b"\x07\x3a\x0e\x10\x00\xd7")
    with pytest.raises(EnvelopeError) as caught:
        parse_ctwing(ctwing_push(IMEI, other, 1000), 5)
    assert caught.value.reason == "imei_mismatch"
    doc = orjson.loads(ctwing_push(IMEI, frame, 1000))
    doc["payload"]["APPdata"] = "%%%"
    with pytest.raises(EnvelopeError):
        parse_ctwing(orjson.dumps(doc), 5)
    assert base64.b64decode(orjson.loads(ctwing_push(IMEI, frame, 1))["payload"]["APPdata"]) == frame


def test_onenet_signature_and_message() -> None:
    # Base64(MD5(token + nonce + msg)), computed independently
    import hashlib
    assert onenet_signature("tok", "n1", "hello") == base64.b64encode(hashlib.md5(b"tokn1hello").digest()).decode()
    body = orjson.loads(onenet_push("tok", IMEI, b"\x01\x02", 1_760_000_000_000))
    (up,) = parse_onenet_msg(body["msg"], 5)
    assert (up.device_key, up.payload, up.port, up.time_ns) == (IMEI, b"\x01\x02", 1, 1_760_000_000_000_000_000)
