"""One commit per chunk of transitions: same outcome as one by one, each still atomic, crash-safe
(on SQLite and on PostgreSQL: the `database` fixture)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from alerts.config import AlertsConfig
from alerts.errors import AlertsError
from alerts.model import fingerprint
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore
from core.transition import AlertState, AlertTransition, Severity

S = 10**9
T0 = 1_784_600_000 * S
CONFIG = AlertsConfig.model_validate({
    "receivers": {"desk": {"type": "webhook", "url": "http://127.0.0.1:9/desk"}},
    "default_receivers": ["desk"],
})


def transitions() -> list[AlertTransition]:
    """Bins filling then emptying: pending, firing, an escalation, a resolve, and a stale replay."""
    out = []
    for n in range(3):
        dev = f"bin-{n:03d}"

        def t(to: AlertState, at: int, sev: Severity = Severity.WARNING, dev: str = dev) -> AlertTransition:
            return AlertTransition("bin.full", dev, AlertState.PENDING, to, sev, T0 + at * S, 95.0, 90.0, "case")
        out += [t(AlertState.PENDING, 0), t(AlertState.FIRING, 60), t(AlertState.FIRING, 120, Severity.CRITICAL),
                t(AlertState.RESOLVED, 600), t(AlertState.FIRING, 30)]
    return out


def snapshot(store: AlertStore) -> list[tuple]:
    out = []
    for n in range(3):
        fp = fingerprint("bin.full", f"bin-{n:03d}")
        a = store.get(fp)
        history = [(h.from_state, h.to_state, h.event, h.note) for h in store.history(fp)]
        out.append((a.state, a.severity, a.seq, history, [(o.seq, o.receiver, o.event) for o in store.outbox(fp)]))
    return out


def open_alerts(db: str | Path) -> AlertsRuntime:
    return AlertsRuntime(CONFIG, lambda _id: None, db_path=db, clock=lambda: T0)


def test_handle_many_stores_what_handling_one_by_one_stores(tmp_path: Path, database: str) -> None:
    one, many = open_alerts(tmp_path / "one.sqlite"), open_alerts(database)
    singles = [one.handle(t) for t in transitions()]
    batched = many.handle_many(transitions())
    assert batched == singles
    assert snapshot(many.store) == snapshot(one.store)
    assert many.store.outbox_counts()["queued"] == 9  # firing, escalated, resolved for each of 3 bins
    one.close()
    many.close()


def test_a_broken_transition_is_returned_and_the_others_are_stored(database: str) -> None:
    alerts = open_alerts(database)
    good = transitions()[:2]
    bad = AlertTransition("", "bin-000", AlertState.PENDING, AlertState.FIRING, Severity.WARNING, T0, 1.0, 1.0, "")
    results = alerts.handle_many([good[0], bad, good[1]])
    assert isinstance(results[1], AlertsError) and "rule_id" in str(results[1])
    assert alerts.store.get(fingerprint("bin.full", "bin-000")).state == "firing"
    alerts.close()


def test_a_failed_transaction_inside_a_batch_rolls_back_alone(database: str) -> None:
    alerts = open_alerts(database)
    store = alerts.store
    first, second = transitions()[1], transitions()[6]
    with store.batch():
        alerts.handle(first)
        try:
            with store.transaction():
                alerts.handle(second)
                raise RuntimeError("disk trouble halfway through a transition")
        except RuntimeError:
            pass
    assert store.get(fingerprint("bin.full", "bin-000")).state == "firing"
    assert store.get(fingerprint("bin.full", "bin-001")) is None
    assert store.outbox(fingerprint("bin.full", "bin-001")) == []
    alerts.close()


def test_nothing_is_visible_to_another_connection_until_the_batch_commits(database: str) -> None:
    alerts = open_alerts(database)
    other = AlertStore(database)
    with alerts.store.batch():
        alerts.handle(transitions()[1])
        assert other.outbox_counts()["queued"] == 0
    assert other.outbox_counts()["queued"] == 1
    other.close()
    alerts.close()


def test_a_crash_before_the_commit_loses_the_batch_and_replaying_it_notifies_exactly_once(
        tmp_path: Path, database: str) -> None:
    db = database
    script = textwrap.dedent(f"""
        import os, sys
        sys.path[:0] = {sys.path!r}
        from test_alerts_batch import open_alerts, transitions
        alerts = open_alerts({db!r})
        alerts.handle(transitions()[1])  # committed on its own
        with alerts.store.batch():
            for t in transitions()[5:]:
                alerts.handle(t)
            os._exit(9)  # killed before the batch commits
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent, timeout=60)
    assert proc.returncode == 9
    alerts = open_alerts(db)
    assert alerts.store.outbox_counts()["queued"] == 1
    alerts.handle_many(transitions())  # the pipeline re-processes the unacknowledged chunk
    reference = open_alerts(tmp_path / "ref.sqlite")
    reference.handle_many(transitions())
    got, want = snapshot(alerts.store), snapshot(reference.store)
    assert [(s[:3], s[4]) for s in got] == [(s[:3], s[4]) for s in want]  # same notifications, once each
    assert alerts.store.outbox_counts()["queued"] == 9
    alerts.close()
    reference.close()
