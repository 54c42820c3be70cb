"""The figures as CSV (UTF-8 with BOM, so Excel shows Chinese district names) and as an xlsx sheet.

Text cells go through `core.spreadsheet.neutralise` in both, and are typed as text in the xlsx, so a
district like `=HYPERLINK(...)` is shown, never run as a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from core.spreadsheet import neutralise
from report.figures import COLUMNS, Figures, row

PERCENT = ("online_rate", "accuracy_rate")


def write_csv(path: Path, figures: Sequence[Figures]) -> None:
    """One row per figures line; rates as fractions with 6 decimals, empty where undefined."""
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for f in figures:
            w.writerow([_cell(v) for v in row(f).values()])


def write_xlsx(path: Path, figures: Sequence[Figures], title: str) -> None:
    """One sheet: a title line, the header, one row per figures line; rates formatted as percentages."""
    # imported here, not at the top: openpyxl (and numpy through it) costs ~0.4 s, which every
    # `urbansense` command, `run` included, would otherwise pay at start-up
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "figures"
    ws.append([title])
    ws["A1"].font = Font(bold=True)
    ws.append(list(COLUMNS))
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for f in figures:
        ws.append([neutralise(v) if isinstance(v, str) else v for v in row(f).values()])
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # openpyxl would type a leading "=" as a formula
        for name in PERCENT:
            ws.cell(row=ws.max_row, column=COLUMNS.index(name) + 1).number_format = "0.00%"
    ws.freeze_panes = "C3"
    wb.save(path)


def _cell(v: object) -> object:
    if v is None:
        return ""
    if isinstance(v, str):
        return neutralise(v)
    if isinstance(v, float):
        return f"{v:.6f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:.0f}"
    return v
