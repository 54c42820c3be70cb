"""Bulk provisioning: check every CSV row before anything is written, then write the good ones in one go."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.device import Device
from provisioning.csvio import CsvRow, device_row
from provisioning.validate import BBox, InvalidDevice, Problem, check_device


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


def _labelled(problem: Problem, labels: Mapping[str, str]) -> str:
    """A problem naming its column as the file does: `纬度 (latitude): 139.9 is out of range ...`."""
    column = "/".join(labels.get(part, part) for part in problem.field.split("/"))
    return f"{column}: {problem.message}"


def plan_import(rows: Sequence[CsvRow], key_owners: Mapping[str, str], *, bbox: BBox | Sequence[float] | None = None,
                progress: Callable[[int], None] | None = None, labels: Mapping[str, str] | None = None,
                existing: Mapping[str, Device] | None = None) -> ImportPlan:
    """Validate every row, then refuse an id or key that appears twice in the file or whose key another device has.

    `key_owners` is the registry's key → device id; `labels` maps a column to how the file
    names it (for messages). A row that repeats an earlier one exactly is not an error (it
    would change nothing) and is counted once. `existing` (id → registered device) fills the
    columns a sheet does not have for devices it updates: a missing column leaves the field as
    it is, an empty cell in a present column clears it.
    """
    labels = labels or {}
    plan = ImportPlan()
    first_id: dict[str, tuple[int, Device]] = {}
    first_key: dict[str, tuple[int, str]] = {}
    for n, row in enumerate(rows, 1):
        if progress is not None and n % 250 == 0:
            progress(250)
        if row.error and not row.values:
            plan.bad.append(BadRow(row.line, row.values.get("id", ""), (row.error,)))
            continue
        values = row.values
        old = existing.get(values.get("id", "").strip()) if existing else None
        if old is not None:
            values = {**device_row(old), **values}
        try:
            device = check_device(values, bbox=bbox)
        except InvalidDevice as exc:
            reasons = tuple(_labelled(p, labels) for p in exc.problems if p.field not in row.refused)
            plan.bad.append(BadRow(row.line, row.values.get("id", ""), (*reasons, *filter(None, [row.error]))))
            continue
        reasons: list[str] = [row.error] if row.error else []
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


@dataclass(frozen=True, slots=True)
class Change:
    """One field an import would change on an existing device."""

    field: str
    old: object
    new: object


@dataclass(slots=True)
class Preview:
    """What an import would do, for `--dry-run`: devices added, changed field by field, left alone."""

    added: list[Device] = field(default_factory=list)
    changed: list[tuple[str, list[Change]]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _flat(device: Device) -> dict[str, object]:
    out = {f: getattr(device, f) for f in Device.__dataclass_fields__ if f != "install"}
    out.update({f"install.{k}": v for k, v in device.install.items()})
    return out


def preview(devices: Sequence[Device], existing: Mapping[str, Device]) -> Preview:
    """Compare the devices an import would write with the registry's (`existing`: id → device)."""
    out = Preview()
    for device in devices:
        old = existing.get(device.id)
        if old is None:
            out.added.append(device)
        elif old == device:
            out.unchanged.append(device.id)
        else:
            before, after = _flat(old), _flat(device)
            changes = [Change(k.removeprefix("install."), before.get(k), after.get(k))
                       for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
            out.changed.append((device.id, changes))
    return out
