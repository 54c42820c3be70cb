"""Moving a single-machine city's SQLite files into the shared PostgreSQL database (`urbansense db
copy-from-sqlite`, QA F5): the device registry with its hash-chained audit, the dead letters, and the alert
store (open alerts, their cases, silences, outbox, operators' audit).

Idempotent: a component the database already holds (the registry's last audit row there with the same
hash; every alert there; each dead letter there by time, source, topic, reason and payload) is not copied
again, so a run cut short is simply run again. A database that holds a *different* registry or alert
store is refused rather than merged. The SQLite files are first brought to this urbansense's schema, as
`urbansense run` would; the database's schema likewise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.errors import AlertsError
from alerts.store import AlertStore
from alerts.transfer import alerts_copied, copy_alert_store, source_empty
from provisioning.registry import Registry, RegistryError, copy_registry, registry_copied
from storage.deadletter import DeadLetterStore, copy_dead_letters

Config = Any  # service.config.Config


class CopyRefused(Exception):
    """The target already holds a registry or alert store that is not a copy of the file: nothing was copied
    for that component."""


@dataclass(slots=True)
class Copied:
    """One component's outcome: `status` is "copied", "already there", "empty" or "no file"; `rows` by table."""

    component: str
    source: Path
    status: str
    rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sources:
    """The SQLite files to copy (default: the config's `registry.path`, `pipeline.dead_letter_path`,
    `alerts.db_path`)."""

    registry: Path
    dead_letters: Path
    alerts: Path

    @classmethod
    def of(cls, cfg: Config) -> Sources:
        return cls(cfg.path(cfg.registry.path), cfg.path(cfg.pipeline.dead_letter_path), cfg.path(cfg.alerts.db_path))


def _usable(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def copy_registry_file(path: Path, url: str, say: Callable[[str], None]) -> Copied:
    if not _usable(path):
        return Copied("registry", path, "no file")
    with Registry(path) as source, Registry(url) as target:
        if not source.audit_rows():
            return Copied("registry", path, "empty")
        if registry_copied(source, target):
            return Copied("registry", path, "already there", {"devices": target.count()})
        try:
            devices = copy_registry(source, target)
        except RegistryError as exc:
            raise CopyRefused(f"registry: {exc} (it holds {target.count()} devices that are not this file's; "
                              "nothing copied)") from None
        rows = source.audit_rows()
        problems = target.verify()
    if problems:
        raise CopyRefused(f"registry: the copy does not verify: {problems[0]}")
    say(f"registry: {devices} devices and {rows} audit rows copied; audit chain verified")
    return Copied("registry", path, "copied", {"devices": devices, "audit": rows})


def copy_dead_letter_file(path: Path, url: str, say: Callable[[str], None], *, batch: int = 1000) -> Copied:
    if not _usable(path):
        return Copied("dead letters", path, "no file")
    with DeadLetterStore(path) as source, DeadLetterStore(url) as target:
        total = sum(source.count_by_reason().values())
        step, shown, skipped = max(batch, total // 10), [0], [0]

        def progress(done: int, already: int) -> None:
            skipped[0] = already
            if done + already - shown[0] >= step or done + already == total:
                shown[0] = done + already
                say(f"dead letters: {done + already:,} of {total:,} ({already:,} already there)")

        n = copy_dead_letters(source, target, batch, skip_present=True, on_batch=progress)
    status = "already there" if total and not n else "copied"
    return Copied("dead letters", path, status, {"dead_letters": n, "already_there": skipped[0]})


def copy_alerts_file(path: Path, url: str, say: Callable[[str], None]) -> Copied:
    if not _usable(path):
        return Copied("alerts", path, "no file")
    source, target = AlertStore(path), AlertStore(url)
    try:
        if source_empty(source):
            return Copied("alerts", path, "empty")
        if alerts_copied(source, target):
            return Copied("alerts", path, "already there")
        try:
            rows = copy_alert_store(source, target, on_table=lambda t, n: say(f"alerts: {t}: {n:,} rows"))
        except AlertsError as exc:
            raise CopyRefused(f"alerts: {exc} (not this file's; nothing copied)") from None
        _rows, problems = target.verify_audit()
    finally:
        source.close()
        target.close()
    if problems:
        raise CopyRefused(f"alerts: the operators' audit does not verify after the copy: {problems[0]}")
    return Copied("alerts", path, "copied", rows)


def copy_from_sqlite(url: str, sources: Sources, say: Callable[[str], None] = lambda _m: None) -> list[Copied]:
    """Copy each SQLite file of `sources` into the PostgreSQL database `url`; `say` gets progress lines.
    Raises `CopyRefused` at the first component the database holds differently (those before it are done)."""
    return [copy_registry_file(sources.registry, url, say), copy_dead_letter_file(sources.dead_letters, url, say),
            copy_alerts_file(sources.alerts, url, say)]
