"""Nwave NPS405 parking sensor: occupancy with the previous state's duration, heartbeat health.

fPort 1 status (1 byte: bit 0 occupied, bits 1–7 the previous state's duration in a
compressed minute scale); fPort 2 heartbeat (status, battery 2500 + 4·n mV, signed
temperature n/2 + 10 °C; later firmware appends bytes this layout does not name);
fPort 3 start-up (firmware, reset cause, status in byte 4); fPort 6 debug; fPort 10 tag
registration (status, tag data). Source: TheThingsNetwork/lorawan-devices vendor/nwave/nps405.js.
"""

from __future__ import annotations

from collections.abc import Mapping

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeError
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

OVERFLOW = 127


def duration_min(code: int) -> float:
    """Minutes from the 7-bit code: exact below 90, then 5-minute steps to 235, hourly to 600."""
    if code < 90:
        return float(code)
    if code < 120:
        return 90.0 + (code - 90) * 5
    return 240.0 + (code - 120) * 60


def duration_code(minutes: float) -> int:
    """The code whose duration is nearest to `minutes` (below the overflow code)."""
    return min(range(OVERFLOW), key=lambda c: abs(duration_min(c) - minutes))


class NwaveNps405Codec:
    model = "nwave-nps405"
    kind = "parking"
    port = 1
    field_types: Mapping[str, type] = {
        "occupied": bool, "nwave_previous_state_min": float, "battery_v": float, "temperature_c": float}
    fields = tuple(field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        n = len(payload)
        if port in (1, 10):
            _need(port, n, 1 if port == 1 else 5)
            status = payload[0]
            if port == 10 and not status & 0x01:
                return Decoded({}, ["tag registration without an occupancy status"])
            fields: dict[str, FieldValue] = {"occupied": bool(status & 0x01)}
            code = status >> 1
            if code == OVERFLOW:
                return Decoded(fields, ["nwave_previous_state_min: previous state lasted longer than 660 min"])
            fields["nwave_previous_state_min"] = duration_min(code)
            return Decoded(fields)
        if port == 2:
            _need(port, n, 3)
            return Decoded({
                "occupied": bool(payload[0] & 0x01),
                "battery_v": (2500 + payload[1] * 4) / 1000,
                "temperature_c": int.from_bytes(payload[2:3], "big", signed=True) / 2 + 10,
            })
        if port == 3:
            _need(port, n, 5)
            return Decoded({"occupied": bool(payload[4] & 0x01)})
        if port == 6:
            return Decoded({}, ["fPort 6 (debug) carries no readings"])
        raise DecodeError(f"nwave-nps405: unexpected fPort {port}; readings come on fPorts 1, 2, 3 and 10")

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        unknown = sorted(set(fields) - set(self.field_types))
        if unknown:
            raise EncodeError(f"nwave-nps405: cannot encode {', '.join(unknown)}")
        occupied = fields.get("occupied")
        if not isinstance(occupied, bool):
            raise EncodeError(f"nwave-nps405: occupied must be a bool, got {occupied!r}")
        if "battery_v" in fields or "temperature_c" in fields:
            if "nwave_previous_state_min" in fields:
                raise EncodeError("nwave-nps405: a heartbeat carries no previous-state duration")
            bat = _raw("battery_v", fields.get("battery_v"), lambda v: (v * 1000 - 2500) / 4, 0, 255)
            temp = _raw("temperature_c", fields.get("temperature_c"), lambda v: (v - 10) * 2, -128, 127)
            return bytes([int(occupied), bat]) + temp.to_bytes(1, "big", signed=True), 2
        minutes = fields.get("nwave_previous_state_min", 0.0)
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 <= minutes <= 600:
            raise EncodeError(f"nwave-nps405: nwave_previous_state_min must be 0..600, got {minutes!r}")
        return bytes([duration_code(minutes) << 1 | int(occupied)]), 1


def _raw(name: str, value: FieldValue | None, to_raw, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(f"nwave-nps405: a heartbeat needs {name} as a number, got {value!r}")
    raw = round(to_raw(value))
    if not lo <= raw <= hi:
        raise EncodeError(f"nwave-nps405: {name}={value!r} is outside what the payload can carry")
    return raw


def _need(port: int, n: int, minimum: int) -> None:
    if n < minimum:
        raise DecodeError(f"nwave-nps405: fPort {port} frame has {n} byte(s), expected at least {minimum}")


MODEL = ModelInfo(
    model="nwave-nps405", kind="parking", vendor="nwave", title="Nwave NPS405 parking sensor",
    source="native", codec=NwaveNps405Codec(),
    ranges={"occupied": FieldRange(0, 1, 1), "battery_v": FieldRange(2.5, 3.52, 0.004),
            "temperature_c": FieldRange(-40, 73.5, 0.5)},
    reference="TheThingsNetwork/lorawan-devices vendor/nwave/nps405.js, nps405-codec.yaml",
)
