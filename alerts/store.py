"""SQLite persistence of alerts, their history, silences, cases and the notification outbox.

WAL with synchronous=FULL: a committed transition survives a kill -9 or a power cut. A
transition's alert row, its history line and its outbox rows are written in one transaction,
and outbox rows are unique on (fingerprint, seq, receiver), so re-processing enqueues nothing.
The CLI opens the same file from another process; every read goes to the database.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from alerts.errors import AlertsError
from alerts.matchers import Matcher, matchers_from_json
from alerts.model import AlertRecord, Delivery
from core.transition import AlertState, Severity

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    rule_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    route TEXT NOT NULL DEFAULT '',
    labels_json TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '',
    value REAL, threshold REAL, eta_s REAL,
    started_ns INTEGER, updated_ns INTEGER NOT NULL, resolved_ns INTEGER,
    acked_by TEXT, acked_ns INTEGER, ack_comment TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    episode INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0,
    receivers_json TEXT NOT NULL DEFAULT '[]',
    last_notified_ns INTEGER,
    suppressed_by TEXT,
    case_key TEXT, case_id TEXT
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    from_state TEXT NOT NULL, to_state TEXT NOT NULL, severity TEXT NOT NULL,
    value REAL, threshold REAL,
    event TEXT, seq INTEGER, receivers_json TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_fp ON history(fingerprint, id);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    matchers_json TEXT NOT NULL,
    starts_ns INTEGER NOT NULL, ends_ns INTEGER NOT NULL,
    comment TEXT NOT NULL, created_by TEXT NOT NULL, created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    receiver TEXT NOT NULL, case_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL, case_id TEXT,
    opened_ns INTEGER, closed_ns INTEGER,
    PRIMARY KEY (receiver, case_key)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL, seq INTEGER NOT NULL, receiver TEXT NOT NULL,
    event TEXT NOT NULL, case_key TEXT,
    body_json TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL, next_attempt_ns INTEGER NOT NULL,
    delivered_ns INTEGER, failed_ns INTEGER, last_error TEXT,
    UNIQUE (fingerprint, seq, receiver)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(fingerprint, receiver, id)
    WHERE delivered_ns IS NULL AND failed_ns IS NULL;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_ns, id)
    WHERE delivered_ns IS NULL AND failed_ns IS NULL;
PRAGMA user_version = 1;
"""

_ALERT_COLS = (
    "fingerprint", "rule_id", "device_id", "state", "severity", "route", "labels_json", "summary",
    "value", "threshold", "eta_s", "started_ns", "updated_ns", "resolved_ns", "acked_by", "acked_ns",
    "ack_comment", "seq", "episode", "notified", "receivers_json", "last_notified_ns", "suppressed_by",
    "case_key", "case_id",
)


@dataclass(slots=True, frozen=True)
class Silence:
    id: int
    matchers: tuple[Matcher, ...]
    starts_ns: int
    ends_ns: int
    comment: str
    created_by: str
    created_ns: int

    def active(self, now_ns: int) -> bool:
        return self.starts_ns <= now_ns < self.ends_ns


@dataclass(slots=True, frozen=True)
class HistoryEntry:
    time_ns: int
    from_state: AlertState
    to_state: AlertState
    severity: Severity
    value: float | None
    threshold: float | None
    event: str | None
    seq: int | None
    receivers: tuple[str, ...]
    note: str


@dataclass(slots=True, frozen=True)
class OutboxRow:
    id: int
    fingerprint: str
    seq: int
    receiver: str
    event: str
    attempts: int
    created_ns: int
    next_attempt_ns: int
    delivered_ns: int | None
    failed_ns: int | None
    last_error: str | None
    body: dict[str, Any]

    @property
    def status(self) -> str:
        if self.delivered_ns is not None:
            return "delivered"
        if self.failed_ns is not None:
            return "failed"
        return "retrying" if self.attempts else "queued"


@dataclass(slots=True, frozen=True)
class Enqueue:
    """One outbox row to write with an alert's change."""

    receiver: str
    event: str
    body: dict[str, Any]
    case_key: str | None = None
    error: str | None = None


