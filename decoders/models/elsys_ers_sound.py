"""Elsys ERS Sound: indoor climate sensor with a sound level meter (average and peak dB(A))."""

from __future__ import annotations

from decoders.engines.tlv import Item, TlvCodec, Value
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange


def _type(t: int, size: int, *values: Value, name: str = "") -> Item:
    return Item(t, size, values, name)


# Elsys frames: a type byte, then a big-endian value whose length the type fixes.
ITEMS = (
    _type(0x01, 2, Value("temperature_c", "h", div=10), name="temperature"),
    _type(0x02, 1, Value("humidity_pct", "B"), name="humidity"),
    _type(0x03, 3, name="acceleration"),
    _type(0x04, 2, Value("elsys_light_lux", "H"), name="light"),
    _type(0x05, 1, Value("elsys_motion_count", "B", kind=int), name="motion"),
    _type(0x06, 2, Value("elsys_co2_ppm", "H"), name="CO2"),
    _type(0x07, 2, Value("battery_v", "H", div=1000), name="battery voltage"),
    _type(0x08, 2, name="analog input 1"),
    _type(0x09, 6, name="GPS"),
    _type(0x0A, 2, name="pulse count 1"),
    _type(0x0B, 4, name="pulse count 1 absolute"),
    _type(0x0C, 2, name="external temperature 1"),
    _type(0x0D, 1, name="digital input"),
    _type(0x0E, 2, name="external distance"),
    _type(0x0F, 1, name="acceleration motion"),
    _type(0x10, 4, name="IR temperature"),
    _type(0x11, 1, name="occupancy"),
    _type(0x12, 1, name="water leak"),
    _type(0x13, 65, name="grideye"),
    _type(0x14, 4, name="pressure"),
    _type(0x15, 2, Value("lmax_db", "B"), Value("laeq_db", "B", 1), name="sound peak/average"),
    _type(0x16, 2, name="pulse count 2"),
    _type(0x17, 4, name="pulse count 2 absolute"),
    _type(0x18, 2, name="analog input 2"),
    _type(0x19, 2, name="external temperature 2"),
    _type(0x1A, 1, name="digital input 2"),
    _type(0x1B, 4, name="analog µV"),
    _type(0x1C, 2, name="TVOC"),
    _type(0x3D, 4, name="debug"),
)

CODEC = TlvCodec("elsys-ers-sound", "noise", ITEMS, port=5, key_size=1, byteorder="big")

MODEL = ModelInfo(
    model="elsys-ers-sound", kind="noise", vendor="elsys", title="Elsys ERS Sound (sound level, climate)",
    source="native", codec=CODEC,
    ranges={"laeq_db": FieldRange(30, 120, 1), "lmax_db": FieldRange(30, 120, 1),
            "temperature_c": FieldRange(-20, 60, 0.1), "humidity_pct": FieldRange(0, 100, 1),
            "battery_v": FieldRange(2.5, 3.7, 0.001)},
    reference="TheThingsNetwork/lorawan-devices vendor/elsys/elsys.js (type table), ers-sound-codec.yaml",
)
