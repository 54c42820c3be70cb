"""The `Reading` (one decoded uplink of one registered device, for storage and rules) and the generic `Point`."""

from __future__ import annotations

from dataclasses import dataclass, field

FieldValue = float | int | bool | str


@dataclass(slots=True)
class Reading:
    """`kind` is the InfluxDB measurement; `fields` are canonical (docs/schema.md).

    `tags` come from the registry (device_id, model, district, zone_class, site) as
    sorted (key, value) pairs, so a device's tag set is hashable and its escaped form
    can be cached. `health` holds the device-health subset plus radio metadata
    (rssi_dbm, snr_db, fcnt, fcnt_gap, time_source), written to `device_health`.
    `history` marks a record the device stored and sent later (written as the field
    `history=true`; live readings carry no such field).
    """

    device_id: str
    kind: str
    time_ns: int
    fields: dict[str, FieldValue]
    tags: tuple[tuple[str, str], ...]
    health: dict[str, FieldValue] = field(default_factory=dict)
    history: bool = False


@dataclass(slots=True, frozen=True)
class Point:
    """One point of any measurement (e.g. `alerts`, `device_info`): what a package that is not the
    pipeline hands to storage. Tags are (key, value) pairs; storage sorts and escapes them, and
    coerces `fields` to the schema's types (`core.schema`)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: dict[str, FieldValue]
    time_ns: int
