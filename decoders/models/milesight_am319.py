"""Milesight AM319 indoor ambience monitor, used here for its PM2.5/PM10 channels."""

from __future__ import annotations

from decoders.engines import milesight
from decoders.engines.tlv import Value, item
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = milesight.codec(
    "milesight-am319", "dust",
    item(0x03, 0x67, 2, Value("temperature_c", "h", div=10), name="temperature"),
    item(0x04, 0x68, 1, Value("humidity_pct", "B", div=2), name="humidity"),
    item(0x05, 0x00, 1, Value("milesight_pir_active", "B", kind=bool), name="PIR activity"),
    item(0x06, 0xCB, 1, Value("milesight_light_level", "B", kind=int), name="light level"),
    item(0x07, 0x7D, 2, Value("milesight_co2_ppm", "H"), name="CO2"),
    item(0x08, 0x7D, 2, Value("milesight_tvoc", "H"), name="TVOC"),
    item(0x09, 0x73, 2, Value("milesight_pressure_hpa", "H", div=10), name="pressure"),
    item(0x0A, 0x7D, 2, Value("milesight_hcho_mgm3", "H", div=100), name="HCHO"),
    item(0x0B, 0x7D, 2, Value("pm2_5_ugm3", "H"), name="PM2.5"),
    item(0x0C, 0x7D, 2, Value("pm10_ugm3", "H"), name="PM10"),
    item(0x0D, 0x7D, 2, Value("milesight_o3_ppm", "H", div=100), name="O3"),
    item(0x0E, 0x01, 1, Value("milesight_beep", "B", kind=bool), name="buzzer"),
)

MODEL = ModelInfo(
    model="milesight-am319", kind="dust", vendor="milesight", title="Milesight AM319 ambience monitor (PM2.5/PM10)",
    source="native", codec=CODEC,
    ranges={"pm2_5_ugm3": FieldRange(0, 1000, 1), "pm10_ugm3": FieldRange(0, 1000, 1),
            "temperature_c": FieldRange(-20, 60, 0.1), "humidity_pct": FieldRange(0, 100, 0.5)},
    reference="TheThingsNetwork/lorawan-devices vendor/milesight-iot/am319.js (AM307/AM319 layout)",
)
