"""Fixed-layout NB-IoT payloads (the part inside `collectors/nbiot/frame.py`'s envelope), table-driven.

The frame's message type is the codec's `port`: `DATA` (0x01) is a binary measurement
report laid out by a table of `Item`s; `PLATFORM_JSON` (0) is the already-decoded form an
operator platform (CTWing product profile, OneNET thing model) pushes, a JSON object of
profile property names mapped to canonical fields by the model.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeError

DATA = 0x01
PLATFORM_JSON = 0


@dataclass(frozen=True, slots=True)
class Item:
    """One field of the binary report: struct format char, divisor, raw values that mean 'no value'."""

    name: str
    fmt: str
    scale: float = 1.0
    sentinels: Mapping[int, str] = field(default_factory=dict)
    typ: type = float


@dataclass
class NbiotStructCodec:
    """Decode and encode one model's report; `ack_requested` is whether the device waits for an ack."""

    model: str
    kind: str
    items: tuple[Item, ...]
    profile: Mapping[str, str]
    """Platform profile property name → canonical field (values already in canonical units)."""
    ack_requested: bool = False
    transport: str = "nbiot"

    def __post_init__(self) -> None:
        self._struct = struct.Struct(">" + "".join(i.fmt for i in self.items))
        self.field_types = {i.name: i.typ for i in self.items}
        self.fields = tuple(self.field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        if port == PLATFORM_JSON:
            return self._decode_json(payload)
        if port != DATA:
            raise DecodeError(f"{self.model}: message type 0x{port:02x} is not a measurement report "
                              f"(0x{DATA:02x})")
        if len(payload) != self._struct.size:
            raise DecodeError(f"{self.model}: report has {len(payload)} byte(s), expected {self._struct.size}")
        fields: dict[str, FieldValue] = {}
        warnings: list[str] = []
        for item, raw in zip(self.items, self._struct.unpack(payload), strict=True):
            if raw in item.sentinels:
                warnings.append(f"{item.name}: {item.sentinels[raw]} (raw {raw})")
                continue
            value = raw / item.scale if item.scale != 1 else raw
            fields[item.name] = item.typ(round(value, 6))
        return Decoded(fields, warnings)

    def _decode_json(self, payload: bytes) -> Decoded:
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"{self.model}: platform-decoded payload is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise DecodeError(f"{self.model}: platform-decoded payload is not a JSON object")
        fields: dict[str, FieldValue] = {}
        warnings: list[str] = []
        for prop, name in self.profile.items():
            if prop not in obj:
                continue
            value = obj[prop]
            if isinstance(value, bool) or not isinstance(value, int | float):
                warnings.append(f"{name}: profile property {prop!r} is {value!r}, not a number")
                continue
            fields[name] = self.field_types.get(name, float)(value)
        if not fields:
            raise DecodeError(f"{self.model}: none of the profile properties {', '.join(self.profile)} "
                              f"in the platform payload (keys: {', '.join(map(str, obj)) or 'none'})")
        return Decoded(fields, warnings)

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        unknown = sorted(set(fields) - set(self.field_types))
        if unknown:
            raise EncodeError(f"{self.model}: cannot encode {', '.join(unknown)} (not in this model's report)")
        raws: list[int] = []
        for item in self.items:
            if item.name not in fields:
                if not item.sentinels:
                    raise EncodeError(f"{self.model}: {item.name} is needed, every report carries it")
                raws.append(next(iter(item.sentinels)))
                continue
            value = fields[item.name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise EncodeError(f"{self.model}: {item.name} must be a number, got {value!r}")
            raw = round(value * item.scale)
            if raw in item.sentinels:
                raise EncodeError(f"{self.model}: {item.name}={value!r} encodes to a reserved value")
            raws.append(raw)
        try:
            return self._struct.pack(*raws), DATA
        except struct.error as exc:
            raise EncodeError(f"{self.model}: a value is outside what the report can carry: {exc}") from None

    def encode_json(self, fields: Mapping[str, FieldValue]) -> bytes:
        """The platform-decoded form of `fields` (what CTWing pushes for a product with a profile)."""
        back = {name: prop for prop, name in self.profile.items()}
        return orjson.dumps({back[k]: v for k, v in fields.items() if k in back})
