"""What Excel does to device sheets, recognised cell by cell: repaired with a note, or refused with the fix.

Excel stores a 15-digit IMEI typed into a General column as a number and shows it as
`8.61234E+14` (the CSV it saves then holds only those six digits); it drops leading zeros of
an all-digit DevEUI; Chinese input methods type full-width digits and letters (`３９．９２`);
copied cells carry trailing or non-breaking spaces. Pure functions: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from core.keys import luhn_ok
from provisioning.columns import STATUS_ALIASES

FREE_TEXT = frozenset({"address", "district", "street", "site"})
"""Columns kept as typed (Chinese punctuation stays), so an exported value imports unchanged."""

_SCIENTIFIC = re.compile(r"\d(?:\.\d+)?[eE]\+?\d{1,2}")
"""How Excel shows a long number: one digit, maybe decimals, E+exponent (`8.66123E+14`). A DevEUI such as
`24e1247100000301` is 16 hex digits and never matches (two digits before the e, a long exponent)."""
_SPACES = "\u00a0\u3000\u200b\u200c\u200d\u2060\ufeff"
TEXT_FORMAT_FIX = ("format the column as Text (右键 → 设置单元格格式 → 文本) before typing or pasting, "
                   "then type the key again from the device label")


class CellRefused(ValueError):
    """A cell Excel has damaged beyond repair; the message says what happened and how to fix the sheet."""


@dataclass(frozen=True, slots=True)
class Repair:
    """One repaired cell: where, what it held, what is imported, and why."""

    line: int
    column: str
    before: str
    after: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.before!r} → {self.after!r} ({self.why})"


@dataclass(frozen=True, slots=True)
class Formula:
    """An .xlsx cell holding a formula whose value the file does not store (Excel stores one; sheets written
    by scripts and other tools often do not). Its value is unknown, so the cell is refused, never read as empty."""

    text: str


def cell_text(value: object) -> str:
    """A cell value (text from a CSV, or a number / date from openpyxl) as text, numbers without '.0'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def repair_cell(name: str, value: object, *, key_kind: str = "key") -> tuple[str, list[str]]:
    """(text to import, what was repaired) for one cell of canonical column `name`.

    `key_kind` is "DevEUI" or "IMEI" when the sheet's column says which the key is.
    Raises `CellRefused` when the true value cannot be recovered.
    """
    notes: list[str] = []
    if isinstance(value, Formula):
        raise CellRefused(f"{value.text[:60]!r} is a formula without a value: type the text "
                          "(or open the file in Excel and save it, which stores each formula's value)")
    if isinstance(value, int | float) and not isinstance(value, bool) and name == "key":
        if isinstance(value, float) and (not value.is_integer() or abs(value) >= 2**53):
            raise CellRefused(f"{value!r}: Excel stored the key as a number and rounded it; {TEXT_FORMAT_FIX}")
        notes.append("the key was stored as a number")
    text = cell_text(value)
    if name in FREE_TEXT:
        return text, notes  # kept exactly; validation trims and checks it like any typed value
    trimmed = text.strip(" \t\r\n" + _SPACES)
    if trimmed != text and text.strip(" ") != trimmed:
        notes.append("invisible spaces removed")
    elif trimmed != text:
        notes.append("spaces around the value removed")
    text = trimmed
    wide = unicodedata.normalize("NFKC", text)
    if wide != text:
        notes.append("full-width characters made ASCII")
        text = wide.strip()
    if name == "key":
        text = _repair_key(text, key_kind, notes)
    elif name == "zone_class" and text.endswith("类"):
        text = text[:-1].strip()
        notes.append("'类' dropped")
    elif name == "status" and text in STATUS_ALIASES:
        text = STATUS_ALIASES[text]
        notes.append("Chinese status word")
    return text, notes


def _repair_key(text: str, key_kind: str, notes: list[str]) -> str:
    if _SCIENTIFIC.fullmatch(text):
        text = _from_scientific(text, key_kind)
        notes.append("Excel scientific notation expanded")
    if not (text.isascii() and text.isdigit()):
        return text
    if key_kind != "DevEUI" and len(text) == 14 and luhn_ok("0" + text):
        notes.append("IMEI lost its leading zero (Excel stored it as a number)")
        return "0" + text
    if key_kind == "DevEUI" and len(text) < 16:
        notes.append(f"DevEUI lost {16 - len(text)} leading zero(s) (Excel stored it as a number)")
        return text.zfill(16)
    return text


def _from_scientific(text: str, key_kind: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    digits = len(number.as_tuple().digits)
    whole = format(number.to_integral_value(), "f")
    if number != number.to_integral_value() or digits < len(whole):
        what = {"DevEUI": "a DevEUI", "IMEI": "an IMEI"}.get(key_kind, "an IMEI/DevEUI")
        raise CellRefused(f"{text!r} is {what} that Excel turned into scientific notation and cut to {digits} "
                          f"significant digits, so the rest of it is lost; {TEXT_FORMAT_FIX}")
    return whole
