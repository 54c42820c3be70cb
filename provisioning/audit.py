"""Tamper evidence for the registry: a hash chain over the audit trail, and a hash on every device row.

Each audit row carries `hash = SHA-256(prev_hash, device_id, at, by, action, changes, note)` (`core.hashchain`),
`prev_hash` being the hash of the row before it, so deleting or editing a row breaks the
chain at that point. Each device row carries `row_hash = SHA-256(its columns, the hash of
its last audit row)`, so a row changed with `sqlite3` or `psql` (not through urbansense) no longer
matches: the service reports it and keeps the last verified version (`RegistryView`), and
`urbansense audit verify` lists it. The hashes are not keyed: they catch edits made behind
urbansense's back, not a forger who recomputes them with this code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from core.hashchain import GENESIS, Problem, link_hash, verify_links

__all__ = ["GENESIS", "Problem", "entry_hash", "row_hash", "verify_chain"]


def entry_hash(prev_hash: str, device_id: str, at: float, by: str, action: str, changes: str, note: str) -> str:
    """The hash of one audit row (`changes` as stored: canonical JSON)."""
    return link_hash(prev_hash, (device_id, repr(float(at)), by, action, changes, note))


def row_hash(row: Mapping[str, Any], audit_hash: str) -> str:
    """The hash of one device's columns (as `_device_to_row` gives them) tied to its last audit row."""
    text = json.dumps(dict(row), sort_keys=True, ensure_ascii=False, default=str) + "\x1f" + audit_hash
    return hashlib.sha256(text.encode()).hexdigest()


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Walk the audit rows in `seq` order; report altered rows, broken links and missing rows."""
    return verify_links(rows, lambda r: (r["device_id"], repr(float(r["at"])), r["by"], r["action"], r["changes"],
                                         r["note"]))
