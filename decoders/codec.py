"""The codec contract: payload bytes in, canonical fields out, and back again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

FieldValue = float | int | bool | str


class DecodeError(ValueError):
    """A payload this codec cannot decode; the message says what is wrong. Never retried."""


@dataclass(slots=True, frozen=True)
class HistoryRecord:
    """A measurement the device stored and sends later (Milesight history, Dragino datalog).

    `time_s` is the record's own time as the device wrote it (Unix seconds); `fields` are
    canonical, as for a live reading.
    """

    time_s: int
    fields: dict[str, FieldValue]


@dataclass(slots=True)
class Decoded:
    """Canonical fields (names and units of docs/schema.md), non-fatal warnings, and stored records."""

    fields: dict[str, FieldValue]
    warnings: list[str] = field(default_factory=list)
    history: list[HistoryRecord] = field(default_factory=list)


class Codec(Protocol):
    """One device model. `decode` raises only `DecodeError`; `encode` is its inverse for simulation."""

    model: str
    kind: str

    def decode(self, payload: bytes, port: int) -> Decoded: ...

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        """Return (payload, fPort) that decodes back to `fields`."""
        ...
