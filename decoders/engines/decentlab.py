"""Decentlab protocol-v2 frames read and written from one declarative sensor table.

Frame: version (1 byte, = 2), device id (2 bytes BE), a bit flag word (2 bytes BE) saying
which of the model's sensors are present, then each present sensor's 16-bit big-endian
words in table order. Each value is a conversion of those words. Source: the per-model
tables of TheThingsNetwork/lorawan-devices vendor/decentlab/*.js and decentlab/decentlab-decoders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeError

VERSION = 2
HEADER = 5


@dataclass(frozen=True, slots=True)
class DlValue:
    """One reported value, computed from the sensor's raw words; `to_raw` inverts it (None: not encodable).

    `to_value` returns a string instead of a number when the words hold no valid reading:
    the string is the warning, and the field is left out.
    """

    field: str
    to_value: Callable[[tuple[int, ...]], float | int | str]
    to_raw: Callable[[float], int] | None = None
    word: int = 0
    kind: type = float


@dataclass(frozen=True, slots=True)
class DlSensor:
    """A sensor slot of the flag word: how many words it sends and the values they hold."""

    name: str
    words: int
    values: tuple[DlValue, ...]
    defaults: tuple[int, ...] = ()
    """Raw words `encode` writes when no field sets them (default all zero)."""


def battery(field_name: str = "battery_v") -> DlSensor:
    """The battery slot every Decentlab model has: one word in mV."""
    return DlSensor("battery", 1, (DlValue(field_name, lambda w: w[0] / 1000, lambda v: round(v * 1000)),))


@dataclass
class DecentlabCodec:
    model: str
    kind: str
    sensors: tuple[DlSensor, ...]
    port: int = 1
    device_id: int = 1
    """Device id written by `encode` (decode ignores it: the registry knows the device)."""
    field_types: dict[str, type] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.sensors) > 16:
            raise ValueError("a Decentlab flag word has 16 bits")
        self.field_types = {v.field: v.kind for s in self.sensors for v in s.values}
        self.fields = tuple(self.field_types)
        self._unknown_bits = 0xFFFF & ~((1 << len(self.sensors)) - 1)

    def decode(self, payload: bytes, port: int) -> Decoded:
        n = len(payload)
        if n < HEADER:
            raise DecodeError(f"{self.model}: {n} byte(s), a Decentlab frame has a {HEADER}-byte header")
        if payload[0] != VERSION:
            raise DecodeError(f"{self.model}: protocol version {payload[0]}, expected {VERSION}")
        flags = int.from_bytes(payload[3:5], "big")
        if flags & self._unknown_bits:
            raise DecodeError(f"{self.model}: flag word {flags:#06x} names sensors this model does not have "
                              f"(it has {len(self.sensors)}); their lengths are unknown")
        present = [s for i, s in enumerate(self.sensors) if flags >> i & 1]
        expected = HEADER + 2 * sum(s.words for s in present)
        if n != expected:
            raise DecodeError(f"{self.model}: flag word {flags:#06x} announces {expected} bytes, got {n}"
                              + (" (truncated)" if n < expected else " (trailing bytes)"))
        fields: dict[str, FieldValue] = {}
        warnings: list[str] = []
        pos = HEADER
        for sensor in present:
            words = tuple(int.from_bytes(payload[pos + 2 * j:pos + 2 * j + 2], "big") for j in range(sensor.words))
            pos += 2 * sensor.words
            for v in sensor.values:
                value = v.to_value(words)
                if isinstance(value, str):
                    warnings.append(f"{v.field}: {value}")
                    continue
                fields[v.field] = bool(value) if v.kind is bool else int(value) if v.kind is int else float(value)
        return Decoded(fields, warnings)

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        unknown = sorted(set(fields) - set(self.field_types))
        if unknown:
            raise EncodeError(f"{self.model}: cannot encode {', '.join(unknown)} (not in this model's payload)")
        flags, body = 0, bytearray()
        for i, sensor in enumerate(self.sensors):
            given = [v for v in sensor.values if v.field in fields]
            if not given:
                continue
            words = list(sensor.defaults or (0,) * sensor.words)
            for v in given:
                if v.to_raw is None:
                    raise EncodeError(f"{self.model}: {v.field} is decode-only")
                value = fields[v.field]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise EncodeError(f"{self.model}: {v.field} must be a number, got {value!r}")
                raw = v.to_raw(float(value))
                if not 0 <= raw <= 0xFFFF:
                    raise EncodeError(f"{self.model}: {v.field}={value!r} is outside what the payload can carry")
                words[v.word] = raw
            flags |= 1 << i
            for w in words:
                body += w.to_bytes(2, "big")
        if not flags:
            raise EncodeError(f"{self.model}: nothing to encode")
        return bytes([VERSION]) + self.device_id.to_bytes(2, "big") + flags.to_bytes(2, "big") + body, self.port
