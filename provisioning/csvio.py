"""The provisioning CSV: its columns, a read row, and writing devices back in the import columns.

Reading (CSV in any encoding technicians have, .xlsx, Chinese headers, Excel artefacts) is
`provisioning.sheet`; columns other than `id`, `key` and `model` may be left out or empty.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from core.device import Device
from provisioning.columns import COLUMNS
from provisioning.validate import INSTALL_PARAMS

HEADER: tuple[str, ...] = COLUMNS


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (encoding, header); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: `line` is its first line in the file (CSV) or its row number (.xlsx); `error` refuses it whole."""

    line: int
    values: dict[str, str]
    error: str = ""
    refused: tuple[str, ...] = ()
    """Columns whose cell was refused (the reason is in `error`); validation does not report them again."""


# Cells a spreadsheet would run as a formula (OWASP CSV injection): = + - @, tab and CR, and the
# full-width forms some spreadsheets also take. Such a cell is written with a leading apostrophe,
# which spreadsheets show as "text", and `device import` takes it off again.
_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def neutralise(cell: str) -> str:
    """`cell` safe to open in a spreadsheet: one more `'` before a formula start (after any `'` already there)."""
    return "'" + cell if cell.lstrip("'")[:1] in _FORMULA_START and cell.lstrip("'") else cell


def unneutralise(cell: str) -> str:
    """The inverse of `neutralise`: `'=x` → `=x`, `''=x` → `'=x`; any other cell unchanged."""
    rest = cell.lstrip("'")
    return cell[1:] if cell[:1] == "'" and rest and rest[0] in _FORMULA_START else cell


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))


def device_row(device: Device) -> dict[str, str]:
    """One device as CSV cells, in the `HEADER` columns; `check_device` of it gives the device back."""
    row = {
        "id": device.id, "key": device.key, "model": device.model, "latitude": _number(device.latitude),
        "longitude": _number(device.longitude), "address": device.address, "district": device.district,
        "street": device.street, "zone_class": device.zone_class, "site": device.site,
        "expected_interval_s": str(device.expected_interval_s), "status": device.status,
    }
    for name in INSTALL_PARAMS:
        row[name] = _number(device.install.get(name))
    return row


def write_csv(devices: Iterable[Device], out: TextIO) -> int:
    """Write the header and one row per device; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\r\n")
    writer.writeheader()
    n = 0
    for device in devices:
        writer.writerow({k: neutralise(v) for k, v in device_row(device).items()})
        n += 1
    return n
