"""Device keys: DevEUI, IMEI, OneNET device ids and Modbus addresses, normalised and checked."""

from __future__ import annotations

import re

_HEX16 = re.compile(r"[0-9a-f]{16}")
_MODBUS = re.compile(r"[A-Za-z0-9.\-]+:\d{1,5}/\d{1,3}")
_ONENET = re.compile(r"onenet:([A-Za-z0-9_.\-]{1,64})", re.IGNORECASE)
ONENET_PREFIX = "onenet:"


class DeviceKeyError(ValueError):
    """A device key in a form nobody accepts; the message shows the accepted forms."""


def normalise_deveui(text: str) -> str:
    """`00-11-AA-...`, `0011aa...`, upper or lower case → 16 lowercase hex digits."""
    cleaned = re.sub(r"[\s:\-]", "", text).lower()
    if not _HEX16.fullmatch(cleaned):
        raise DeviceKeyError(
            f"DevEUI {text!r}: expected 16 hex digits, e.g. 70b3d57ed0001234 or 70-B3-D5-7E-D0-00-12-34")
    return cleaned


def luhn_ok(digits: str) -> bool:
    """True when the last digit is the Luhn check digit of the others (IMEI's check digit)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def normalise_imei(text: str) -> str:
    """15 digits with a valid Luhn check digit (spaces and dashes allowed on input)."""
    cleaned = re.sub(r"[\s\-]", "", text)
    if not (cleaned.isascii() and cleaned.isdigit() and len(cleaned) == 15):
        raise DeviceKeyError(f"IMEI {text!r}: expected 15 digits, e.g. 866123456789017")
    if not luhn_ok(cleaned):
        raise DeviceKeyError(f"IMEI {text!r}: the check digit (last digit) is wrong for the first 14 digits")
    return cleaned


def onenet_key(dev_id: object) -> str:
    """The registry key of a OneNET device named by its `dev_id` (or new-platform device name): `onenet:<id>`."""
    text = str(dev_id).strip()
    if isinstance(dev_id, bool) or not _ONENET.fullmatch(ONENET_PREFIX + text):
        raise DeviceKeyError(
            f"OneNET dev_id {text[:70]!r}: expected 1-64 letters, digits, '_', '.' or '-', e.g. 504920000")
    return ONENET_PREFIX + text


def normalise_key(text: str) -> str:
    """Any accepted device key: DevEUI, IMEI, OneNET `onenet:<dev_id>` or Modbus `host:port/unit`."""
    t = text.strip()
    if _MODBUS.fullmatch(t):
        return t.lower()
    if t[:7].lower() == ONENET_PREFIX:
        return onenet_key(t[7:])
    digits = re.sub(r"[\s\-]", "", t)
    if digits.isascii() and digits.isdigit() and len(digits) == 15:
        return normalise_imei(t)
    try:
        return normalise_deveui(t)
    except DeviceKeyError:
        raise DeviceKeyError(
            f"device key {text!r}: expected a DevEUI (16 hex digits), an IMEI (15 digits), "
            "a OneNET device onenet:<dev_id> or a Modbus address host:port/unit") from None
