"""Decentlab DL-PM particulate matter, temperature, humidity and barometric pressure sensor."""

from __future__ import annotations

from decoders.engines.decentlab import DecentlabCodec, DlSensor, DlValue, battery
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange


def _tenths(field: str, word: int) -> DlValue:
    return DlValue(field, lambda w: w[word] / 10, lambda v: round(v * 10), word=word)


CODEC = DecentlabCodec("decentlab-dl-pm", "dust", (
    battery(),
    DlSensor("particulate matter", 10, (
        _tenths("pm1_0_ugm3", 0), _tenths("pm2_5_ugm3", 1), _tenths("decentlab_pm4_ugm3", 2),
        _tenths("pm10_ugm3", 3),
        DlValue("decentlab_typical_particle_size_nm", lambda w: w[4], round, word=4),
    )),
    DlSensor("air temperature/humidity", 2, (
        DlValue("temperature_c", lambda w: 175.72 * w[0] / 65536 - 46.85,
                lambda t: round((t + 46.85) * 65536 / 175.72)),
        DlValue("humidity_pct", lambda w: 125 * w[1] / 65536 - 6, lambda h: round((h + 6) * 65536 / 125), word=1),
    )),
    DlSensor("barometric pressure", 1, (
        DlValue("decentlab_air_pressure_pa", lambda w: w[0] * 2, lambda p: round(p / 2)),
    )),
))

MODEL = ModelInfo(
    model="decentlab-dl-pm", kind="dust", vendor="decentlab", title="Decentlab DL-PM particulate matter",
    source="native", codec=CODEC,
    ranges={"pm1_0_ugm3": FieldRange(0, 1000, 0.1), "pm2_5_ugm3": FieldRange(0, 1000, 0.1),
            "pm10_ugm3": FieldRange(0, 1000, 0.1), "battery_v": FieldRange(2.5, 3.6, 0.001)},
    reference="TheThingsNetwork/lorawan-devices vendor/decentlab/dl-pm.js (battery is sensor 0 on this model)",
)
