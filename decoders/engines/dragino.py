"""The fixed frame of Dragino's ultrasonic distance sensors (LDDS75, LDDS20, DDS20-LB, …).

fPort 2, big-endian: battery (2 bytes, low 14 bits in mV), distance (2 bytes, mm), interrupt
flag (1 byte); firmware 1.1.4 and later append the optional DS18B20 probe temperature
(2 bytes, signed, 0.1 °C; 0 when no probe is fitted) and a sensor flag (1 byte, bit 0 = an
ultrasonic sensor answered). -LB models add fPort 5 (device status, battery in bytes 5–6) and
fPort 3 (datalog: 11-byte historical records, each battery (2, mV), distance (2, mm), a
probe value (2, not reported), flags (1) and its Unix time (4), all big-endian). Source:
dragino/dragino-end-node-decoder (LDDS75_Decoder_V1.1.4.js, ldds20 decoder.txt,
DDS20-LB_TTN_Decoder.txt); TheThingsNetwork/lorawan-devices vendor/dragino/dds20-lb.js.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from decoders.codec import Decoded, DecodeError, FieldValue, HistoryRecord
from decoders.errors import EncodeError

PORT = 2
_V114 = struct.Struct(">HHBhB")
_V10 = struct.Struct(">HHB")
DATALOG_RECORD = 11
_DATALOG = struct.Struct(">HHhBI")


@dataclass
class DraginoDistanceCodec:
    model: str
    kind: str
    distance_sentinels: Mapping[int, str] = field(default_factory=lambda: {0: "no ultrasonic sensor detected"})
    lb_ports: bool = False
    """The -LB generation: fPort 3 datalog and fPort 5 device status too."""
    port: int = PORT
    field_types: dict[str, type] = field(default_factory=lambda: {
        "distance_mm": float, "battery_v": float, "temperature_c": float, "dragino_interrupt": bool})

    def __post_init__(self) -> None:
        self.fields = tuple(self.field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        if port == PORT:
            return self._measurement(payload)
        if self.lb_ports and port == 5:
            if len(payload) < 7:
                raise DecodeError(f"{self.model}: device status frame has {len(payload)} byte(s), expected 7")
            return Decoded({"battery_v": (int.from_bytes(payload[5:7], "big") & 0x3FFF) / 1000})
        if self.lb_ports and port == 3:
            if not payload or len(payload) % DATALOG_RECORD:
                raise DecodeError(f"{self.model}: datalog frame of {len(payload)} byte(s) is not a whole "
                                  f"number of {DATALOG_RECORD}-byte records")
            return self._datalog(payload)
        ports = "2, 3 or 5" if self.lb_ports else "2"
        raise DecodeError(f"{self.model}: unexpected fPort {port}; this model sends on fPort {ports}")

    def _datalog(self, payload: bytes) -> Decoded:
        """fPort 3: one `HistoryRecord` per 11-byte record, at the record's own time."""
        history: list[HistoryRecord] = []
        warnings: list[str] = []
        for (bat, distance, _probe, _flags, time_s) in _DATALOG.iter_unpack(payload):
            fields: dict[str, FieldValue] = {"battery_v": (bat & 0x3FFF) / 1000}
            if distance in self.distance_sentinels:
                warnings.append(f"history distance_mm: {self.distance_sentinels[distance]} (raw {distance})")
            else:
                fields["distance_mm"] = float(distance)
            history.append(HistoryRecord(time_s, fields))
        return Decoded({}, warnings, history)

    def _measurement(self, payload: bytes) -> Decoded:
        n = len(payload)
        if n == _V114.size:
            bat, distance, interrupt, temp, sensor_flag = _V114.unpack(payload)
        elif n == _V10.size:
            (bat, distance, interrupt), temp, sensor_flag = _V10.unpack(payload), 0, 1
        else:
            raise DecodeError(f"{self.model}: measurement frame has {n} byte(s), expected 8 (firmware 1.1.4+) "
                              f"or 5 (firmware 1.0)")
        fields: dict[str, FieldValue] = {"battery_v": (bat & 0x3FFF) / 1000}
        warnings: list[str] = []
        if not sensor_flag & 0x01:
            warnings.append("distance_mm: no ultrasonic sensor detected (sensor flag 0)")
        elif distance in self.distance_sentinels:
            warnings.append(f"distance_mm: {self.distance_sentinels[distance]} (raw {distance})")
        else:
            fields["distance_mm"] = float(distance)
        if temp:
            fields["temperature_c"] = temp / 10
        fields["dragino_interrupt"] = bool(interrupt & 0x01)
        return Decoded(fields, warnings)

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        unknown = sorted(set(fields) - set(self.field_types))
        if unknown:
            raise EncodeError(f"{self.model}: cannot encode {', '.join(unknown)} (not in this model's payload)")
        if "battery_v" not in fields:
            raise EncodeError(f"{self.model}: battery_v is needed, every measurement frame carries it")
        bat = _raw(self.model, "battery_v", fields["battery_v"], 1000, 0, 0x3FFF)
        distance = 0
        if "distance_mm" in fields:
            distance = _raw(self.model, "distance_mm", fields["distance_mm"], 1, 0, 0xFFFF)
            if distance in self.distance_sentinels:
                raise EncodeError(f"{self.model}: distance {distance} mm is a reserved value "
                                  f"({self.distance_sentinels[distance]})")
        temp = 0
        if "temperature_c" in fields:
            temp = _raw(self.model, "temperature_c", fields["temperature_c"], 10, -0x8000, 0x7FFF)
            if temp == 0:
                raise EncodeError(f"{self.model}: 0.0 °C cannot be sent, this frame uses 0 for 'no probe'")
        interrupt = fields.get("dragino_interrupt", False)
        if not isinstance(interrupt, bool):
            raise EncodeError(f"{self.model}: dragino_interrupt must be a bool, got {interrupt!r}")
        flag = 1 if "distance_mm" in fields else 0
        return _V114.pack(bat, distance, int(interrupt), temp, flag), PORT


def _raw(model: str, name: str, value: FieldValue, scale: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(f"{model}: {name} must be a number, got {value!r}")
    raw = round(value * scale)
    if not lo <= raw <= hi:
        raise EncodeError(f"{model}: {name}={value!r} is outside what the payload can carry")
    return raw
