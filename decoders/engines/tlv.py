"""Tag-length-value frames read and written from one declarative table (Milesight, Elsys).

A frame is a run of `key, value` items: the key is a channel id plus a type byte (Milesight)
or a type byte alone (Elsys), and the pair fixes the value's length. The table says, per key,
that length and which numbers sit where in the value (format, scale, canonical name), so
`decode` and `encode` cannot drift apart. A key in the table without numbers is one we can
size but do not report (device info, history records): it is skipped. A key not in the table
cannot be sized, so the rest of the frame is unreadable: that is a `DecodeError`, never a guess.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from decoders.codec import Decoded, DecodeError, FieldValue, HistoryRecord
from decoders.errors import EncodeError

Hook = Callable[[dict[str, FieldValue], list[str]], None]
EncodeHook = Callable[[dict[str, FieldValue]], dict[str, FieldValue]]


@dataclass(frozen=True, slots=True)
class Value:
    """One number inside an item's value: canonical = raw · mul / div (or a bool for 0/1)."""

    field: str
    fmt: str = "H"
    offset: int = 0
    mul: int = 1
    div: int = 1
    kind: type = float
    sentinels: tuple[tuple[int, str], ...] = ()
    """Raw values that mean "no reading" (e.g. 0xFFFF = collection failed): a warning, no field."""


@dataclass(frozen=True, slots=True)
class Item:
    """One key of the table: its value length and the numbers in it (none: skip it)."""

    key: int
    size: int
    values: tuple[Value, ...] = ()
    name: str = ""
    note: str = ""
    """Warning emitted when a skipped item is met (say what was not decoded)."""
    history: bool = False
    """A stored record: its values (one named `_time`, Unix seconds) become a `HistoryRecord`."""


def item(channel: int, type_: int, size: int, *values: Value, name: str = "", note: str = "",
         history: bool = False) -> Item:
    """A Milesight item keyed by (channel id, type byte)."""
    return Item((channel << 8) | type_, size, values, name, note, history)


def skip(channel: int, sizes: Mapping[int, int], name: str = "") -> tuple[Item, ...]:
    """Items of one channel that are sized but not reported, e.g. device attributes on 0xFF."""
    return tuple(Item((channel << 8) | t, n, (), name or f"{channel:02x}{t:02x}") for t, n in sizes.items())


@dataclass(frozen=True, slots=True)
class _Compiled:
    value: Value
    struct: struct.Struct
    lo: int
    hi: int
    sentinels: Mapping[int, str]


def _limits(fmt: str) -> tuple[int, int]:
    bits = struct.calcsize(fmt) * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if fmt.islower() else (0, (1 << bits) - 1)