def _dumps(v: Any) -> str:
    return orjson.dumps(v).decode()


def _to_record(row: sqlite3.Row) -> AlertRecord:
    d = dict(row)
    return AlertRecord(
        id=d["id"], fingerprint=d["fingerprint"], rule_id=d["rule_id"], device_id=d["device_id"],
        state=AlertState(d["state"]), severity=Severity(d["severity"]), route=d["route"],
        labels=orjson.loads(d["labels_json"]),
        summary=d["summary"], value=d["value"], threshold=d["threshold"], eta_s=d["eta_s"],
        started_ns=d["started_ns"], updated_ns=d["updated_ns"], resolved_ns=d["resolved_ns"],
        acked_by=d["acked_by"], acked_ns=d["acked_ns"], ack_comment=d["ack_comment"], seq=d["seq"],
        episode=d["episode"], notified=bool(d["notified"]), receivers=orjson.loads(d["receivers_json"]),
        last_notified_ns=d["last_notified_ns"], suppressed_by=d["suppressed_by"],
        case_key=d["case_key"], case_id=d["case_id"],
    )


def _alert_values(a: AlertRecord) -> tuple[Any, ...]:
    return (
        a.fingerprint, a.rule_id, a.device_id, a.state, a.severity, a.route, _dumps(a.labels), a.summary,
        a.value, a.threshold, a.eta_s, a.started_ns, a.updated_ns, a.resolved_ns, a.acked_by, a.acked_ns,
        a.ack_comment, a.seq, a.episode, int(a.notified), _dumps(a.receivers), a.last_notified_ns,
        a.suppressed_by, a.case_key, a.case_id,
    )


