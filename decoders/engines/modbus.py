"""Register-map codecs for Modbus devices: the map (addresses, types, scale, byte/word order) is the model.

Pure: the collector reads one block of registers (`table`, `start`, `count`) and hands
them over as bytes, each register big-endian as on the wire; `decode(payload, port=start)`
turns them into fields. Whether a device answers at all is not the codec's business: the
collector reports it as a health uplink (`Uplink.reachable`), which nothing decodes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeError

_WIDTH = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}
_FMT = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "f32": "f"}


@dataclass(frozen=True, slots=True)
class Register:
    """One value: `value = raw × scale`, rounded to `decimals`; `bit` makes it a boolean flag of a u16.

    `word_order` "little" is the CDAB layout of many gauges (low word first); `byte_order`
    "little" swaps the two bytes inside each register (BADC / DCBA).
    """

    name: str
    address: int
    type: Literal["u16", "i16", "u32", "i32", "f32"] = "u16"
    scale: float = 1.0
    decimals: int = 6
    word_order: Literal["big", "little"] = "big"
    byte_order: Literal["big", "little"] = "big"
    bit: int | None = None
    sentinels: Mapping[int, str] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return _WIDTH[self.type]

    def raw_bytes(self, words: list[bytes]) -> bytes:
        """The value's bytes in big-endian order, from its registers as they came off the wire."""
        regs = [w[::-1] if self.byte_order == "little" else w for w in words]
        if self.word_order == "little":
            regs.reverse()
        return b"".join(regs)

    def words(self, big_endian: bytes) -> list[bytes]:
        """Inverse of `raw_bytes`: the value's big-endian bytes as its registers on the wire."""
        regs = [big_endian[i:i + 2] for i in range(0, len(big_endian), 2)]
        if self.word_order == "little":
            regs.reverse()
        return [r[::-1] if self.byte_order == "little" else r for r in regs]


@dataclass
class RegisterMapCodec:
    model: str
    kind: str
    registers: tuple[Register, ...]
    table: Literal["holding", "input"] = "holding"
    transport: str = "modbus"
    field_types: dict[str, type] = field(init=False)

    def __post_init__(self) -> None:
        self.start = min(r.address for r in self.registers)
        self.count = max(r.address + r.width for r in self.registers) - self.start
        self.field_types = {r.name: bool if r.bit is not None else float for r in self.registers}
        self.fields = tuple(self.field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        if port != self.start or len(payload) != self.count * 2:
            raise DecodeError(f"{self.model}: expected {self.count} registers from address {self.start}, "
                              f"got {len(payload) // 2} from {port}")
        fields: dict[str, FieldValue] = {}
        warnings: list[str] = []
        for reg in self.registers:
            off = (reg.address - self.start) * 2
            words = [payload[off + 2 * i:off + 2 * i + 2] for i in range(reg.width)]
            (raw,) = struct.unpack(">" + _FMT[reg.type], reg.raw_bytes(words))
            if reg.bit is not None:
                fields[reg.name] = bool(raw >> reg.bit & 1)
                continue
            if not isinstance(raw, float) and raw in reg.sentinels:
                warnings.append(f"{reg.name}: {reg.sentinels[raw]} (raw {raw})")
                continue
            value = raw * reg.scale
            if not math.isfinite(value):
                warnings.append(f"{reg.name}: register value {raw} is not a finite number")
                continue
            fields[reg.name] = round(float(value), reg.decimals)
        return Decoded(fields, warnings)

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        """The register block (bytes, start address) a device with these values would serve."""
        unknown = sorted(set(fields) - set(self.field_types))
        if unknown:
            raise EncodeError(f"{self.model}: cannot encode {', '.join(unknown)} (not in the register map)")
        block = bytearray(self.count * 2)
        for reg in self.registers:
            off = (reg.address - self.start) * 2
            value = fields.get(reg.name)
            if reg.bit is not None:
                word = int.from_bytes(reg.raw_bytes([bytes(block[off:off + 2])]), "big")
                word |= (1 << reg.bit) if value else 0
                block[off:off + 2] = b"".join(reg.words(word.to_bytes(2, "big")))
                continue
            if value is None:
                if not reg.sentinels:
                    raise EncodeError(f"{self.model}: {reg.name} is needed")
                raw: float | int = next(iter(reg.sentinels))
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise EncodeError(f"{self.model}: {reg.name} must be a number, got {value!r}")
            else:
                raw = value / reg.scale if reg.type == "f32" else round(value / reg.scale)
            try:
                big = struct.pack(">" + _FMT[reg.type], raw)
            except struct.error as exc:
                raise EncodeError(f"{self.model}: {reg.name}={value!r} does not fit a {reg.type}: {exc}") from None
            block[off:off + 2 * reg.width] = b"".join(reg.words(big))
        return bytes(block), self.start


def to_payload(registers: list[int]) -> bytes:
    """Registers as pymodbus returns them (ints) → the codec's payload bytes."""
    return b"".join(r.to_bytes(2, "big") for r in registers)


def to_registers(payload: bytes) -> list[int]:
    return [int.from_bytes(payload[i:i + 2], "big") for i in range(0, len(payload), 2)]
