"""Decentlab DL-PR26 (0–1 bar) pressure / liquid level sensor: water depth from hydrostatic gauge pressure."""

from __future__ import annotations

from decoders.engines.decentlab import DecentlabCodec, DlSensor, DlValue, battery
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

P_MIN_BAR, P_MAX_BAR = 0.0, 1.0
MM_PER_BAR = 1e5 / (1000.0 * 9.80665) * 1000
"""Depth of fresh water (1000 kg/m³, standard gravity) per bar of gauge pressure: 10 197 mm."""


def pressure_bar(raw: int) -> float:
    return (raw - 16384) / 32768 * (P_MAX_BAR - P_MIN_BAR) + P_MIN_BAR


def _depth(w: tuple[int, ...]) -> float | str:
    p = pressure_bar(w[0])
    if p < 0:
        return f"gauge pressure {p:.5f} bar is below zero (sensor out of water or offset): no depth"
    return float(round(p * MM_PER_BAR))


def _depth_raw(depth_mm: float) -> int:
    return round((depth_mm / MM_PER_BAR - P_MIN_BAR) / (P_MAX_BAR - P_MIN_BAR) * 32768) + 16384


CODEC = DecentlabCodec("decentlab-dl-pr26", "water_level", (
    DlSensor("pressure/temperature", 2, (
        DlValue("depth_mm", _depth, _depth_raw),
        DlValue("decentlab_pressure_bar", lambda w: pressure_bar(w[0])),
        DlValue("temperature_c", lambda w: round((w[1] - 384) * 0.003125 - 50, 6),
                lambda t: round((t + 50) / 0.003125) + 384, word=1),
    ), defaults=(16384, 16384)),
    battery(),
))

MODEL = ModelInfo(
    model="decentlab-dl-pr26", kind="water_level", vendor="decentlab",
    title="Decentlab DL-PR26 pressure level (0–1 bar)",
    source="native", codec=CODEC,
    ranges={"depth_mm": FieldRange(0, 10_197, 1), "temperature_c": FieldRange(-20, 60, 0.025),
            "battery_v": FieldRange(2.5, 3.6, 0.001)},
    reference="TheThingsNetwork/lorawan-devices vendor/decentlab/dl-pr26-0-1.js (Pmin 0, Pmax 1 bar)",
)
