"""Control and format characters in text from operators and devices, by one definition: found (to
refuse them where text comes in) and escaped (wherever such text is printed to a terminal).

Why: an ESC sequence clears or recolours the operator's screen, U+202E reverses what follows, a
zero-width character makes two ids look alike, a line break forges a line. U+0000 is the one the
databases cannot hold (`core.database` stores it as `\\x00`); the others would reach a terminal raw.
"""

from __future__ import annotations

import unicodedata

REFUSED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""Categories no typed-in value may hold: controls (C0, DEL, C1), format (bidi overrides, zero-width),
line and paragraph separators, surrogates, private use, unassigned."""
ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Categories shown as escapes on output: those a terminal acts on or shows as nothing."""


def describe_char(c: str) -> str:
    """`U+202E RIGHT-TO-LEFT OVERRIDE`."""
    return f"U+{ord(c):04X} {unicodedata.name(c, 'control character')}"


def bad_character(value: str, allow: str = "") -> str | None:
    """The first character of `value` in a `REFUSED` category and not in `allow`, described, or None."""
    if value.isprintable():
        return None
    for c in value:
        if c not in allow and unicodedata.category(c) in REFUSED:
            return describe_char(c)
    return None


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def printable(value: object) -> str:
    """`value` as text for a terminal: each control, format or separator character written as its
    escape (`\\x1b`, `\\u202e`, `\\n`; the same form as a stored `\\x00`), everything else unchanged.
    Ordinary text (Chinese, the ideographic space U+3000 included) passes untouched and fast."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(c) if unicodedata.category(c) in ESCAPED else c for c in text)
