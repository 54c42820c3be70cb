"""Finding a device the way technicians name it: its id, the DevEUI/IMEI on its label, or a unique prefix of either.

`24-E1-24-71-3C-21-00-01`, `24e124713c210001` and `24:E1:24:71:3C:21:00:01` are the same key;
`WL-CY-00` finds WL-CY-001 when no other id starts so. Exact matches win over prefixes.
"""

from __future__ import annotations

import difflib
import re

from core.device import Device
from core.keys import DeviceKeyError, normalise_key
from provisioning.registry import Registry

_SEPARATORS = re.compile(r"[\s:\-]")


class DeviceNotFound(LookupError):
    """No device answers to the text; the message suggests close ids."""


class AmbiguousDevice(LookupError):
    """Several devices start with the text; `candidates` lists them."""

    def __init__(self, message: str, candidates: list[Device]) -> None:
        super().__init__(message)
        self.candidates = candidates


def key_prefix(text: str) -> str | None:
    """The text as the start of a stored key (separators dropped, lower case), or None if it cannot be one."""
    cleaned = _SEPARATORS.sub("", text.strip()).lower()
    return cleaned if cleaned and re.fullmatch(r"[0-9a-f]+", cleaned) else None


def find_device(reg: Registry, text: str, *, prefix: bool = True) -> Device:
    """The one device `text` names: exact id, then exact key in any accepted form, then (if `prefix`) a unique prefix.

    Raises `DeviceNotFound` or `AmbiguousDevice` with a message for the user.
    """
    text = text.strip()
    device = reg.find(text)
    if device is not None:
        return device
    try:
        device = reg.by_key(normalise_key(text))
    except DeviceKeyError:
        device = None
    if device is not None:
        return device
    if prefix and text:
        hits = reg.with_prefix(text, key_prefix(text))
        exact_case = [d for d in hits if d.id.lower() == text.lower()]
        if len(exact_case) == 1:
            return exact_case[0]
        if len(hits) == 1:
            return hits[0]
        if hits:
            shown = ", ".join(f"{d.id} ({d.key})" for d in hits[:10])
            more = " ..." if len(hits) > 10 else ""
            raise AmbiguousDevice(f"{text!r} starts {'more than ' if len(hits) >= 20 else ''}{len(hits)} devices: "
                                  f"{shown}{more}; give more of the id or key", hits)
    close = difflib.get_close_matches(text, reg.ids(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise DeviceNotFound(f"no device with id or key {text!r}{hint} (see `urbansense device list`)")
