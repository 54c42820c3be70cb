"""Hash chains for audit trails: each row's hash covers the hash of the row before it and its own fields,
so deleting, inserting or editing a row breaks the chain where it happened.

`link_hash(prev, parts)` = SHA-256 of `prev` and the parts joined by U+001F; `verify_links` walks rows in
sequence order and reports gaps, broken links and rows whose hash no longer matches. Used by the device
registry's audit (`provisioning/audit.py`) and the operators' audit of the alert store (`alerts/store.py`).
The hashes are not keyed: they catch edits made behind urbansense's back (`sqlite3`, `psql`), not a forger
who recomputes them with this code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
"""The `prev_hash` of a chain's first row."""


def link_hash(prev_hash: str, parts: Sequence[str]) -> str:
    """The hex SHA-256 of one row: the previous row's hash, then its fields (as stored), U+001F between."""
    return hashlib.sha256("\x1f".join((prev_hash, *parts)).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing a verification found: where (e.g. an audit seq or a device id) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def verify_links(rows: Iterable[Mapping[str, Any]], parts: Callable[[Mapping[str, Any]], Sequence[str]], *,
                 label: str = "audit seq") -> list[Problem]:
    """Walk rows (each with `seq`, `prev_hash`, `hash`) in `seq` order from 1; report missing rows, broken
    links and altered rows. `parts(row)`: the fields its hash covers, as `link_hash` was given them."""
    problems: list[Problem] = []
    prev_hash, prev_seq = GENESIS, 0
    for r in rows:
        seq = r["seq"]
        if seq != prev_seq + 1:
            problems.append(Problem(f"{label} {seq}", f"rows {prev_seq + 1}..{seq - 1} are missing (deleted)"))
        if r["prev_hash"] != prev_hash:
            problems.append(Problem(f"{label} {seq}", "chain broken: the row before it was deleted or changed"))
        if r["hash"] != link_hash(r["prev_hash"], parts(r)):
            problems.append(Problem(f"{label} {seq}", "row changed after it was written (hash mismatch)"))
        prev_hash, prev_seq = r["hash"], seq
    return problems
