"""Import sheets as technicians have them: CSV in UTF-8 (with or without BOM) or GBK/GB18030, or Excel .xlsx.

A CSV that is not UTF-8 is decoded with the encoding charset-normalizer detects (Excel on
Chinese Windows saves "CSV (逗号分隔)" in GBK); GB2312/GBK are read as their superset GB18030.
The sheet says which encoding was used. Headers may be Chinese or English (`provisioning.columns`);
every cell goes through `provisioning.excel_repair`, whose repairs are listed for the user.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

from core.spreadsheet import unneutralise
from provisioning.columns import COLUMNS, KEY_KINDS, Column, HeaderError, header_key, label_of, map_header
from provisioning.csvio import CsvFormatError, CsvRow
from provisioning.excel_repair import CellRefused, Formula, Repair, repair_cell

XLSX_SUFFIXES = (".xlsx", ".xlsm")
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}
_HEADER_SEARCH = 5
"""A header may sit below a title row or two (e.g. "朝阳区积水传感器台账"): the first of this many rows that maps."""


@dataclass(slots=True)
class Sheet:
    """A read import file: data rows (with their line or row number), the header, the encoding, the repairs."""

    source: str
    encoding: str
    columns: list[Column]
    rows: list[CsvRow] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        """Canonical column → how this file names it in messages (`纬度 (latitude)`)."""
        return {c.name: label_of(self.columns, c.name) for c in self.columns}


def read_sheet(path: Path, *, progress: Callable[[int], None] | None = None) -> Sheet:
    """The rows of a CSV or .xlsx file; `CsvFormatError` (with the fix) for a file that cannot be read at all."""
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise CsvFormatError(f"{path}: the old Excel .xls format is not read; save it as .xlsx "
                             "(文件 → 另存为 → Excel 工作簿) or as CSV UTF-8")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CsvFormatError(f"{path}: cannot read: {exc.strerror}") from None
    if suffix in XLSX_SUFFIXES or data[:4] == b"PK\x03\x04":
        return _build(str(path), "xlsx", _xlsx_rows(path), progress)
    text, encoding = decode_csv(data, str(path))
    return parse_csv_text(text, str(path), encoding=encoding, progress=progress)


def parse_csv_text(text: str, source: str = "csv", *, encoding: str = "UTF-8",
                   progress: Callable[[int], None] | None = None) -> Sheet:
    """The rows of CSV text already decoded (what `read_sheet` does after the encoding)."""
    return _build(source, encoding, _csv_rows(text, source), progress)


def decode_csv(data: bytes, source: str = "csv") -> tuple[str, str]:
    """(text, which encoding was used): UTF-8 first, else what charset-normalizer finds plausible, GB family first."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "UTF-8 with BOM"
        except UnicodeDecodeError as exc:
            raise _not_text(source, exc.start + 3) from None
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    plausible = [m.encoding for m in matches]
    gb = [e for e in plausible if e.replace("_", "") in _GB_FAMILY]
    for encoding in dict.fromkeys([*(["gb18030"] if gb else []), *plausible]):
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        if _header_maps(text):
            name = "GB18030" if encoding == "gb18030" else encoding
            return text, f"{name} (not UTF-8; detected by charset-normalizer)"
    raise _not_text(source, first_bad)


def _not_text(source: str, byte: int) -> CsvFormatError:
    return CsvFormatError(f"{source}: neither UTF-8 nor GBK/GB18030 text (byte {byte}): save it as 'CSV UTF-8' "
                          "(Excel: 文件 → 另存为 → CSV UTF-8 (逗号分隔)) or import the .xlsx itself")


def _header_maps(text: str) -> bool:
    for cells in _first_rows(csv.reader(io.StringIO(text, newline=""))):
        try:
            map_header([str(c) for c in cells])
            return True
        except HeaderError:
            continue
    return False


def _first_rows(rows: Iterable[Sequence[object]]) -> Iterator[Sequence[object]]:
    n = 0
    for cells in rows:
        if n >= _HEADER_SEARCH:
            return
        if any(str(c).strip() for c in cells if c is not None):
            n += 1
            yield cells


def _csv_rows(text: str, source: str) -> Iterator[tuple[int, list[object]]]:
    # only \r\n, \n and \r end a CSV line (str.splitlines would also split at U+2028, U+0085, \x0c ...)
    reader = csv.reader(io.StringIO(text, newline=""))
    last_line = 0
    try:
        for cells in reader:
            line, last_line = last_line + 1, reader.line_num
            yield line, list(cells)
    except csv.Error as exc:
        raise CsvFormatError(f"{source}: line {reader.line_num}: {exc}") from None


