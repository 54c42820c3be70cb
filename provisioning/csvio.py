"""The provisioning CSV: reading rows with their line numbers, writing devices back in the same columns.

UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8" writes one), comma-separated,
first line the header. Columns other than `id`, `key` and `model` may be left out or empty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from core.device import Device
from core.spreadsheet import neutralise, unneutralise
from provisioning.validate import INSTALL_PARAMS

HEADER: tuple[str, ...] = ("id", "key", "model", "latitude", "longitude", "address", "district", "street",
                           "zone_class", "site", "mount_height_mm", "bin_depth_mm", "dead_zone_mm",
                           "expected_interval_s", "status")
REQUIRED: tuple[str, ...] = ("id", "key", "model")


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (encoding, header); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One data row: `line` is its first line in the file (the header is line 1)."""

    line: int
    values: dict[str, str]
    error: str = ""


def read_rows(path: Path) -> list[CsvRow]:
    """Every non-empty data row; `CsvFormatError` for a file that is not UTF-8 or has a bad header."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(f"{path}: not UTF-8 (byte {exc.start}): save it as 'CSV UTF-8' "
                             "(Excel: File > Save As > CSV UTF-8 (Comma delimited))") from None
    except OSError as exc:
        raise CsvFormatError(f"{path}: cannot read: {exc.strerror}") from None
    # only \r\n, \n and \r end a CSV line (str.splitlines would also split at U+2028, U+0085, \x0c ...)
    return parse_rows(io.StringIO(text, newline=""), str(path))


def parse_rows(lines: Iterable[str], source: str = "csv") -> list[CsvRow]:
    """Rows of CSV text (already decoded); the header must name known columns, including id, key and model."""
    reader = csv.reader(iter(lines))
    try:
        header = [h.strip().lstrip("\ufeff").lower() for h in next(reader)]
    except StopIteration:
        raise CsvFormatError(f"{source}: empty file; the first line must be the header: {','.join(HEADER)}") from None
    except csv.Error as exc:
        raise CsvFormatError(f"{source}: line 1: {exc}") from None
    unknown = [h for h in header if h not in HEADER]
    missing = [h for h in REQUIRED if h not in header]
    doubled = sorted({h for h in header if header.count(h) > 1})
    if unknown or missing or doubled:
        parts = ([f"unknown column(s) {', '.join(map(repr, unknown))}"] if unknown else []) + \
                ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"repeated column(s) {', '.join(doubled)}"] if doubled else [])
        raise CsvFormatError(f"{source}: header: {'; '.join(parts)}; the columns are: {','.join(HEADER)}")
    rows: list[CsvRow] = []
    last_line = reader.line_num
    try:
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                extra = cells[len(header):]
                if any(c.strip() for c in extra):
                    rows.append(CsvRow(line, {}, f"{len(cells)} cells but the header has {len(header)} "
                                       "columns (a comma inside an address needs double quotes)"))
                    continue
            # only spaces are trimmed: a tab or CR reaches validation and is refused by name, never
            # silently dropped ("\t=1" would become the formula "=1")
            rows.append(CsvRow(line, dict(zip(header, (unneutralise(c.strip(" ")) for c in cells), strict=False))))
    except csv.Error as exc:
        raise CsvFormatError(f"{source}: line {reader.line_num}: {exc}") from None
    return rows


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
