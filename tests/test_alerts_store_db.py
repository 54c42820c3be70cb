"""The alert store on both backends: a file written by issue 18 migrates in place, outbox claims keep two
instances from sending the same notification, and a store that is behind refuses to start when told to."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from alerts.config import AlertsConfig
from alerts.errors import AlertsError
from alerts.matchers import parse_matcher
from alerts.model import AlertRecord
from alerts.runtime import AlertsRuntime
from alerts.schema import COMPONENT, MIGRATIONS
from alerts.store import AlertStore, Enqueue
from alerts.testing import RecordingServer
from core.database import current_version, migrate, open_engine
from core.transition import AlertState, AlertTransition, Severity
from sim.daemons import start_postgres

pytestmark = pytest.mark.timeout(120)

ISSUE18_SCHEMA = (Path(__file__).parent / "data" / "alerts_schema_issue18.sql").read_text()
T0 = 1_750_000_000_000_000_000


def alert(fp: str, seq: int = 1) -> AlertRecord:
    return AlertRecord(fingerprint=fp, rule_id="water_closure", device_id=f"wl-{fp}", state=AlertState.FIRING,
                       severity=Severity.CRITICAL, route="emergency", labels={"kind": "water_level"}, summary="积水",
                       started_ns=T0, updated_ns=T0, seq=seq, episode=1, notified=True, receivers=["desk"])


def enqueue_many(store: AlertStore, n: int) -> None:
    with store.batch():
        for i in range(n):
            store.save(alert(f"{i:04d}"), enqueue=[Enqueue("desk", "firing", {"i": i})], now_ns=T0)


def test_a_file_written_by_issue_18_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    old = sqlite3.connect(path)
    old.executescript(ISSUE18_SCHEMA)
    old.execute("INSERT INTO alerts (fingerprint, rule_id, device_id, state, severity, updated_ns, seq)"
                " VALUES ('abcd1234', 'water_closure', 'wl-1', 'firing', 'critical', 5, 1)")
    old.execute("INSERT INTO outbox (fingerprint, seq, receiver, event, body_json, created_ns, next_attempt_ns)"
                " VALUES ('abcd1234', 1, 'desk', 'firing', '{\"x\": 1}', 5, 5)")
    old.execute("INSERT INTO audit (time_ns, user, action) VALUES (7, '张三', 'login')")
    old.commit()
    old.close()

    store = AlertStore(path)
    try:
        assert current_version(store.engine, COMPONENT) == len(MIGRATIONS) == 4
        assert store.find("abcd").device_id == "wl-1"
        assert [(a["user"], a["action"]) for a in store.audit()] == [("张三", "login")]  # now in alert_audit
        assert [d.body for d in store.claim_due(10, 5)] == [{"x": 1}]
        store.add_audit(8, "李四", "ack")
    finally:
        store.close()
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "alert_audit" in tables and "audit" not in tables


def test_a_store_behind_its_code_refuses_when_migrations_are_off(database: str) -> None:
    engine = open_engine(database)
    migrate(engine, COMPONENT, MIGRATIONS[:-1])
    engine.dispose()
    with pytest.raises(AlertsError, match=r"1 version.* behind.*urbansense db migrate"):
        AlertStore(database, migrate_schema=False)
    AlertStore(database).close()  # migrates
    AlertStore(database, migrate_schema=False).close()  # now up to date


def test_two_instances_claiming_at_once_never_take_the_same_row(database: str) -> None:
    """Two stores on one database claim 300 due rows in parallel: each row goes to exactly one of them."""
    first, second = AlertStore(database), AlertStore(database)
    enqueue_many(first, 300)
    taken: dict[str, list[int]] = {first.owner: [], second.owner: []}
    start = threading.Barrier(2)

    def claim_all(store: AlertStore) -> None:
        start.wait()
        while rows := store.claim_due(T0, 7):
            taken[store.owner] += [d.id for d in rows]
            time.sleep(0.005)  # "sending"

    threads = [threading.Thread(target=claim_all, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    try:
        a, b = taken.values()
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(o.id for o in first.outbox())
        assert a and b, "both instances got work"
        assert first.due(T0, 10) == [] == second.claim_due(T0, 10)  # claimed rows are no one else's
    finally:
        first.close()
        second.close()


def test_a_lapsed_claim_is_taken_again_and_a_released_one_at_once(database: str) -> None:
    dead, alive = AlertStore(database), AlertStore(database)
    try:
        enqueue_many(dead, 2)
        assert len(dead.claim_due(T0, 2, claim_ns=10_000)) == 2  # then it "dies" mid-send
        assert alive.claim_due(T0 + 5_000, 5) == []
        assert alive.next_due_ns() == T0 + 10_000
        first = alive.claim_due(T0 + 10_000, 1)
        assert len(first) == 1
        assert alive.release_claims(dead.owner) == 1
        assert len(alive.claim_due(T0 + 10_000, 5)) == 1
        alive.mark_delivered(first[0], T0 + 20_000)
        assert alive.outbox_counts() == {"queued": 1, "delivered": 1, "failed": 0}
    finally:
        dead.close()
        alive.close()


def test_two_outbox_workers_on_one_database_send_each_notification_once(database: str) -> None:
    """Two running instances (a failover overlap) deliver 40 alerts to a slow webhook: each
    Idempotency-Key is accepted exactly once and nothing is left behind."""
    with RecordingServer(delay_s=0.05) as desk:
        cfg = AlertsConfig.model_validate({
            "receivers": {"desk": {"type": "webhook", "url": desk.url + "/hook"}},
            "routes": [{"route": "emergency", "receivers": ["desk"]}],
            "outbox": {"poll_interval_s": 0.05, "max_in_flight": 4, "stop_timeout_s": 5.0}})
        one, two = (AlertsRuntime(cfg, lambda _id: None, db_path=database, take_over_claims=False) for _ in range(2))
        one.handle_many(AlertTransition("water_closure", f"wl-{i:03d}", AlertState.PENDING, AlertState.FIRING,
                                        Severity.CRITICAL, time.time_ns(), 290.0, 270.0, "emergency")
                        for i in range(40))

        async def both() -> None:
            tasks = [asyncio.create_task(rt.run()) for rt in (one, two)]
            deadline = time.monotonic() + 60
            while one.store.outbox_counts()["queued"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for rt in (one, two):
                await rt.stop()
            await asyncio.gather(*tasks)

        try:
            asyncio.run(both())
            sent = Counter(r.headers["idempotency-key"] for r in desk.accepted)
            assert len(sent) == 40 and set(sent.values()) == {1}, sent.most_common(3)
            assert one.store.outbox_counts() == {"queued": 0, "delivered": 40, "failed": 0}
            assert one.worker.stats.delivered and two.worker.stats.delivered, "both instances sent"
        finally:
            one.close()
            two.close()


def test_the_readers_views_agree_on_both_backends(database: str) -> None:
    """What the desk console and the metrics read (committed rows, their own connection), with odd input."""
    store = AlertStore(database)
    try:
        enqueue_many(store, 3)
        acked = alert("0001", seq=2)
        acked.acked_by, acked.acked_ns = "王五", T0 + 1
        store.save(acked)
        versions = store.firing_versions()
        assert set(versions) == {"0000", "0001", "0002"} and versions["0001"][1] == T0 + 1
        assert [a.fingerprint for a in store.get_committed(["0002", "0000", "nope"])] == ["0000", "0002"]
        assert sorted(store.alert_counts()) == [("water_closure", "critical", "acknowledged", 1),
                                                ("water_closure", "critical", "firing", 2)]
        assert store.outbox_backlog() == (3, T0)
        assert [o.body for o in store.recent_outbox(2)] == [{"i": 2}, {"i": 1}]
        assert store.firing_matching({"kind": "water_level"}, exclude="0000")[0].fingerprint == "0001"
        assert store.firing_matching({"kind": "noise"}, exclude="") == []
        for hostile in ("00%", "0_0", "'; DROP TABLE alerts; --", "\\"):
            with pytest.raises(AlertsError, match="no alert"):
                store.find(hostile)
        assert store.find("0002").fingerprint == "0001"  # a number is an id first (ids count from 1)
        assert store.find("0000").fingerprint == "0000"  # …then a fingerprint prefix
        with pytest.raises(AlertsError, match="no alert"):
            store.find("99999999999999999999999")
        sid = store.add_silence([parse_matcher("device_id=wl-0001")], T0 + 5, T0 + 100, "排水作业", "me", T0)
        store.expire_silence(sid, T0 + 1)  # expired before it started: it starts and ends now
        [s] = store.silences()
        assert (s.starts_ns, s.ends_ns, s.comment) == (T0 + 1, T0 + 1, "排水作业") and not store.silences(T0 + 1)
    finally:
        store.close()


@pytest.mark.slow
def test_the_store_and_its_worker_go_on_when_postgresql_restarts(tmp_path: Path) -> None:
    """PostgreSQL restarted under a running alerts runtime (a cluster of the test's own): transitions
    before, during-ish and after are all delivered, each exactly once."""
    pg = start_postgres(tmp_path)
    try:
        with RecordingServer() as desk:
            cfg = AlertsConfig.model_validate({
                "receivers": {"desk": {"type": "webhook", "url": desk.url + "/hook"}},
                "routes": [{"route": "emergency", "receivers": ["desk"]}],
                "outbox": {"poll_interval_s": 0.05, "base_delay_s": 0.1, "max_delay_s": 0.5}})
            rt = AlertsRuntime(cfg, lambda _id: None, db_path=pg.dsn())

            def fire(i: int) -> None:
                rt.handle(AlertTransition("water_closure", f"wl-{i:03d}", AlertState.PENDING, AlertState.FIRING,
                                          Severity.CRITICAL, time.time_ns(), 290.0, 270.0, "emergency"))

            async def scenario() -> None:
                task = asyncio.create_task(rt.run())
                for i in range(5):
                    fire(i)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(pg.restart)
                await asyncio.to_thread(pg.wait_accepting)
                for i in range(5, 10):  # the pool replaces its dead connections (pre-ping)
                    await asyncio.to_thread(fire, i)
                deadline = time.monotonic() + 30
                while len(desk.accepted) < 10 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # a duplicate would arrive now
                await rt.stop()
                await task

            asyncio.run(scenario())
            sent = Counter(r.headers["idempotency-key"] for r in desk.accepted)
            assert len(sent) == 10 and set(sent.values()) == {1}, sent
            assert rt.store.outbox_counts() == {"queued": 0, "delivered": 10, "failed": 0}
            rt.close()
    finally:
        pg.stop()
