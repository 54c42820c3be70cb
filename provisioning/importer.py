"""Bulk provisioning: check every CSV row before anything is written, then write the good ones in one go."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.device import Device
from provisioning.csvio import CsvRow
from provisioning.validate import BBox, InvalidDevice, check_device


@dataclass(frozen=True, slots=True)
class BadRow:
    """A refused row: its line in the file and every reason."""

    line: int
    device_id: str
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        who = f" ({self.device_id})" if self.device_id else ""
        return f"line {self.line}{who}: " + "; ".join(self.reasons)


@dataclass(slots=True)
class ImportPlan:
    """What an import would write (`good`, in file order) and what it refuses (`bad`)."""

    good: list[Device] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


def plan_import(rows: Sequence[CsvRow], key_owners: Mapping[str, str], *, bbox: BBox | Sequence[float] | None = None,
                progress: Callable[[int], None] | None = None) -> ImportPlan:
    """Validate every row, then refuse an id or key that appears twice in the file or whose key another device has.

    `key_owners` is the registry's key → device id. A row that repeats an earlier one
    exactly is not an error (it would change nothing) and is counted once.
    """
    plan = ImportPlan()
    first_id: dict[str, tuple[int, Device]] = {}
    first_key: dict[str, tuple[int, str]] = {}
    for n, row in enumerate(rows, 1):
        if progress is not None and n % 250 == 0:
            progress(250)
        if row.error:
            plan.bad.append(BadRow(row.line, row.values.get("id", ""), (row.error,)))
            continue
        try:
            device = check_device(row.values, bbox=bbox)
        except InvalidDevice as exc:
            plan.bad.append(BadRow(row.line, row.values.get("id", ""), tuple(str(p) for p in exc.problems)))
            continue
        reasons: list[str] = []
        earlier = first_id.get(device.id)
        if earlier is not None:
            if earlier[1] == device:
                continue
            reasons.append(f"id: {device.id!r} is already on line {earlier[0]}")
        key_seen = first_key.get(device.key)
        if key_seen is not None and key_seen[1] != device.id:
            reasons.append(f"key: {device.key} is already on line {key_seen[0]} (device {key_seen[1]!r})")
        owner = key_owners.get(device.key)
        if owner is not None and owner != device.id:
            reasons.append(f"key: {device.key} is already registered to device {owner!r}")
        if reasons:
            plan.bad.append(BadRow(row.line, device.id, tuple(reasons)))
            continue
        first_id[device.id] = (row.line, device)
        first_key[device.key] = (row.line, device.id)
        plan.good.append(device)
    if progress is not None:
        progress(len(rows) % 250)
    return plan
