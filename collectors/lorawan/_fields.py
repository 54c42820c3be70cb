"""Typed reads from a decoded protobuf-JSON object, each failure an `EnvelopeError` that names the field.

Both network servers marshal protobuf as JSON, where zero values may be omitted,
uint32 arrive as numbers, 64-bit integers as strings and bytes as base64.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any

import orjson

from core.uplink import EnvelopeError

_HEX16 = re.compile(r"[0-9A-Fa-f]{16}", re.ASCII)
HEX_DIGITS = "0123456789abcdefABCDEF"
"""`len(s) == 16 and not s.strip(HEX_DIGITS)` is the cheap form of `_HEX16.fullmatch(s)`."""
_URLSAFE_TO_STD = str.maketrans("-_", "+/")
_MISSING: Any = object()
NUMBER = (int, float)
"""Exact types of a JSON number from orjson (`type(x) in NUMBER` leaves out bool)."""


def load_object(payload: bytes, hint: str) -> dict[str, Any]:
    """The payload as a JSON object; `bad_json` (with `hint`) when it is not one."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise EnvelopeError("bad_json", f"{e} ({hint}; {len(payload)} bytes)") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("bad_json", f"top level is a JSON {type(doc).__name__}, not an object")
    return doc


def obj(parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> dict[str, Any]:
    """A nested object; absent → `missing_field` when required, else `{}`."""
    value = parent.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise EnvelopeError("missing_field", f"{path} is absent")
        return {}
    if not isinstance(value, dict):
        raise EnvelopeError("bad_field", f"{path} is a {type(value).__name__}, not an object")
    return value


def array(parent: dict[str, Any], key: str, path: str) -> list[Any]:
    """A list; absent (protobuf-JSON omits empty repeated fields) → `[]`."""
    value = parent.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise EnvelopeError("bad_field", f"{path} is a {type(value).__name__}, not an array")
    return value


def text(parent: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    """A string; absent → `missing_field` when required, else None."""
    value = parent.get(key)
    if value is None:
        if required:
            raise EnvelopeError("missing_field", f"{path} is absent")
        return None
    if not isinstance(value, str):
        raise EnvelopeError("bad_field", f"{path} is a {type(value).__name__}, not a string")
    return value


def uint(parent: dict[str, Any], key: str, path: str, maximum: int) -> int:
    """An unsigned integer (a JSON number or a decimal string); absent → 0 (omitted zero)."""
    value = parent.get(key)
    if value is None:
        return 0
    if type(value) is int:
        n = value
    elif (isinstance(value, str) and value.isascii() and value.isdigit()) or (
            type(value) is float and value.is_integer()):
        n = int(value)
    else:
        raise EnvelopeError("bad_field", f"{path} is {_show(value)}, not an unsigned integer")
    if not 0 <= n <= maximum:
        raise EnvelopeError("bad_field", f"{path} = {n} is outside 0..{maximum}")
    return n


def number(parent: dict[str, Any], key: str, path: str) -> float | None:
    """A finite JSON number as float; absent → None."""
    value = parent.get(key)
    if value is None:
        return None
    if type(value) is int or type(value) is float:
        return float(value)
    raise EnvelopeError("bad_field", f"{path} is {_show(value)}, not a number")


def base64_bytes(parent: dict[str, Any], key: str, path: str) -> bytes:
    """Bytes from base64 (standard or URL-safe, padding optional, as protobuf-JSON allows); absent → b""."""
    value = parent.get(key)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise EnvelopeError("bad_base64", f"{path} is a {type(value).__name__}, not a base64 string")
    try:  # the common case: standard alphabet with padding
        return binascii.a2b_base64(value, strict_mode=True)
    except ValueError:
        pass
    if not value.isascii():
        raise EnvelopeError("bad_base64", f"{path} has non-ASCII characters")
    s = value.translate(_URLSAFE_TO_STD)
    if len(s) % 4:
        s += "=" * (-len(s) % 4)
    try:
        return binascii.a2b_base64(s, strict_mode=True)
    except binascii.Error as e:
        raise EnvelopeError("bad_base64", f"{path} = {value[:40]!r}: {e}") from None


def dev_eui(value: str, path: str) -> str:
    """A DevEUI as 16 lowercase hex digits; `bad_deveui` otherwise."""
    if len(value) == 16 and not value.strip(HEX_DIGITS):
        return value.lower()
    if not _HEX16.fullmatch(value):
        raise EnvelopeError("bad_deveui", f"{path} = {value[:40]!r} is not 16 hex digits")
    return value.lower()


def _show(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def quietly(read: Callable[..., str | None], *args: Any) -> str | None:
    """`read(*args)`, or None where it raises `EnvelopeError`: for naming the device of a refused envelope."""
    try:
        return read(*args)
    except EnvelopeError:
        return None
