"""The components that keep shared state, where each lives, and their schema migrations in one table.

`COMPONENTS` is the one list `urbansense db status|migrate` and the start-up checks walk: with
`[database] url` set every component lives in that PostgreSQL database (different tables), else
each in its own SQLite file as before. Add a component here with its `Migration` list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.schema import COMPONENT as ALERTS_COMPONENT
from alerts.schema import MIGRATIONS as ALERTS_MIGRATIONS
from core.database import Migration, describe_url, is_postgres_url, migrate, open_engine, pending
from provisioning.schema import COMPONENT as REGISTRY_COMPONENT
from provisioning.schema import MIGRATIONS as REGISTRY_MIGRATIONS
from service.progress import COMPONENT as LEADER_COMPONENT
from service.progress import MIGRATIONS as LEADER_MIGRATIONS
from storage.deadletter import COMPONENT as DEAD_LETTER_COMPONENT
from storage.deadletter import MIGRATIONS as DEAD_LETTER_MIGRATIONS

Config = Any  # service.config.Config: the model is built at import time from the plug-ins' sections


@dataclass(frozen=True, slots=True)
class StateComponent:
    name: str
    migrations: Sequence[Migration]
    target: Callable[[Config], str | Path]
    """The PostgreSQL URL or SQLite file of this component under a config."""


COMPONENTS: tuple[StateComponent, ...] = (
    StateComponent(ALERTS_COMPONENT, ALERTS_MIGRATIONS, lambda cfg: cfg.alerts_database()),
    StateComponent(REGISTRY_COMPONENT, REGISTRY_MIGRATIONS, lambda cfg: cfg.registry_database()),
    StateComponent(DEAD_LETTER_COMPONENT, DEAD_LETTER_MIGRATIONS, lambda cfg: cfg.dead_letter_database()),
    StateComponent(LEADER_COMPONENT, LEADER_MIGRATIONS, lambda cfg: cfg.leader_database()),
)


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    where: str
    """Described with its password masked."""
    version: int
    latest: int
    pending: tuple[Migration, ...]
    exists: bool
    """False for a SQLite file not created yet (it is created, at the latest version, at first start)."""


def status(cfg: Config) -> list[ComponentStatus]:
    """Each component's schema version against the code's; raises the driver's error when a database is
    unreachable (the caller reports it)."""
    out = []
    for c in COMPONENTS:
        target = c.target(cfg)
        if not is_postgres_url(target) and not Path(target).exists():
            out.append(ComponentStatus(c.name, describe_url(target), 0, len(c.migrations), tuple(c.migrations), False))
            continue
        engine = open_engine(target)
        try:
            todo = tuple(pending(engine, c.name, c.migrations))
        finally:
            engine.dispose()
        out.append(ComponentStatus(c.name, describe_url(target), len(c.migrations) - len(todo), len(c.migrations),
                                   todo, True))
    return out


def migrate_all(cfg: Config, on_apply: Callable[[str, Migration], None] | None = None) -> dict[str, list[Migration]]:
    """Bring every component to the code's schema version; returns the steps applied per component."""
    done: dict[str, list[Migration]] = {}
    for c in COMPONENTS:
        engine = open_engine(c.target(cfg))
        try:
            done[c.name] = migrate(engine, c.name, c.migrations,
                                   on_apply=(lambda m, n=c.name: on_apply(n, m)) if on_apply else None)
        finally:
            engine.dispose()
    return done
