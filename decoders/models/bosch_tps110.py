"""Bosch TPS110 Parking Lot Sensor: occupancy on every frame, temperature on the heartbeat.

fPort 1 parking status (1 byte, bit 0 = occupied); fPort 2 heartbeat (status byte, optional
signed °C byte); fPort 3 start-up (17 bytes: debug codes, firmware, reset cause, status in
byte 16); fPorts 4–6 device information, usage and debug (no readings).
Source: TheThingsNetwork/lorawan-devices vendor/bosch/tpl110-0292.js.
"""

from __future__ import annotations

from collections.abc import Mapping

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeError
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

_NO_READINGS = {4: "device information", 5: "device usage", 6: "debug"}
STARTUP_LEN = 17


class BoschTps110Codec:
    model = "bosch-tps110"
    kind = "parking"
    port = 1
    field_types: Mapping[str, type] = {"occupied": bool, "temperature_c": float}
    fields = tuple(field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        n = len(payload)
        if port == 1:
            _need(port, n, (1,))
            return Decoded({"occupied": bool(payload[0] & 0x01)})
        if port == 2:
            _need(port, n, (1, 2))
            fields: dict[str, FieldValue] = {"occupied": bool(payload[0] & 0x01)}
            if n == 2:
                fields["temperature_c"] = float(int.from_bytes(payload[1:2], "big", signed=True))
            return Decoded(fields)
        if port == 3:
            _need(port, n, (STARTUP_LEN,))
            return Decoded({"occupied": bool(payload[16] & 0x01)})
        if port in _NO_READINGS:
            return Decoded({}, [f"fPort {port} ({_NO_READINGS[port]}) carries no readings"])
        raise DecodeError(f"bosch-tps110: unexpected fPort {port}; readings come on fPorts 1–3")

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        unknown = sorted(set(fields) - set(self.field_types))
        if unknown:
            raise EncodeError(f"bosch-tps110: cannot encode {', '.join(unknown)}")
        occupied = fields.get("occupied")
        if not isinstance(occupied, bool):
            raise EncodeError(f"bosch-tps110: occupied must be a bool, got {occupied!r}")
        if "temperature_c" not in fields:
            return bytes([int(occupied)]), 1
        t = fields["temperature_c"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not -128 <= round(t) <= 127:
            raise EncodeError(f"bosch-tps110: temperature_c must be a number in -128..127, got {t!r}")
        return bytes([int(occupied)]) + round(t).to_bytes(1, "big", signed=True), 2


def _need(port: int, n: int, lengths: tuple[int, ...]) -> None:
    if n not in lengths:
        want = " or ".join(map(str, lengths))
        raise DecodeError(f"bosch-tps110: fPort {port} frame has {n} byte(s), expected {want}")


MODEL = ModelInfo(
    model="bosch-tps110", kind="parking", vendor="bosch", title="Bosch TPS110 parking lot sensor",
    source="native", codec=BoschTps110Codec(),
    ranges={"occupied": FieldRange(0, 1, 1), "temperature_c": FieldRange(-40, 85, 1)},
    reference="TheThingsNetwork/lorawan-devices vendor/bosch/tpl110-0292.js, tps110-0292-codec.yaml",
)