class AlertStore:
    """One SQLite file; safe to share between the event loop and threads (one lock, one connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        self._batch_depth = 0
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE); calls nested inside it join it.

        The manager reads, decides and writes an alert inside one, so an operator's ack from
        the CLI in another process cannot be lost between the read and the write.
        """
        with self._lock:
            if self._depth and self._depth == self._batch_depth:
                yield from self._savepoint()
                return
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        """A transaction directly inside `batch()`: rolled back alone when it fails, committed with the batch."""
        self._depth += 1
        self._db.execute("SAVEPOINT tx")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK TO tx")
            self._db.execute("RELEASE tx")
            raise
        finally:
            self._depth -= 1
        self._db.execute("RELEASE tx")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One commit (one fsync) for many transactions: each `transaction()` opened directly inside it
        becomes a savepoint, atomic on its own, and all of them are durable when the batch exits.

        The lock is held throughout, so no other thread reads what is not yet committed. Inside
        another transaction it simply joins it.
        """
        with self._lock:
            if self._depth:
                yield
                return
            with self.transaction():
                self._batch_depth = 1
                try:
                    yield
                finally:
                    self._batch_depth = 0

    _tx = transaction

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # alerts

    def get(self, fingerprint: str) -> AlertRecord | None:
        rows = self._query("SELECT * FROM alerts WHERE fingerprint = ?", (fingerprint,))
        return _to_record(rows[0]) if rows else None

    def find(self, ref: str) -> AlertRecord:
        """An alert by its numeric id, its fingerprint or a unique fingerprint prefix (≥ 4 digits)."""
        ref = ref.strip()
        rows: list[sqlite3.Row] = []
        if ref.isdigit():
            rows = self._query("SELECT * FROM alerts WHERE id = ?", (int(ref),))
        if not rows and len(ref) >= 4:
            rows = self._query("SELECT * FROM alerts WHERE fingerprint LIKE ? LIMIT 2", (ref.lower() + "%",))
        if not rows:
            raise AlertsError(f"no alert with id or fingerprint {ref!r}")
        if len(rows) > 1:
            raise AlertsError(f"{ref!r} matches more than one fingerprint; give more digits")
        return _to_record(rows[0])

    def list_alerts(self, states: Iterable[str] | None = None, limit: int = 1000) -> list[AlertRecord]:
        """Alerts by state (firing, pending, resolved, inactive, acknowledged), most recently changed first."""
        wanted = set(states or ())
        clauses, params = [], []
        base = [s for s in wanted if s != "acknowledged"]
        if base:
            clauses.append(f"state IN ({','.join('?' * len(base))})")
            params.extend(base)
        if "acknowledged" in wanted:
            clauses.append("(state = 'firing' AND acked_by IS NOT NULL)")
        where = f"WHERE {' OR '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT * FROM alerts {where} ORDER BY updated_ns DESC, id DESC LIMIT ?",
                           (*params, limit))
        return [_to_record(r) for r in rows]

    def firing_matching(self, match: Mapping[str, str], exclude: str) -> list[AlertRecord]:
        """Firing alerts whose labels carry all of `match` (the sources of an inhibit rule)."""
        clauses = ["state = 'firing'", "fingerprint != ?"]
        params: list[Any] = [exclude]
        for k, v in match.items():
            clauses.append("json_extract(labels_json, ?) = ?")
            params += [f'$."{k}"', v]
        rows = self._query(f"SELECT * FROM alerts WHERE {' AND '.join(clauses)}", params)
        return [_to_record(r) for r in rows]

    def firing(self) -> list[AlertRecord]:
        return [_to_record(r) for r in self._query("SELECT * FROM alerts WHERE state = 'firing' ORDER BY id")]

    def needing_notice(self, repeat_before_ns: int | None) -> list[AlertRecord]:
        """Firing alerts whose firing was held back, or (when `repeat_before_ns` is given) that are
        unacknowledged and were last notified before it: the candidates for `repeat_due`."""
        sql = "SELECT * FROM alerts WHERE state = 'firing' AND (notified = 0"
        params: list[Any] = []
        if repeat_before_ns is not None:
            sql += " OR (acked_by IS NULL AND COALESCE(last_notified_ns, 0) <= ?)"
            params.append(repeat_before_ns)
        return [_to_record(r) for r in self._query(sql + ") ORDER BY id", params)]

    def save(self, alert: AlertRecord, history: HistoryEntry | None = None,
             enqueue: Iterable[Enqueue] = (), *, now_ns: int = 0) -> int:
        """Write an alert, its history line and its outbox rows atomically; returns rows enqueued."""
        placeholders = ",".join("?" * len(_ALERT_COLS))
        updates = ",".join(f"{c}=excluded.{c}" for c in _ALERT_COLS[1:])
        added = 0
        with self._tx() as db:
            db.execute(f"INSERT INTO alerts ({','.join(_ALERT_COLS)}) VALUES ({placeholders}) "
                       f"ON CONFLICT(fingerprint) DO UPDATE SET {updates}", _alert_values(alert))
            if history is not None:
                db.execute(
                    "INSERT INTO history (fingerprint, time_ns, from_state, to_state, severity, value, threshold,"
                    " event, seq, receivers_json, note) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (alert.fingerprint, history.time_ns, history.from_state, history.to_state, history.severity,
                     history.value, history.threshold, history.event, history.seq, _dumps(list(history.receivers)),
                     history.note))
            for e in enqueue:
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (fingerprint, seq, receiver, event, case_key, body_json,"
                    " created_ns, next_attempt_ns, failed_ns, last_error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (alert.fingerprint, alert.seq, e.receiver, e.event, e.case_key, _dumps(e.body), now_ns, now_ns,
                     now_ns if e.error else None, e.error))
                added += cur.rowcount
        return added

    def ack(self, ref: str, by: str, comment: str, now_ns: int) -> AlertRecord:
        """Acknowledge a firing alert: it stays firing, but is no longer repeated."""
        alert = self.find(ref)
        if alert.state != "firing":
            raise AlertsError(f"alert {alert.id} ({alert.rule_id} on {alert.device_id}) is {alert.state}; "
                              "only a firing alert can be acknowledged")
        with self._tx() as db:
            db.execute("UPDATE alerts SET acked_by=?, acked_ns=?, ack_comment=? WHERE fingerprint=?",
                       (by, now_ns, comment, alert.fingerprint))
            db.execute("INSERT INTO history (fingerprint, time_ns, from_state, to_state, severity, note)"
                       " VALUES (?,?,?,?,?,?)", (alert.fingerprint, now_ns, "firing", "firing", alert.severity,
                                                 f"acknowledged by {by}: {comment}"))
        result = self.get(alert.fingerprint)
        assert result is not None
        return result

    def history(self, fingerprint: str) -> list[HistoryEntry]:
        rows = self._query("SELECT * FROM history WHERE fingerprint = ? ORDER BY id", (fingerprint,))
        return [HistoryEntry(r["time_ns"], AlertState(r["from_state"]), AlertState(r["to_state"]),
                             Severity(r["severity"]), r["value"], r["threshold"], r["event"], r["seq"],
                             tuple(orjson.loads(r["receivers_json"])), r["note"]) for r in rows]

    # silences

    def add_silence(self, matchers: Iterable[Matcher], starts_ns: int, ends_ns: int, comment: str,
                    by: str, now_ns: int) -> int:
        ms = [m.to_json() for m in matchers]
        if not ms:
            raise AlertsError("a silence needs at least one matcher")
        if ends_ns <= starts_ns:
            raise AlertsError("a silence must end after it starts")
        if not comment.strip():
            raise AlertsError("a silence needs a comment saying why")
        with self._tx() as db:
            cur = db.execute("INSERT INTO silences (matchers_json, starts_ns, ends_ns, comment, created_by,"
                             " created_ns) VALUES (?,?,?,?,?,?)", (_dumps(ms), starts_ns, ends_ns, comment, by, now_ns))
            return int(cur.lastrowid or 0)

    def silences(self, active_at_ns: int | None = None) -> list[Silence]:
        """All silences, or those active at `active_at_ns`."""
        if active_at_ns is None:
            rows = self._query("SELECT * FROM silences ORDER BY id")
        else:
            rows = self._query("SELECT * FROM silences WHERE starts_ns <= ? AND ends_ns > ? ORDER BY id",
                               (active_at_ns, active_at_ns))
        return [Silence(r["id"], matchers_from_json(orjson.loads(r["matchers_json"])), r["starts_ns"],
                        r["ends_ns"], r["comment"], r["created_by"], r["created_ns"]) for r in rows]

    def expire_silence(self, silence_id: int, now_ns: int) -> None:
        with self._tx() as db:
            row = db.execute("SELECT ends_ns FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if row is None:
                raise AlertsError(f"no silence with id {silence_id}")
            if row["ends_ns"] > now_ns:
                db.execute("UPDATE silences SET ends_ns = ?, starts_ns = MIN(starts_ns, ?) WHERE id = ?",
                           (now_ns, now_ns, silence_id))

    # outbox

    def due(self, now_ns: int, limit: int, busy: Iterable[tuple[str, str]] = ()) -> list[Delivery]:
        """The oldest undelivered row of each (fingerprint, receiver) whose retry time has come.

        Only the head of each (fingerprint, receiver) is ever due, so a close never overtakes its open.
        """
        skip = set(busy)
        rows = self._query(
            "SELECT o.*, c.case_id FROM outbox o LEFT JOIN cases c"
            " ON c.receiver = o.receiver AND c.case_key = o.case_key"
            " WHERE o.delivered_ns IS NULL AND o.failed_ns IS NULL AND o.next_attempt_ns <= ?"
            " AND o.id = (SELECT MIN(p.id) FROM outbox p WHERE p.fingerprint = o.fingerprint"
            "   AND p.receiver = o.receiver AND p.delivered_ns IS NULL AND p.failed_ns IS NULL)"
            " ORDER BY o.next_attempt_ns, o.id LIMIT ?", (now_ns, limit + len(skip)))
        out = [Delivery(r["id"], r["fingerprint"], r["seq"], r["receiver"], orjson.loads(r["body_json"]),
                        r["attempts"], r["case_key"], r["case_id"])
               for r in rows if (r["fingerprint"], r["receiver"]) not in skip]
        return out[:limit]

    def next_due_ns(self, busy: Iterable[tuple[str, str]] = ()) -> int | None:
        """When the next head row not in `busy` becomes due (None when there is none)."""
        skip = set(busy)
        rows = self._query(
            "SELECT o.fingerprint, o.receiver, o.next_attempt_ns FROM outbox o"
            " WHERE o.delivered_ns IS NULL AND o.failed_ns IS NULL"
            " AND o.id = (SELECT MIN(p.id) FROM outbox p WHERE p.fingerprint = o.fingerprint"
            "   AND p.receiver = o.receiver AND p.delivered_ns IS NULL AND p.failed_ns IS NULL)"
            " ORDER BY o.next_attempt_ns LIMIT ?", (len(skip) + 1,))
        for r in rows:
            if (r["fingerprint"], r["receiver"]) not in skip:
                return int(r["next_attempt_ns"])
        return None

    def mark_delivered(self, d: Delivery, now_ns: int, case_id: str | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET delivered_ns = ?, attempts = attempts + 1, last_error = NULL"
                       " WHERE id = ?", (now_ns, d.id))
            if d.case_key is None:
                return
            event = db.execute("SELECT event FROM outbox WHERE id = ?", (d.id,)).fetchone()["event"]
            db.execute("INSERT INTO cases (receiver, case_key, fingerprint, case_id, opened_ns) VALUES (?,?,?,?,?)"
                       " ON CONFLICT(receiver, case_key) DO UPDATE SET case_id = COALESCE(excluded.case_id,"
                       " cases.case_id)", (d.receiver, d.case_key, d.fingerprint, case_id, now_ns))
            if event == "resolved":
                db.execute("UPDATE cases SET closed_ns = ? WHERE receiver = ? AND case_key = ?",
                           (now_ns, d.receiver, d.case_key))
            if case_id:
                db.execute("UPDATE alerts SET case_id = ? WHERE fingerprint = ? AND case_key = ?",
                           (case_id, d.fingerprint, d.case_key))

    def mark_retry(self, d: Delivery, next_attempt_ns: int, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_ns = ?, last_error = ?"
                       " WHERE id = ?", (next_attempt_ns, error[:2000], d.id))

    def mark_failed(self, d: Delivery, now_ns: int, error: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, failed_ns = ?, last_error = ? WHERE id = ?",
                       (now_ns, error[:2000], d.id))

    def outbox(self, fingerprint: str | None = None, *, status: str | None = None,
               limit: int = 1000) -> list[OutboxRow]:
        """Outbox rows, oldest first; `status` is queued (incl. retrying), delivered or failed."""
        clauses, params = [], []
        if fingerprint:
            clauses.append("fingerprint = ?")
            params.append(fingerprint)
        if status == "queued":
            clauses.append("delivered_ns IS NULL AND failed_ns IS NULL")
        elif status == "delivered":
            clauses.append("delivered_ns IS NOT NULL")
        elif status == "failed":
            clauses.append("failed_ns IS NOT NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT * FROM outbox {where} ORDER BY id LIMIT ?", (*params, limit))
        return [OutboxRow(r["id"], r["fingerprint"], r["seq"], r["receiver"], r["event"], r["attempts"],
                          r["created_ns"], r["next_attempt_ns"], r["delivered_ns"], r["failed_ns"],
                          r["last_error"], orjson.loads(r["body_json"])) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        row = self._query(
            "SELECT SUM(delivered_ns IS NULL AND failed_ns IS NULL) AS queued,"
            " SUM(delivered_ns IS NOT NULL) AS delivered, SUM(failed_ns IS NOT NULL) AS failed FROM outbox")[0]
        return {k: int(row[k] or 0) for k in ("queued", "delivered", "failed")}

    def purge_delivered(self, before_ns: int) -> int:
        """Forget delivered rows older than `before_ns` (failed ones stay for the operator)."""
        with self._tx() as db:
            return db.execute("DELETE FROM outbox WHERE delivered_ns IS NOT NULL AND delivered_ns < ?",
                              (before_ns,)).rowcount

    def cases(self, fingerprint: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM cases WHERE fingerprint = ? ORDER BY opened_ns",
                                             (fingerprint,))]