@dataclass
class TlvCodec:
    """A TLV codec for one model; `decode`/`encode` follow the Codec protocol."""

    model: str
    kind: str
    items: tuple[Item, ...]
    port: int = 85
    key_size: int = 2
    byteorder: str = "little"
    after_decode: Hook | None = None
    before_encode: EncodeHook | None = None
    extra_fields: Mapping[str, type] = field(default_factory=dict)
    """Fields the hooks add (renamed outputs), for `field_types`."""

    def __post_init__(self) -> None:
        order = "<" if self.byteorder == "little" else ">"
        self._by_key: dict[int, tuple[Item, tuple[_Compiled, ...]]] = {}
        for it in self.items:
            if it.key in self._by_key:
                raise ValueError(f"{self.model}: key {it.key:#x} listed twice")
            compiled = []
            for v in it.values:
                st = struct.Struct(order + v.fmt)
                if v.offset + st.size > it.size:
                    raise ValueError(f"{self.model}: {v.field} does not fit in item {it.key:#x}")
                compiled.append(_Compiled(v, st, *_limits(v.fmt), dict(v.sentinels)))
            self._by_key[it.key] = (it, tuple(compiled))
        types: dict[str, type] = {}
        for it in self.items:
            for v in it.values:
                if not v.field.startswith("_"):
                    types.setdefault(v.field, v.kind)
        types.update(self.extra_fields)
        self.field_types: dict[str, type] = types
        self.fields: tuple[str, ...] = tuple(types)

    def _key_text(self, key: int) -> str:
        return f"{key:0{self.key_size * 2}x}"

    def decode(self, payload: bytes, port: int) -> Decoded:
        if not payload:
            raise DecodeError(f"{self.model}: empty payload")
        fields: dict[str, FieldValue] = {}
        warnings: list[str] = []
        history: list[HistoryRecord] = []
        n, i, ks = len(payload), 0, self.key_size
        while i < n:
            if i + ks > n:
                raise DecodeError(f"{self.model}: {n - i} stray byte(s) at offset {i}, too short for an item key")
            key = int.from_bytes(payload[i:i + ks], "big")
            entry = self._by_key.get(key)
            if entry is None:
                raise DecodeError(
                    f"{self.model}: unknown item {self._key_text(key)} at offset {i}; its length is not "
                    f"known, so the rest of the frame cannot be read")
            it, values = entry
            start = i + ks
            end = start + it.size
            if end > n:
                raise DecodeError(f"{self.model}: item {self._key_text(key)} ({it.name or 'value'}) at offset {i} "
                                  f"needs {it.size} byte(s), {n - start} left: truncated frame")
            if not values and it.note:
                warnings.append(it.note)
            if it.history:
                history.append(self._record(payload, start, values, warnings))
                i = end
                continue
            for c in values:
                raw = c.struct.unpack_from(payload, start + c.value.offset)[0]
                reason = c.sentinels.get(raw)
                if reason is not None:
                    warnings.append(f"{c.value.field}: {reason}")
                    continue
                fields[c.value.field] = _to_value(self.model, c.value, raw)
            i = end
        if self.after_decode is not None:
            self.after_decode(fields, warnings)
        return Decoded(fields, warnings, history)

    def _record(self, payload: bytes, start: int, values: tuple[_Compiled, ...],
                warnings: list[str]) -> HistoryRecord:
        """One history item: `_time` is the record's Unix time, the other values its fields."""
        fields: dict[str, FieldValue] = {}
        time_s = 0
        for c in values:
            raw = c.struct.unpack_from(payload, start + c.value.offset)[0]
            if c.value.field == "_time":
                time_s = raw
                continue
            reason = c.sentinels.get(raw)
            if reason is not None:
                warnings.append(f"history {c.value.field}: {reason}")
                continue
            fields[c.value.field] = _to_value(self.model, c.value, raw)
        return HistoryRecord(time_s, fields)

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        wanted = dict(fields)
        if self.before_encode is not None:
            wanted = self.before_encode(wanted)
        out = bytearray()
        done: set[str] = set()
        for it, values in self._by_key.values():
            names = [c.value.field for c in values]
            if it.history or not names or done.intersection(names) or not all(n in wanted for n in names):
                continue
            buf = bytearray(it.size)
            for c in values:
                c.struct.pack_into(buf, c.value.offset, _to_raw(self.model, c, wanted[c.value.field]))
            out += it.key.to_bytes(self.key_size, "big") + buf
            done.update(names)
        left = sorted(set(wanted) - done)
        if left:
            raise EncodeError(f"{self.model}: cannot encode {', '.join(left)} (not in this model's payload)")
        return bytes(out), self.port


def _to_value(model: str, v: Value, raw: int) -> FieldValue:
    if v.kind is bool:
        if raw not in (0, 1):
            raise DecodeError(f"{model}: {v.field} must be 0 or 1, got {raw}")
        return raw == 1
    if v.kind is int:
        return raw * v.mul // v.div
    return raw * v.mul / v.div


def _to_raw(model: str, c: _Compiled, value: FieldValue) -> int:
    v = c.value
    if v.kind is bool:
        if not isinstance(value, bool):
            raise EncodeError(f"{model}: {v.field} must be a bool, got {value!r}")
        raw = int(value)
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EncodeError(f"{model}: {v.field} must be a number, got {value!r}")
        raw = round(value * v.div / v.mul)
    if not c.lo <= raw <= c.hi:
        raise EncodeError(f"{model}: {v.field}={value!r} is outside what the payload can carry")
    if raw in c.sentinels:
        raise EncodeError(f"{model}: {v.field}={value!r} encodes to a reserved value ({c.sentinels[raw]})")
    return raw


def merge(*groups: Iterable[Item]) -> tuple[Item, ...]:
    """Concatenate item groups; a later item replaces an earlier one with the same key."""
    by_key: dict[int, Item] = {}
    for group in groups:
        for it in group:
            by_key.pop(it.key, None)
            by_key[it.key] = it
    return tuple(by_key.values())
