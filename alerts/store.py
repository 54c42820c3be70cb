"""Persistence of alerts, their history, silences, cases, the notification outbox and the operators'
audit trail: a SQLite file (the embedded default) or a shared PostgreSQL database, one code path
(SQLAlchemy Core, `core.database`).

On SQLite: WAL with synchronous=FULL, so a committed transition survives a kill -9 or a power
cut. A transition's alert row, its history line and its outbox rows are written in one
transaction, and outbox rows are unique on (fingerprint, seq, receiver), so re-processing
enqueues nothing. The CLI opens the same database from another process; every read goes to it.
Outbox rows are claimed (`claimed_by`, `claimed_until`; `FOR UPDATE SKIP LOCKED` on PostgreSQL)
before they are sent, so two instances never send the same notification.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from alerts.audit import AUDIT_LOCK, audit_parts
from alerts.errors import AlertsError
from alerts.matchers import Matcher, matchers_from_json
from alerts.model import AlertRecord, Delivery, Measured
from alerts.schema import COMPONENT, MIGRATIONS
from core.database import (
    MigrationError,
    describe_url,
    execute,
    is_postgres,
    is_postgres_url,
    migrate_or_refuse,
    open_engine,
    read_connection,
)
from core.hashchain import GENESIS, Problem, link_hash, verify_links
from core.transition import AlertState, Severity

Row = dict[str, Any]

_ALERT_COLS = (
    "fingerprint", "rule_id", "device_id", "state", "severity", "route", "labels_json", "summary",
    "value", "threshold", "eta_s", "started_ns", "updated_ns", "resolved_ns", "acked_by", "acked_ns",
    "ack_comment", "seq", "episode", "notified", "receivers_json", "last_notified_ns", "suppressed_by",
    "case_key", "case_id", "measured_json",
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


def _to_record(row: Row) -> AlertRecord:
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
        case_key=d["case_key"], case_id=d["case_id"], measured=Measured.from_json(orjson.loads(d["measured_json"])),
    )


def _alert_values(a: AlertRecord) -> dict[str, Any]:
    values = (
        a.fingerprint, a.rule_id, a.device_id, str(a.state), str(a.severity), a.route, _dumps(a.labels), a.summary,
        a.value, a.threshold, a.eta_s, a.started_ns, a.updated_ns, a.resolved_ns, a.acked_by, a.acked_ns,
        a.ack_comment, a.seq, a.episode, int(a.notified), _dumps(a.receivers), a.last_notified_ns,
        a.suppressed_by, a.case_key, a.case_id, _dumps(a.measured.to_json()),
    )
    return dict(zip(_ALERT_COLS, values, strict=True))


def _outbox_row(r: Row) -> OutboxRow:
    return OutboxRow(r["id"], r["fingerprint"], r["seq"], r["receiver"], r["event"], r["attempts"],
                     r["created_ns"], r["next_attempt_ns"], r["delivered_ns"], r["failed_ns"],
                     r["last_error"], orjson.loads(r["body_json"]))


def _delivery(r: Row) -> Delivery:
    return Delivery(r["id"], r["fingerprint"], r["seq"], r["receiver"], orjson.loads(r["body_json"]),
                    r["attempts"], r["case_key"], r["case_id"])


def _queue_key(r: Row) -> tuple[str, str]:
    return (r["case_key"] or r["fingerprint"], r["receiver"])


_WAITING = "delivered_ns IS NULL AND failed_ns IS NULL"
_HEAD = ("o.id = (SELECT MIN(p.id) FROM outbox p"
         " WHERE COALESCE(p.case_key, p.fingerprint) = COALESCE(o.case_key, o.fingerprint)"
         " AND p.receiver = o.receiver AND p.delivered_ns IS NULL AND p.failed_ns IS NULL)")
"""The oldest undelivered row of its (case key or fingerprint, receiver) queue."""
_UNCLAIMED = "(o.claimed_until IS NULL OR o.claimed_until <= :now)"
DEFAULT_CLAIM_S = 120.0


def instance_id() -> str:
    """Who claims outbox rows: host, process and a random part (a restarted process is another claimant)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"