def _xlsx_rows(path: Path) -> Iterator[tuple[int, list[object]]]:
    """Each row's stored values (`data_only`: a formula's value as Excel computed it); a formula cell
    without a stored value comes as `Formula`, read from a second pass over the formulas themselves."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
        formulas = load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors for a damaged file
        raise CsvFormatError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}: {exc}); "
                             "open it in Excel and save it again") from None
    try:
        rows = zip(book.worksheets[0].iter_rows(values_only=True), formulas.worksheets[0].iter_rows(), strict=False)
        for number, (values, cells) in enumerate(rows, 1):
            yield number, [Formula(str(c.value)) if v is None and c is not None and c.data_type == "f" else v
                           for v, c in zip_longest(values, cells)]
    finally:
        book.close()
        formulas.close()


def _build(source: str, encoding: str, numbered: Iterator[tuple[int, list[object]]],
           progress: Callable[[int], None] | None) -> Sheet:
    header: list[Column] | None = None
    first_error: HeaderError | None = None
    tried = 0
    sheet: Sheet | None = None
    for line, cells in numbered:
        if sheet is None:
            if not any(c is not None and str(c).strip() for c in cells):
                continue
            tried += 1
            try:
                header = map_header(["" if c is None else str(c) for c in cells])
            except HeaderError as exc:
                first_error = first_error or exc
                if tried >= _HEADER_SEARCH:
                    break
                continue
            sheet = Sheet(source, encoding, header)
            continue
        _add_row(sheet, line, cells)
        if progress is not None and len(sheet.rows) % 500 == 0:
            progress(500)
    if sheet is None:
        if first_error is not None:
            raise CsvFormatError(f"{source}: {first_error}")
        raise CsvFormatError(f"{source}: empty file; the first line must be the header, "
                             "e.g. 设备编号,DevEUI,型号,纬度,经度 or id,key,model,latitude,longitude")
    if progress is not None:
        progress(len(sheet.rows) % 500)
    return sheet


def _add_row(sheet: Sheet, line: int, cells: list[object]) -> None:
    if not any(c is not None and str(c).strip() for c in cells):
        return
    width = max(c.index for c in sheet.columns) + 1
    extra = cells[width:]
    if any(c is not None and str(c).strip() for c in extra) and sheet.encoding != "xlsx":
        sheet.rows.append(CsvRow(line, {}, f"{len(cells)} cells but the header has {width} columns "
                                 "(a comma inside an address needs double quotes)"))
        return
    values: dict[str, str] = {}
    problems: list[str] = []
    refused: list[str] = []
    for col in sheet.columns:
        raw = cells[col.index] if col.index < len(cells) else None
        if isinstance(raw, str) and sheet.encoding != "xlsx" and raw.strip()[:1] == "'":
            raw = unneutralise(raw.strip())  # `device export` wrote '=... for a formula-like cell
        label = col.name if header_key(col.label) == header_key(col.name) else f"{col.label} ({col.name})"
        try:
            text, notes = repair_cell(col.name, raw, key_kind=KEY_KINDS.get(header_key(col.label), "key"))
        except CellRefused as exc:
            problems.append(f"{label}: {exc}")
            refused.append(col.name)
            continue
        if col.name == "key" and not text:
            continue
        if col.name == "key" and values.get("key"):
            problems.append(f"{label}: both a DevEUI and an IMEI are given; a device has one key")
            refused.append("key")
            continue
        values[col.name] = text
        if notes:
            sheet.repairs.append(Repair(line, label, "" if raw is None else str(raw), text, "; ".join(notes)))
    sheet.rows.append(CsvRow(line, values, "; ".join(problems), tuple(refused)))


def write_template_xlsx(path: Path, header: Sequence[str], example: Sequence[str]) -> None:
    """An .xlsx with the header (bold, frozen) and the example row; the key column is Text so IMEIs keep every digit."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    ws = book.active
    ws.title = "devices"
    ws.append(list(header))
    numeric = {"latitude", "longitude", "mount_height_mm", "bin_depth_mm", "dead_zone_mm", "expected_interval_s"}
    ws.append([float(v) if name in numeric and v else v for name, v in zip(COLUMNS, example, strict=True)])
    key_col = COLUMNS.index("key") + 1
    for row in range(1, 1001):
        ws.cell(row=row, column=key_col).number_format = "@"
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"
    book.save(path)
