"""Cells safe to open in a spreadsheet (OWASP CSV injection): one rule for every CSV and xlsx we write.

A cell starting with = + - @, tab or CR (or the full-width forms some spreadsheets also take) would
run as a formula. Such a cell is written with a leading apostrophe, which spreadsheets show as
"text", and `device import` takes it off again (`unneutralise`).
"""

from __future__ import annotations

_FORMULA_START = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def neutralise(cell: str) -> str:
    """`cell` safe to open in a spreadsheet: one more `'` before a formula start (after any `'` already there)."""
    return "'" + cell if cell.lstrip("'")[:1] in _FORMULA_START and cell.lstrip("'") else cell


def unneutralise(cell: str) -> str:
    """The inverse of `neutralise`: `'=x` → `=x`, `''=x` → `'=x`; any other cell unchanged."""
    rest = cell.lstrip("'")
    return cell[1:] if cell[:1] == "'" and rest and rest[0] in _FORMULA_START else cell
