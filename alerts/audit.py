"""Tamper evidence for the operators' audit trail (`alert_audit`: desk logins, lockouts, acks, silences):
each row is chained onto the one before it with `core.hashchain`, as the registry's audit is.

`hash = SHA-256(prev_hash, seq, time_ns, user, action, target, detail)` over the values as stored
(U+0000 written as `\\x00`); `urbansense audit verify` walks the chain (`AlertStore.verify_audit`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

AUDIT_LOCK = zlib.crc32(b"urbansense-alert-audit")
"""PostgreSQL advisory transaction lock held while a row is chained on, so two writers never fork the chain
(SQLite's BEGIN IMMEDIATE already serialises them)."""


def audit_parts(row: Mapping[str, Any]) -> Sequence[str]:
    """The fields of one `alert_audit` row its hash covers, in order."""
    return (str(int(row["seq"])), str(int(row["time_ns"])), row["user"], row["action"], row["target"],
            row["detail"])
