"""Which lines of a batch InfluxDB refused, read from its error text (pure; the writer acts on it).

InfluxDB 1.x and 2.x name only the first refused point of a kind (`field type conflict:
input field "x" on measurement "m" is type float, ...`) and count the rest in `dropped=N`;
unparseable lines are quoted whole (`unable to parse '<line>': ...`); 3.x lists every
refused line. What cannot be pinned down here the writer finds by resending or bisecting.
"""

from __future__ import annotations

import re

from storage.errors import PermanentWriteError
from storage.lineprotocol import escape_field_key, parse_line

_CONFLICT = re.compile(r'input field "(?P<field>.*?)" on measurement "(?P<measurement>.*?)" is type '
                       r"(?P<type>\w+), already exists as type (?P<existing>\w+)")
_INVALID_FIELD = re.compile(r'invalid field name: input field "(?P<field>.*?)" on measurement '
                            r'"(?P<measurement>.*?)" is invalid')
_INVALID_TAG = re.compile(r'invalid tag key: input tag "(?P<tag>.*?)" on measurement "(?P<measurement>.*?)" is invalid')
_UNPARSEABLE = "unable to parse '"


def _unparseable(lines: list[bytes], text: str) -> set[int]:
    if _UNPARSEABLE not in text:
        return set()
    index: dict[str, int] = {}
    for i, line in enumerate(lines):
        index.setdefault(line.lstrip(b" \t\0").decode("utf-8", "replace"), i)
    found: set[int] = set()
    start = text.find(_UNPARSEABLE)
    while start != -1:
        begin = start + len(_UNPARSEABLE)
        following = text.find(_UNPARSEABLE, begin)
        limit = len(text) if following == -1 else following
        end = text.find("': ", begin, limit)
        while end != -1:
            i = index.get(text[begin:end])
            if i is not None:
                found.add(i)
                break
            end = text.find("': ", end + 1, limit)
        start = following
    return found


def _lines_with(lines: list[bytes], measurement: str, *, field: str | None = None, field_type: str | None = None,
                tag: str | None = None) -> set[int]:
    name = field if field is not None else tag
    assert name is not None
    needle = escape_field_key(name).encode("utf-8", "replace")
    found = set()
    for i, line in enumerate(lines):
        if needle not in line and name.encode("utf-8", "replace") not in line:
            continue
        try:
            parsed = parse_line(line)
        except ValueError:
            continue
        if parsed.measurement != measurement:
            continue
        if field is not None:
            have = parsed.fields.get(field)
            if have is not None and (field_type is None or have[0] == field_type):
                found.add(i)
        elif tag in parsed.tags:
            found.add(i)
    return found


def identify_rejected(lines: list[bytes], error: PermanentWriteError) -> set[int]:
    """Indices into `lines` that `error` shows InfluxDB refused; may be fewer than it refused, never a guess."""
    found: set[int] = set()
    if error.line_errors:
        index = {line.decode("utf-8", "replace"): i for i, line in enumerate(lines)}
        for number, original, _ in error.line_errors:
            i = index.get(original.rstrip("\n"))
            if i is None and number is not None and 1 <= number <= len(lines):
                i = number - 1
            if i is not None:
                found.add(i)
    text = error.text
    found |= _unparseable(lines, text)
    for match in _CONFLICT.finditer(text):
        found |= _lines_with(lines, match["measurement"], field=match["field"], field_type=match["type"])
    for match in _INVALID_FIELD.finditer(text):
        found |= _lines_with(lines, match["measurement"], field=match["field"])
    for match in _INVALID_TAG.finditer(text):
        found |= _lines_with(lines, match["measurement"], tag=match["tag"])
    return found
