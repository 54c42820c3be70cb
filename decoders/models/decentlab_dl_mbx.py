"""Decentlab DL-MBX ultrasonic distance / level sensor (MaxBotix), used as a road water-level gauge."""

from __future__ import annotations

from decoders.engines.decentlab import DecentlabCodec, DlSensor, DlValue, battery
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

CODEC = DecentlabCodec("decentlab-dl-mbx", "water_level", (
    DlSensor("distance", 2, (
        DlValue("distance_mm", lambda w: w[0] if w[1] else "no valid samples in this measurement", round),
        DlValue("decentlab_valid_samples", lambda w: w[1], round, word=1, kind=int),
    ), defaults=(0, 1)),
    battery(),
))

MODEL = ModelInfo(
    model="decentlab-dl-mbx", kind="water_level", vendor="decentlab", title="Decentlab DL-MBX ultrasonic distance",
    source="native", codec=CODEC,
    ranges={"distance_mm": FieldRange(300, 5000, 1), "battery_v": FieldRange(2.5, 3.6, 0.001)},
    install_params=("mount_height_mm",), dead_zone_mm=300.0,
    reference="TheThingsNetwork/lorawan-devices vendor/decentlab/dl-mbx.js; decentlab/decentlab-decoders DL-MBX",
)
