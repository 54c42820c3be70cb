"""The NB-IoT UDP frame envelope: device IMEI, message type, sequence, device time, payload, CRC.

Pure, bytes in and out. Every urbansense NB-IoT model (see `decoders/models/generic_nb_*.py`)
wraps its payload in this envelope, big-endian except the CRC (low byte first, as Modbus):

    offset size  field
    0      1     start byte 0x68
    1      1     protocol version 0x01
    2      8     IMEI, BCD: 15 digits then a 0xF nibble
    10     1     message type (bits 0–6; 0x00 = ack) | 0x80 when the device waits for an ack
    11     2     sequence number
    13     4     device time, Unix seconds (0 = no clock: the receive time is used)
    17     2     payload length N (at most 1024)
    19     N     payload, the model's codec (`codec.decode(payload, message type)`)
    19+N   2     CRC-16/MODBUS of bytes 0 … 18+N
    21+N   1     end byte 0x16

An ack is the same envelope with type 0x00, the acknowledged sequence number and a
one-byte payload 0x00 (accepted); it is never larger than the frame it answers.

Authenticated frames (protocol version 0x02), for devices that have a MAC key in the registry
(`urbansense device mac-key ID`): the same layout with an 8-byte tag after the payload,

    19+N   8     MAC: the first 8 bytes of HMAC-SHA256(device key, bytes 0 … 18+N)
    27+N   2     CRC-16/MODBUS of bytes 0 … 26+N
    29+N   1     end byte 0x16

A device with a key must send version 0x02 frames with a matching tag: knowing its IMEI is
then not enough to send readings in its name. The tag covers the sequence number and device
time, so a captured frame replayed later is the same reading again (stored once).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from core.keys import luhn_ok
from core.timepolicy import envelope_time, from_number
from core.uplink import EnvelopeError, Uplink

START, END, VERSION, VERSION_MAC = 0x68, 0x16, 0x01, 0x02
MAC_SIZE = 8
ACK_TYPE = 0x00
ACK_REQUESTED = 0x80
MAX_PAYLOAD = 1024
_HEAD = struct.Struct(">BB8sBHIH")
OVERHEAD = _HEAD.size + 3
MIN_FRAME = OVERHEAD


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); check value of b"123456789" is 0x4B37."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def imei_to_bcd(imei: str) -> bytes:
    if len(imei) != 15 or not imei.isdigit():
        raise ValueError(f"IMEI {imei!r}: expected 15 digits")
    return bytes.fromhex(imei + "f")


def bcd_to_imei(raw: bytes) -> str | None:
    """The IMEI, or None when the BCD is not 15 decimal digits + 0xF or its Luhn check digit is wrong."""
    text = raw.hex()
    if len(text) != 16 or text[15] != "f" or not text[:15].isdigit() or not luhn_ok(text[:15]):
        return None
    return text[:15]


@dataclass(slots=True, frozen=True)
class Frame:
    imei: str
    msg_type: int
    ack_requested: bool
    seq: int
    device_time_s: int
    payload: bytes
    mac: bytes | None = None
    """The version 0x02 tag, None for an unauthenticated (0x01) frame."""
    signed: bytes = b""
    """The bytes the tag covers (0 … 18+N)."""


def frame_mac(key: bytes, signed: bytes) -> bytes:
    return hmac.new(key, signed, hashlib.sha256).digest()[:MAC_SIZE]


def mac_ok(frame: Frame, key: bytes) -> bool:
    """Whether `frame` carries a tag and it is right for `key` (constant-time)."""
    return frame.mac is not None and hmac.compare_digest(frame.mac, frame_mac(key, frame.signed))


def mac_refusal(frame: Frame, key: bytes | None) -> EnvelopeError | None:
    """Why a frame is refused for its tag (`bad_mac`), or None: a device with a key needs its tag."""
    if key is not None and mac_ok(frame, key):
        return None
    if key is None and frame.mac is None:
        return None
    if frame.mac is None:
        return EnvelopeError("bad_mac", f"{frame.imei} has a MAC key: unsigned (version 1) frames are refused",
                             frame.imei)
    return EnvelopeError("bad_mac", f"{frame.imei}: the frame's MAC does not match the device's key "
                                    "(or the device has no key registered)", frame.imei)


def build_frame(imei: str, msg_type: int, seq: int, payload: bytes, *, device_time_s: int = 0,
                ack_requested: bool = False, mac_key: bytes | None = None) -> bytes:
    """A complete frame (what a device sends); `ValueError` for values the layout cannot carry."""
    if not 0 <= msg_type <= 0x7F:
        raise ValueError(f"message type {msg_type} does not fit in 7 bits")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    head = _HEAD.pack(START, VERSION if mac_key is None else VERSION_MAC, imei_to_bcd(imei),
                      msg_type | (ACK_REQUESTED if ack_requested else 0), seq & 0xFFFF, device_time_s, len(payload))
    body = head + payload
    if mac_key is not None:
        body += frame_mac(mac_key, body)
    return body + crc16_modbus(body).to_bytes(2, "little") + bytes((END,))


def parse_frame(data: bytes) -> Frame:
    """Check and split one frame; `EnvelopeError` with a stable reason for anything malformed or spoofed."""
    n = len(data)
    if n < MIN_FRAME:
        raise EnvelopeError("frame_length", f"{n} byte(s), a frame has at least {MIN_FRAME}")
    start, version, bcd, type_byte, seq, dev_time, length = _HEAD.unpack_from(data)
    if start != START or data[-1] != END:
        raise EnvelopeError("frame_marker", f"start 0x{start:02x} / end 0x{data[-1]:02x}, expected 0x68 / 0x16")
    tag = MAC_SIZE if version == VERSION_MAC else 0
    if n != length + OVERHEAD + tag:
        raise EnvelopeError("frame_length", f"{n} byte(s) but the header announces a {length}-byte payload "
                                            f"({length + OVERHEAD + tag} bytes in all)")
    crc = int.from_bytes(data[n - 3:n - 1], "little")
    if crc != crc16_modbus(data[:n - 3]):
        raise EnvelopeError("bad_checksum", f"CRC 0x{crc:04x} does not match the frame")
    if version not in (VERSION, VERSION_MAC):
        raise EnvelopeError("frame_version", f"protocol version {version}, expected {VERSION} or {VERSION_MAC}")
    imei = bcd_to_imei(bcd)
    if imei is None:
        raise EnvelopeError("bad_imei", f"IMEI field {bcd.hex()} is not 15 BCD digits with a valid check digit")
    end = n - 3 - tag
    return Frame(imei, type_byte & 0x7F, bool(type_byte & ACK_REQUESTED), seq, dev_time,
                 bytes(data[_HEAD.size:end]), bytes(data[end:n - 3]) if tag else None, bytes(data[:end]))


def build_ack(frame: Frame) -> bytes:
    return build_frame(frame.imei, ACK_TYPE, frame.seq, b"\x00")


def to_uplink(frame: Frame, source: str, received_ns: int) -> Uplink:
    """The frame as an `Uplink`: key = IMEI, port = message type, fcnt = sequence, times offered =
    the device clock (0 = none: the receive time is used), judged by `core.timepolicy`."""
    times = (from_number("device_time", frame.device_time_s),) if frame.device_time_s else ()
    return Uplink(device_key=frame.imei, payload=frame.payload, port=frame.msg_type,
                  time_ns=envelope_time(times, received_ns), source=source, received_ns=received_ns,
                  fcnt=frame.seq, times=times)