class AlertStore:
    """A SQLite file or a PostgreSQL URL; safe to share between the event loop and threads.

    Writes and the reads that must see them go through one lock (one open transaction at a time per
    store, as before); `_read` takes a pooled connection of its own and sees committed rows only, so
    the outbox worker, the desk console and the metrics never wait for a writer's commit (its fsync).
    Pending migrations run on open unless `migrate_schema=False`, which refuses a database that is
    behind instead (`AlertsError`).
    """

    def __init__(self, target: str | Path, *, migrate_schema: bool = True, owner: str | None = None) -> None:
        self.target = target
        self.postgres = is_postgres_url(target)
        self.path = Path(target) if not self.postgres else None
        self.engine = open_engine(target)
        self.owner = owner or instance_id()
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._depth = 0
        self._batch_depth = 0
        self._shared_conn = str(target) == ":memory:"
        try:
            migrate_or_refuse(self.engine, COMPONENT, MIGRATIONS, migrate_schema=migrate_schema)
        except MigrationError as exc:
            self.engine.dispose()
            raise AlertsError(f"alert store {describe_url(target)}: {exc}") from None
        except OperationalError as exc:
            self.engine.dispose()
            raise AlertsError(f"cannot open the alert store {describe_url(target)}: {exc.orig}") from None
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        with self._lock:
            self.engine.dispose()

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite); calls nested inside it join it.

        The manager reads, decides and writes an alert inside one, so an operator's ack from
        the CLI in another process cannot be lost between the read and the write. `durable=False`
        (an outbox claim: a lease that a restart takes over anyway) commits without waiting for the
        disk: SQLite synchronous=NORMAL, PostgreSQL synchronous_commit off. Visible to others at once,
        it survives a kill -9 but perhaps not a power cut; the next durable commit flushes it too.
        """
        with self._lock:
            if self._depth and self._depth == self._batch_depth:
                yield from self._savepoint()
                return
            if self._depth:
                assert self._conn is not None
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            with self.engine.connect() as conn:
                raw = None if durable or self.postgres else conn.connection.driver_connection
                if raw is not None:
                    raw.execute("PRAGMA synchronous=NORMAL")
                try:
                    tx = conn.begin()
                    if not durable and self.postgres:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                    self._conn, self._depth = conn, 1
                    try:
                        yield conn
                    except BaseException:
                        self._conn, self._depth = None, 0
                        tx.rollback()
                        raise
                    self._conn, self._depth = None, 0
                    tx.commit()
                finally:
                    if raw is not None:
                        raw.execute("PRAGMA synchronous=FULL")

    def _savepoint(self) -> Iterator[Connection]:
        """A transaction directly inside `batch()`: rolled back alone when it fails, committed with the batch."""
        conn = self._conn
        assert conn is not None
        self._depth += 1
        execute(conn, "SAVEPOINT tx")  # on the driver: SQLAlchemy's begin_nested costs ~1 ms a savepoint here
        try:
            yield conn
        except BaseException:
            execute(conn, "ROLLBACK TO SAVEPOINT tx")
            execute(conn, "RELEASE SAVEPOINT tx")
            raise
        finally:
            self._depth -= 1
        execute(conn, "RELEASE SAVEPOINT tx")

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

    @property
    def in_transaction(self) -> bool:
        """True inside `transaction()` or `batch()` (of the thread holding the lock): not yet committed."""
        return self._depth > 0

    def _query(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """A query that sees this store's open transaction (when the calling thread holds one)."""
        with self._lock:
            if self._conn is not None:
                return execute(self._conn, sql, params).rows
            with read_connection(self.engine) as conn:
                return execute(conn, sql, params).rows

    def _read(self, sql: str, params: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """A query of committed rows only, on a connection of its own (never waits for a commit)."""
        if self._shared_conn:
            return self._query(sql, params)
        with read_connection(self.engine) as conn:
            return execute(conn, sql, params).rows

    # alerts

    def get(self, fingerprint: str) -> AlertRecord | None:
        rows = self._query("SELECT * FROM alerts WHERE fingerprint = :fp", {"fp": fingerprint})
        return _to_record(rows[0]) if rows else None

    def find(self, ref: str) -> AlertRecord:
        """An alert by its numeric id, its fingerprint or a unique fingerprint prefix (≥ 4 digits)."""
        ref = ref.strip()
        rows: Sequence[Row] = []
        if ref.isdigit() and int(ref) < 1 << 63:
            rows = self._query("SELECT * FROM alerts WHERE id = :id", {"id": int(ref)})
        if not rows and len(ref) >= 4:
            prefix = ref.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._query("SELECT * FROM alerts WHERE fingerprint LIKE :p ESCAPE '\\' LIMIT 2",
                               {"p": prefix + "%"})
        if not rows:
            raise AlertsError(f"no alert with id or fingerprint {ref!r}")
        if len(rows) > 1:
            raise AlertsError(f"{ref!r} matches more than one fingerprint; give more digits")
        return _to_record(rows[0])

    def list_alerts(self, states: Iterable[str] | None = None, limit: int = 1000) -> list[AlertRecord]:
        """Alerts by state (firing, pending, resolved, inactive, acknowledged), most recently changed first."""
        wanted = set(states or ())
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": min(limit, (1 << 63) - 1)}
        base = sorted(s for s in wanted if s != "acknowledged")
        if base:
            clauses.append(f"state IN ({','.join(f':s{i}' for i in range(len(base)))})")
            params.update({f"s{i}": s for i, s in enumerate(base)})
        if "acknowledged" in wanted:
            clauses.append("(state = 'firing' AND acked_by IS NOT NULL)")
        where = f"WHERE {' OR '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT * FROM alerts {where} ORDER BY updated_ns DESC, id DESC LIMIT :limit", params)
        return [_to_record(r) for r in rows]

    def firing_matching(self, match: Mapping[str, str], exclude: str) -> list[AlertRecord]:
        """Firing alerts whose labels carry all of `match` (the sources of an inhibit rule)."""
        rows = self._query("SELECT * FROM alerts WHERE state = 'firing' AND fingerprint != :fp ORDER BY id",
                           {"fp": exclude})
        out = [_to_record(r) for r in rows]
        return [a for a in out if all(a.labels.get(k) == v for k, v in match.items())]

    def firing_versions(self) -> dict[str, tuple[Any, ...]]:
        """Firing alerts' fingerprints → what changes when the alert does (for views cached by a reader)."""
        rows = self._read("SELECT fingerprint, updated_ns, acked_ns, suppressed_by, case_id, seq, severity"
                          " FROM alerts WHERE state = 'firing'")
        return {r["fingerprint"]: (r["updated_ns"], r["acked_ns"], r["suppressed_by"], r["case_id"], r["seq"],
                                   r["severity"]) for r in rows}

    def get_committed(self, fingerprints: Iterable[str]) -> list[AlertRecord]:
        """Alerts by fingerprint, as committed (reader connection)."""
        fps = list(fingerprints)
        out: list[AlertRecord] = []
        for i in range(0, len(fps), 500):
            part = fps[i:i + 500]
            names = ",".join(f":f{j}" for j in range(len(part)))
            rows = self._read(f"SELECT * FROM alerts WHERE fingerprint IN ({names})",
                              {f"f{j}": fp for j, fp in enumerate(part)})
            out += [_to_record(r) for r in rows]
        return out

    def firing_on_device(self, device_id: str, exclude: str = "") -> list[AlertRecord]:
        """Firing alerts of one device, oldest episode first."""
        rows = self._query("SELECT * FROM alerts WHERE state = 'firing' AND device_id = :d AND fingerprint != :fp"
                           " ORDER BY started_ns, id", {"d": device_id, "fp": exclude})
        return [_to_record(r) for r in rows]

    def firing(self) -> list[AlertRecord]:
        return [_to_record(r) for r in self._read("SELECT * FROM alerts WHERE state = 'firing' ORDER BY id")]

    def needing_notice(self, repeat_before_ns: int | None) -> list[AlertRecord]:
        """Firing alerts whose firing was held back, or (when `repeat_before_ns` is given) that are
        unacknowledged and were last notified before it: the candidates for `repeat_due`."""
        sql = "SELECT * FROM alerts WHERE state = 'firing' AND (notified = 0"
        params: dict[str, Any] = {}
        if repeat_before_ns is not None:
            sql += " OR (acked_by IS NULL AND COALESCE(last_notified_ns, 0) <= :before)"
            params["before"] = repeat_before_ns
        return [_to_record(r) for r in self._query(sql + ") ORDER BY id", params)]

    def save(self, alert: AlertRecord, history: HistoryEntry | None = None,
             enqueue: Iterable[Enqueue] = (), *, now_ns: int = 0) -> int:
        """Write an alert, its history line and its outbox rows atomically; returns rows enqueued."""
        names = ",".join(f":{c}" for c in _ALERT_COLS)
        updates = ",".join(f"{c}=excluded.{c}" for c in _ALERT_COLS[1:])
        added = 0
        with self._tx() as db:
            execute(db, (f"INSERT INTO alerts ({','.join(_ALERT_COLS)}) VALUES ({names}) "
                            f"ON CONFLICT(fingerprint) DO UPDATE SET {updates}"), _alert_values(alert))
            if history is not None:
                execute(db, (
                    "INSERT INTO history (fingerprint, time_ns, from_state, to_state, severity, value, threshold,"
                    " event, seq, receivers_json, note) VALUES (:fp, :t, :fr, :to, :sev, :v, :th, :ev, :seq, :rc, :n)"),
                    {"fp": alert.fingerprint, "t": history.time_ns, "fr": str(history.from_state),
                     "to": str(history.to_state), "sev": str(history.severity), "v": history.value,
                     "th": history.threshold, "ev": history.event, "seq": history.seq,
                     "rc": _dumps(list(history.receivers)), "n": history.note})
            for e in enqueue:
                cur = execute(db, (
                    "INSERT INTO outbox (fingerprint, seq, receiver, event, case_key, body_json,"
                    " created_ns, next_attempt_ns, failed_ns, last_error)"
                    " VALUES (:fp, :seq, :r, :ev, :ck, :body, :now, :now, :failed, :err)"
                    " ON CONFLICT (fingerprint, seq, receiver) DO NOTHING"),
                    {"fp": alert.fingerprint, "seq": alert.seq, "r": e.receiver, "ev": e.event, "ck": e.case_key,
                     "body": _dumps(e.body), "now": now_ns, "failed": now_ns if e.error else None, "err": e.error})
                added += max(cur.rowcount, 0)
        return added

    def ack(self, ref: str, by: str, comment: str, now_ns: int) -> AlertRecord:
        """Acknowledge a firing alert: it stays firing, but is no longer repeated."""
        alert = self.find(ref)
        if alert.state != "firing":
            raise AlertsError(f"alert {alert.id} ({alert.rule_id} on {alert.device_id}) is {alert.state}; "
                              "only a firing alert can be acknowledged")
        with self._tx() as db:
            execute(db, ("UPDATE alerts SET acked_by = :by, acked_ns = :now, ack_comment = :c"
                            " WHERE fingerprint = :fp"),
                       {"by": by, "now": now_ns, "c": comment, "fp": alert.fingerprint})
            execute(db, ("INSERT INTO history (fingerprint, time_ns, from_state, to_state, severity, note)"
                            " VALUES (:fp, :now, 'firing', 'firing', :sev, :note)"),
                       {"fp": alert.fingerprint, "now": now_ns, "sev": str(alert.severity),
                        "note": f"acknowledged by {by}: {comment}"})
        result = self.get(alert.fingerprint)
        assert result is not None
        return result

    def history(self, fingerprint: str) -> list[HistoryEntry]:
        rows = self._query("SELECT * FROM history WHERE fingerprint = :fp ORDER BY id", {"fp": fingerprint})
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
            return int(execute(db, (
                "INSERT INTO silences (matchers_json, starts_ns, ends_ns, comment, created_by, created_ns)"
                " VALUES (:m, :s, :e, :c, :by, :now) RETURNING id"),
                {"m": _dumps(ms), "s": starts_ns, "e": ends_ns, "c": comment, "by": by, "now": now_ns}).scalar())

    def silences(self, active_at_ns: int | None = None) -> list[Silence]:
        """All silences, or those active at `active_at_ns`."""
        if active_at_ns is None:
            rows = self._query("SELECT * FROM silences ORDER BY id")
        else:
            rows = self._query("SELECT * FROM silences WHERE starts_ns <= :t AND ends_ns > :t ORDER BY id",
                               {"t": active_at_ns})
        return [Silence(r["id"], matchers_from_json(orjson.loads(r["matchers_json"])), r["starts_ns"],
                        r["ends_ns"], r["comment"], r["created_by"], r["created_ns"]) for r in rows]

    def expire_silence(self, silence_id: int, now_ns: int) -> None:
        with self._tx() as db:
            row = execute(db, "SELECT ends_ns FROM silences WHERE id = :id", {"id": silence_id}).first()
            if row is None:
                raise AlertsError(f"no silence with id {silence_id}")
            if row["ends_ns"] > now_ns:
                execute(db, ("UPDATE silences SET ends_ns = :now,"
                                " starts_ns = CASE WHEN starts_ns < :now THEN starts_ns ELSE :now END WHERE id = :id"),
                           {"now": now_ns, "id": silence_id})

    # outbox

    def due(self, now_ns: int, limit: int, busy: Iterable[tuple[str, str]] = ()) -> list[Delivery]:
        """The oldest undelivered row of each (case, receiver) whose retry time has come and that no
        instance has claimed: what `claim_due` would take, without taking it (committed rows).

        Only the head of each (case key, receiver) queue is ever due, so a close never overtakes its
        open, nor one rule's update of a shared case the other rule's open. `busy` holds queue keys
        (`Delivery.queue_key`).
        """
        skip = set(busy)
        rows = self._read(
            "SELECT o.*, c.case_id FROM outbox o LEFT JOIN cases c"
            " ON c.receiver = o.receiver AND c.case_key = o.case_key"
            f" WHERE o.delivered_ns IS NULL AND o.failed_ns IS NULL AND o.next_attempt_ns <= :now AND {_UNCLAIMED}"
            f" AND {_HEAD} ORDER BY o.next_attempt_ns, o.id LIMIT :n", {"now": now_ns, "n": limit + len(skip)})
        return [_delivery(r) for r in rows if _queue_key(r) not in skip][:limit]

    def claim_due(self, now_ns: int, limit: int, busy: Iterable[tuple[str, str]] = (), *,
                  claim_ns: int = int(DEFAULT_CLAIM_S * 1e9)) -> list[Delivery]:
        """Take the rows `due` would list for this store's `owner` until `now_ns + claim_ns`, and return them.

        The rows are locked while they are claimed (`FOR UPDATE OF o SKIP LOCKED` on PostgreSQL, the
        write lock on SQLite), so two instances claiming at once never get the same row; a claim that
        outlives its holder (killed mid-send) lapses at `claimed_until` and the row is sent again (same
        Idempotency-Key). Marking a row delivered, retried or failed ends its claim.
        """
        if limit <= 0 or not self.due(now_ns, limit, busy):  # a read first: no write transaction when idle
            return []
        skip = set(busy)
        lock = " FOR UPDATE OF o SKIP LOCKED" if is_postgres(self.engine) else ""
        with self._tx(durable=False) as db:  # no fsync before the send: a lost claim only means a resend
            rows = execute(db, (
                "SELECT o.*, c.case_id FROM outbox o LEFT JOIN cases c"
                " ON c.receiver = o.receiver AND c.case_key = o.case_key"
                f" WHERE o.delivered_ns IS NULL AND o.failed_ns IS NULL AND o.next_attempt_ns <= :now"
                f" AND {_UNCLAIMED} AND {_HEAD} ORDER BY o.next_attempt_ns, o.id LIMIT :n{lock}"),
                {"now": now_ns, "n": limit + len(skip)}).rows
            out = [_delivery(r) for r in rows if _queue_key(r) not in skip][:limit]
            if out:
                names = ",".join(f":i{j}" for j in range(len(out)))
                execute(db, (f"UPDATE outbox SET claimed_by = :me, claimed_until = :until WHERE id IN ({names})"),
                           {"me": self.owner, "until": now_ns + claim_ns, **{f"i{j}": d.id for j, d in enumerate(out)}})
        return out

    def release_claims(self, owner: str | None = None) -> int:
        """End claims at once: those of `owner`, or (None) every claim, e.g. a new leader taking over the
        outbox of one that died. Returns rows released."""
        with self._tx() as db:
            sql = "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_until IS NOT NULL"
            params: dict[str, Any] = {}
            if owner is not None:
                sql += " AND claimed_by = :owner"
                params["owner"] = owner
            return max(execute(db, (sql), params).rowcount, 0)

    def next_due_ns(self, busy: Iterable[tuple[str, str]] = ()) -> int | None:
        """When the next head row not in `busy` becomes due or its claim lapses (None when there is none)."""
        skip = set(busy)
        rows = self._read(
            "SELECT o.fingerprint, o.case_key, o.receiver, o.next_attempt_ns, o.claimed_until FROM outbox o"
            f" WHERE o.delivered_ns IS NULL AND o.failed_ns IS NULL AND {_HEAD}"
            " ORDER BY o.next_attempt_ns LIMIT :n", {"n": len(skip) + 1})
        times = [max(int(r["next_attempt_ns"]), int(r["claimed_until"] or 0))
                 for r in rows if _queue_key(r) not in skip]
        return min(times) if times else None

    def mark_delivered(self, d: Delivery, now_ns: int, case_id: str | None = None) -> None:
        with self._tx() as db:
            execute(db, ("UPDATE outbox SET delivered_ns = :now, attempts = attempts + 1, last_error = NULL,"
                            " claimed_by = NULL, claimed_until = NULL WHERE id = :id"), {"now": now_ns, "id": d.id})
            if d.case_key is None:
                return
            event = execute(db, ("SELECT event FROM outbox WHERE id = :id"), {"id": d.id}).scalar()
            execute(db, ("INSERT INTO cases (receiver, case_key, fingerprint, case_id, opened_ns)"
                            " VALUES (:r, :ck, :fp, :cid, :now) ON CONFLICT (receiver, case_key)"
                            " DO UPDATE SET case_id = COALESCE(excluded.case_id, cases.case_id)"),
                       {"r": d.receiver, "ck": d.case_key, "fp": d.fingerprint, "cid": case_id, "now": now_ns})
            if event == "resolved":
                execute(db, ("UPDATE cases SET closed_ns = :now WHERE receiver = :r AND case_key = :ck"),
                           {"now": now_ns, "r": d.receiver, "ck": d.case_key})
            if case_id:
                execute(db, ("UPDATE alerts SET case_id = :cid WHERE case_key = :ck"),
                           {"cid": case_id, "ck": d.case_key})

    def mark_retry(self, d: Delivery, next_attempt_ns: int, error: str) -> None:
        with self._tx() as db:
            execute(db, ("UPDATE outbox SET attempts = attempts + 1, next_attempt_ns = :t, last_error = :err,"
                            " claimed_by = NULL, claimed_until = NULL WHERE id = :id"),
                       {"t": next_attempt_ns, "err": error[:2000], "id": d.id})

    def mark_failed(self, d: Delivery, now_ns: int, error: str) -> None:
        with self._tx() as db:
            execute(db, ("UPDATE outbox SET attempts = attempts + 1, failed_ns = :now, last_error = :err,"
                            " claimed_by = NULL, claimed_until = NULL WHERE id = :id"),
                       {"now": now_ns, "err": error[:2000], "id": d.id})

    def outbox(self, fingerprint: str | None = None, *, status: str | None = None,
               limit: int = 1000) -> list[OutboxRow]:
        """Outbox rows, oldest first; `status` is queued (incl. retrying), delivered or failed."""
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if fingerprint:
            clauses.append("fingerprint = :fp")
            params["fp"] = fingerprint
        if status == "queued":
            clauses.append(_WAITING)
        elif status == "delivered":
            clauses.append("delivered_ns IS NOT NULL")
        elif status == "failed":
            clauses.append("failed_ns IS NOT NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [_outbox_row(r) for r in self._query(f"SELECT * FROM outbox {where} ORDER BY id LIMIT :limit", params)]

    def deliveries(self, fingerprint: str, since_ns: int | None = None) -> dict[str, list[str]]:
        """Receivers by delivery status (delivered, queued, failed) of one alert's rows since `since_ns`."""
        rows = self._query("SELECT receiver, delivered_ns, failed_ns FROM outbox WHERE fingerprint = :fp"
                           " AND created_ns >= :since ORDER BY id", {"fp": fingerprint, "since": since_ns or 0})
        out: dict[str, list[str]] = {"delivered": [], "queued": [], "failed": []}
        for r in rows:
            status = "delivered" if r["delivered_ns"] is not None else "failed" if r["failed_ns"] else "queued"
            if r["receiver"] not in out[status]:
                out[status].append(r["receiver"])
        return out

    def outbox_backlog(self) -> tuple[int, int | None]:
        """(rows waiting for delivery, creation time of the oldest of them or None)."""
        row = self._read(f"SELECT COUNT(*) AS n, MIN(created_ns) AS oldest FROM outbox WHERE {_WAITING}")[0]
        return int(row["n"]), row["oldest"]

    def alert_counts(self) -> list[tuple[str, str, str, int]]:
        """(rule, severity, state, count) over all alerts; acknowledged counts as its own state."""
        rows = self._read("SELECT rule_id, severity, st, COUNT(*) AS n FROM (SELECT rule_id, severity,"
                          " CASE WHEN state = 'firing' AND acked_by IS NOT NULL THEN 'acknowledged' ELSE state END"
                          " AS st FROM alerts) a GROUP BY rule_id, severity, st")
        return [(r["rule_id"], r["severity"], r["st"], int(r["n"])) for r in rows]

    def recent_outbox(self, limit: int) -> list[OutboxRow]:
        """The newest outbox rows, newest first."""
        return [_outbox_row(r) for r in self._read("SELECT * FROM outbox ORDER BY id DESC LIMIT :n", {"n": limit})]

    # audit

    def add_audit(self, time_ns: int, user: str, action: str, target: str = "", detail: str = "") -> int:
        """One line of the operators' audit trail (desk logins, acks, silences), with the user's name, chained
        by hash onto the line before it (`alerts/audit.py`)."""
        row = {"time_ns": time_ns, "user": user, "action": action, "target": target, "detail": detail}
        row = {k: v.replace("\x00", "\\x00") if isinstance(v, str) else v for k, v in row.items()}  # as stored
        with self._tx() as db:
            if self.postgres:
                execute(db, f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
            last = execute(db, "SELECT seq, hash FROM alert_audit ORDER BY seq DESC LIMIT 1").rows
            row["seq"], row["prev_hash"] = (int(last[0]["seq"]) + 1, last[0]["hash"]) if last else (1, GENESIS)
            row["hash"] = link_hash(row["prev_hash"], audit_parts(row))
            return int(execute(db, (
                'INSERT INTO alert_audit (seq, time_ns, "user", action, target, detail, prev_hash, hash)'
                " VALUES (:seq, :time_ns, :user, :action, :target, :detail, :prev_hash, :hash) RETURNING id"),
                row).scalar())

    def set_clearing(self, marks: Iterable[tuple[str, int | None]]) -> None:
        """Record (fingerprint, since_ns) of firing alerts whose `keep_firing_for` clock started; None: it stopped
        (the value holds again, or the alert resolved). One transaction; what a restart reads (`clearing`)."""
        with self._tx() as db:
            for fp, since in marks:
                if since is None:
                    execute(db, "DELETE FROM alert_clearing WHERE fingerprint = :fp", {"fp": fp})
                else:
                    execute(db, "INSERT INTO alert_clearing (fingerprint, since_ns) VALUES (:fp, :s)"
                                " ON CONFLICT (fingerprint) DO UPDATE SET since_ns = excluded.since_ns",
                            {"fp": fp, "s": since})

    def clearing(self) -> dict[str, int]:
        """Fingerprint → since when its value has been below the clear threshold (`set_clearing`)."""
        return {r["fingerprint"]: int(r["since_ns"]) for r in self._query("SELECT * FROM alert_clearing")}

    def verify_audit(self) -> tuple[int, list[Problem]]:
        """The operators' audit rows and what is wrong with their hash chain (rows deleted, changed, inserted)."""
        rows = self._query("SELECT * FROM alert_audit ORDER BY seq")
        return len(rows), verify_links(rows, audit_parts, label="alert audit seq")

    def audit(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The audit trail, newest first."""
        return [dict(r) for r in self._query("SELECT * FROM alert_audit ORDER BY id DESC LIMIT :n", {"n": limit})]

    def outbox_counts(self) -> dict[str, int]:
        row = self._query(
            f"SELECT SUM(CASE WHEN {_WAITING} THEN 1 ELSE 0 END) AS queued,"
            " SUM(CASE WHEN delivered_ns IS NOT NULL THEN 1 ELSE 0 END) AS delivered,"
            " SUM(CASE WHEN failed_ns IS NOT NULL THEN 1 ELSE 0 END) AS failed FROM outbox")[0]
        return {k: int(row[k] or 0) for k in ("queued", "delivered", "failed")}

    def purge_delivered(self, before_ns: int) -> int:
        """Forget delivered rows older than `before_ns` (failed ones stay for the operator)."""
        with self._tx() as db:
            return max(execute(db, ("DELETE FROM outbox WHERE delivered_ns IS NOT NULL AND delivered_ns < :t"),
                                  {"t": before_ns}).rowcount, 0)

    def cases(self, fingerprint: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM cases WHERE fingerprint = :fp ORDER BY opened_ns",
                                             {"fp": fingerprint})]
