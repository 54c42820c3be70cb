"""Issue 19: the registry on SQLAlchemy Core, the same on a SQLite file and on PostgreSQL (`database`).

Chinese addresses, hostile strings and the hash chain come back exactly; writers on several connections
never fork the chain; a registry file of today migrates in place; the service's view notices a change
from any connection through the change counter."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.database import applied_versions, open_engine
from core.device import Device
from provisioning.registry import Registry, RegistryError, copy_registry
from provisioning.view import RegistryView
from sim.daemons import start_postgres

DATA = Path(__file__).parent / "data"

HOSTILE = [
    "北京市朝阳区建国路88号 SOHO现代城 B座 地下车库入口",
    "Robert'); DROP TABLE devices;-- 海淀",
    "%_\\ \\x00 $$ $1 :name ? {} \"quoted\" `tick`",
    "𠀀𪚥 emoji 🌊🚧 and combining é (e + U+0301)",
    "א עברית RTL text and Ж кириллица",
    "a" * 300,
]


def device(i: int, address: str) -> Device:
    return Device(f"WL-{i:03d}", f"24e12471{i:08x}", "milesight-em500-udl", "water_level", 39.9 + i / 1e7,
                  116.4 - i / 3, address, "朝阳区", address[:20], "", "地库", install={"mount_height_mm": 2150.5},
                  expected_interval_s=600)


def test_chinese_and_hostile_text_and_the_hash_chain_come_back_exactly(database: str) -> None:
    want = [device(i, text) for i, text in enumerate(HOSTILE)]
    with Registry(database) as reg:
        for d in want:
            reg.add(d, by=f"note {d.address}", user="desk:王芳")
        reg.update("WL-001", site=HOSTILE[2], by="复核", user="desk:王芳")
        want[1] = reg.get("WL-001")
    with Registry(database) as reg:  # a new engine: what is stored, not what is cached
        assert reg.all() == sorted(want, key=lambda d: d.id)
        assert reg.get("WL-000").latitude == 39.9 and reg.get("WL-003").longitude == 116.4 - 1.0
        history = reg.history("WL-001")
        assert [h["action"] for h in history] == ["add", "update"] and history[1]["by"] == "desk:王芳"
        assert history[0]["note"] == f"note {HOSTILE[1]}" and history[1]["changes"] == {"site": ["地库", HOSTILE[2]]}
        assert reg.verify() == [], "every stored value re-hashes to its chain"
        assert reg.matching(contains={"address": "soho现代城"}) == [want[0]], "substring, any case"
        assert reg.matching(contains={"address": "%_\\"}) == [want[2]], "LIKE wildcards are taken literally"
        assert [d.id for d in reg.with_prefix("wl-00", None)] == [f"WL-00{i}" for i in range(6)]


def test_nul_is_refused_with_a_clear_error_on_both_backends(database: str) -> None:
    with Registry(database) as reg:
        with pytest.raises(RegistryError, match="address contains U\\+0000"):
            reg.add(device(1, "朝阳\x00区"))
        reg.add(device(2, "朝阳区"))
        with pytest.raises(RegistryError, match="by contains U\\+0000"):
            reg.update("WL-002", district="东城", by="x\x00y")
        assert reg.count() == 1 and reg.verify() == []


def test_writers_on_many_connections_never_fork_the_chain_nor_lose_an_update(database: str) -> None:
    """Four writers (an engine each, as four processes would have) at once, each changing its own field of
    the same device and adding devices: every audit row links to the one before it, and no change is lost
    (without the registry's write lock a PostgreSQL writer reads the device before another one commits and
    writes the old value of that one's field back)."""
    fields = ("district", "street", "site", "address")
    errors: list[BaseException] = []
    registries = [Registry(database) for _ in fields]
    registries[0].add(device(0, "起点"))
    start = threading.Barrier(len(registries))

    def writer(t: int, reg: Registry) -> None:
        start.wait()
        try:
            for i in range(6):
                reg.update("WL-000", **{fields[t]: f"{fields[t]} {i}"})
                reg.add(device(t * 100 + i + 1, f"{t} 号 {i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t, reg)) for t, reg in enumerate(registries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for reg in registries:
        reg.close()
    assert errors == []
    with Registry(database) as reg:
        assert [getattr(reg.get("WL-000"), f) for f in fields] == [f"{f} 5" for f in fields]
        assert reg.audit_rows() == 1 + 48 and reg.count() == 25
        assert reg.verify() == []


def test_the_view_notices_changes_from_any_connection_and_behind_its_back(database: str) -> None:
    view = RegistryView(database)
    with Registry(database) as reg:
        reg.add(device(1, "朝阳区"))
    assert view.refresh() and view.by_key[device(1, "").key].address == "朝阳区"
    assert not view.refresh(), "nothing changed: one read of the counter, no reload"
    with Registry(database) as reg:
        reg.set_mac_key("WL-001")
    assert view.refresh() and device(1, "").key in view.mac_keys
    engine = open_engine(database)
    with engine.begin() as conn:  # psql / sqlite3: the triggers still move the counter
        conn.execute(text("UPDATE devices SET district = '海淀区' WHERE id = 'WL-001'"))
    engine.dispose()
    assert view.refresh() and "WL-001" in view.tampered and view.by_id["WL-001"].district == "朝阳区"
    view.close()


def test_a_registry_file_of_today_migrates_in_place(tmp_path: Path) -> None:
    """`registry_issue18.sql`: a file made by the release before issue 19 (`iterdump`), with Chinese and
    hostile text, a MAC key and five chained audit rows. It opens at version 2 with nothing lost."""
    path = tmp_path / "registry.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "registry_issue18.sql").read_text())
    with Registry(path) as reg:
        assert reg.verify() == [] and reg.audit_rows() == 5 and reg.ids() == ["BIN-HD-7", "WL-CY-001"]
        assert reg.get("WL-CY-001").address == "北京市朝阳区建国路88号 SOHO现代城 B座 地下车库入口"
        assert reg.get("BIN-HD-7").address == "海淀区中关村大街1号 'quoted' \"double\" %_\\ back"
        assert list(reg.mac_keys()) == ["490154203237518"]
        assert [h["by"] for h in reg.history("WL-CY-001")] == ["tech.li", "desk:王芳"]
        assert applied_versions(reg.engine, "registry") == [1, 2]
        reg.update("BIN-HD-7", status="active", by="back in service")
        assert reg.verify() == [] and reg.audit_rows() == 6
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_sqlite_registry_copied_into_postgresql_keeps_its_chain_and_seals(tmp_path: Path, pg_dsn: str) -> None:
    """A city moving to hot standby carries its registry over: every value, hash and MAC key arrives exactly,
    so `verify` finds the chain whole, and the copy goes on chaining from the last row."""
    path = tmp_path / "registry.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "registry_issue18.sql").read_text())
    with Registry(path) as source:
        for i, text in enumerate(HOSTILE):
            source.add(device(i, text), by=text[:30])
        with Registry(pg_dsn) as target:
            assert copy_registry(source, target) == 2 + len(HOSTILE)
            assert target.verify() == [] and target.all() == source.all()
            assert target.history("WL-CY-001") == source.history("WL-CY-001")
            assert target.mac_keys() == source.mac_keys()
            target.update("WL-CY-001", status="maintenance", by="after the move")
            assert target.verify() == [] and target.audit_rows() == source.audit_rows() + 1
            with pytest.raises(RegistryError, match="not empty"):
                copy_registry(source, target)


@pytest.mark.slow
def test_the_view_starts_from_its_local_copy_while_postgresql_is_down(tmp_path: Path) -> None:
    """QA F9: ingest must start while the shared database is down. The view keeps a local copy (0600) of
    every load, starts from it with one log line instead of a traceback, and catches up when it answers."""
    server = start_postgres(tmp_path)
    cache = tmp_path / "registry.cache.json"
    try:
        with Registry(server.dsn()) as reg:
            reg.add(device(1, "朝阳区"))
            reg.add(Device("NB-1", "490154203237518", "generic-nb-wl", "water_level"))
            reg.set_mac_key("NB-1")
        first = RegistryView(server.dsn(), cache=cache)
        assert set(first.by_id) == {"WL-001", "NB-1"} and (cache.stat().st_mode & 0o777) == 0o600
        first.close()
        server.stop()
        with pytest.raises(OperationalError):
            RegistryView(server.dsn(), max_wait_s=0.5)  # no copy: it waits, here only briefly
        view = RegistryView(server.dsn(), cache=cache)  # no exception: the local copy
        assert view.by_id["WL-001"].address == "朝阳区" and "490154203237518" in view.mac_keys
        with pytest.raises(OperationalError):
            view.refresh()  # the service logs this and tries again
        server.restart()
        server.wait_accepting()
        with Registry(server.dsn()) as reg:
            reg.add(device(2, "海淀区"))
        assert view.refresh() and set(view.by_id) == {"WL-001", "WL-002", "NB-1"}
        view.close()
    finally:
        server.stop()
