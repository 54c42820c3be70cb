"""Tamper evidence for the registry: a hash chain over the audit trail, and a hash on every device row.

Each audit row carries `hash = SHA-256(prev_hash, device_id, at, by, action, changes, note)`,
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
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def entry_hash(prev_hash: str, device_id: str, at: float, by: str, action: str, changes: str, note: str) -> str:
    """The hash of one audit row (`changes` as stored: canonical JSON)."""
    text = "\x1f".join((prev_hash, device_id, repr(float(at)), by, action, changes, note))
    return hashlib.sha256(text.encode()).hexdigest()


def row_hash(row: Mapping[str, Any], audit_hash: str) -> str:
    """The hash of one device's columns (as `_device_to_row` gives them) tied to its last audit row."""
    text = json.dumps(dict(row), sort_keys=True, ensure_ascii=False, default=str) + "\x1f" + audit_hash
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing `verify` found: where (an audit seq or a device id) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def verify_chain(rows: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Walk the audit rows in `seq` order; report altered rows, broken links and missing rows."""
    problems: list[Problem] = []
    prev_hash, prev_seq = GENESIS, 0
    for r in rows:
        seq = r["seq"]
        if seq != prev_seq + 1:
            problems.append(Problem(f"audit seq {seq}", f"rows {prev_seq + 1}..{seq - 1} are missing (deleted)"))
        if r["prev_hash"] != prev_hash:
            problems.append(Problem(f"audit seq {seq}", "chain broken: the row before it was deleted or changed"))
        expected = entry_hash(r["prev_hash"], r["device_id"], r["at"], r["by"], r["action"], r["changes"], r["note"])
        if r["hash"] != expected:
            problems.append(Problem(f"audit seq {seq}", "row changed after it was written (hash mismatch)"))
        prev_hash, prev_seq = r["hash"], seq
    return problems
