"""Rules and alerts inside the service: readings → rules engine → transitions → alert manager + `alerts` points.

The engine runs on the pipeline's thread of control (O(1) per reading, no I/O); alert
state changes hit SQLite only on transitions, one commit per chunk, made in the alerts'
commit thread (`AlertsRuntime.committer`) so that its fsync does not hold the event loop;
transition points are written in the same batch as the reading that caused them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable

from loguru import logger

from alerts.model import AlertRecord, fingerprint
from alerts.notifiers import category_warnings
from alerts.points import transition_point
from alerts.runtime import AlertsRuntime
from core.database import describe_url
from core.reading import Reading
from core.transition import AlertState, AlertTransition, Severity
from provisioning.view import RegistryView
from rules.crosscheck import cross_check
from rules.footprint import RuleStateStats
from rules.gate import RuleSet
from rules.loader import load_rules
from rules.machine import RestoredAlert
from rules.model import Rule, TrendNow
from rules.warmup import readings_from_series
from service.config import Config
from service.rule_vocabulary import rule_vocabulary
from storage.influx import InfluxClient
from storage.lineprotocol import encode_points
from storage.writer import BatchWriter

_STATE_EVERY_S = 30.0  # how often the rule-state gauges are refreshed


def case_code_warnings(cfg: Config, rules: Iterable[Rule]) -> list[str]:
    """Case categories the rules file that the configured case platforms' edition has no code for."""
    used = {dict(r.labels).get("case_category", "") for r in rules}
    return category_warnings(cfg.alerts, used, base_dir=cfg.base_dir)


def unrouted_warnings(cfg: Config, rules: Iterable[Rule]) -> list[str]:
    """Routes the enabled rules use that no `[[alerts.routes]]` entry takes and no default receiver catches:
    their alerts are recorded and shown on the desk, but nobody is told (qa3 F1). Routes that match on labels
    count as taking the route (they may not match every alert: `alerts show` says when nobody was told)."""
    ac = cfg.alerts
    if ac.default_receivers:
        return []
    taken = {r.route for r in ac.routes}
    unrouted: dict[str, list[str]] = {}
    for rule in rules:
        if rule.enabled:
            for level in rule.levels:
                if level.route not in taken and "" not in taken and rule.id not in unrouted.get(level.route, []):
                    unrouted.setdefault(level.route, []).append(rule.id)
    return [f"alerts: no receiver takes route {route!r} ({', '.join(ids[:4])}{' …' if len(ids) > 4 else ''}): "
            "such alerts are recorded and shown on the desk, but nobody is told; add [alerts.receivers] and "
            "[[alerts.routes]] (alerts/config.example.toml)" for route, ids in sorted(unrouted.items())]


class RulesAndAlerts:
    """Owns the rules `Engine` and the `AlertsRuntime` (alert states, notifiers, outbox) for one service."""

    def __init__(self, cfg: Config, view: RegistryView,
                 on_state: Callable[[list[RuleStateStats], int], None] | None = None) -> None:
        """`on_state(stats, due_entries)` receives the rule-state footprint now and then (for `/metrics`)."""
        rc = cfg.rules
        rules = load_rules([cfg.path(f) for f in rc.files], include_presets=rc.presets, tz=rc.timezone)
        self.cfg = cfg
        self.view = view
        self.engine = RuleSet(rules, tz=rc.timezone, silent_factor=rc.silent_factor)
        self._restored: list[tuple[str, str]] = []
        self._valueless = frozenset(r.id for r in rules if r.is_no_data or r.is_quality)
        self._silent_factor = rc.silent_factor
        self.engine.engine.clearing = []  # keep_firing_for clocks, stored with the transitions (see `restore`)
        self.engine.set_devices(view.by_id.values())
        self._devices_loaded_at = view.loaded_at
        self.alerts = AlertsRuntime(cfg.alerts, lambda device_id: self.view.by_id.get(device_id),
                                    db_path=cfg.alerts_database(), base_dir=cfg.base_dir,
                                    migrate_schema=cfg.database.migrate_on_start)
        logger.info("alerts: state in {}", describe_url(cfg.alerts_database()))
        self.transitions = 0
        self.recent: deque[AlertTransition] = deque(maxlen=50)
        self._pending: list[AlertTransition] = []
        self._marks: list[tuple[str, int | None]] = []  # keep_firing_for clocks a strict flush could not store
        self.on_change: list[Callable[[list[AlertTransition]], None]] = []
        """Called with the transitions of each commit, after it (in the commit thread): the desk console."""
        self._on_state = on_state
        self.live_devices: frozenset[str] = frozenset()
        """Devices whose every reading `on_live` hears of (the desk console's flood gauges with an active alert)."""
        self.on_live: Callable[[str], None] | None = None
        self._state_seen_at = -math.inf
        self._warm_lines = b""
        logger.info("rules: {} loaded", len(rules))
        for warning in (*case_code_warnings(cfg, rules), *unrouted_warnings(cfg, rules)):
            logger.warning(warning)
        for mismatch in cross_check(rules, rule_vocabulary(cfg.alerts, view.by_id.values())):
            logger.warning("rules: {} (`urbansense rules check` lists them all)", mismatch)

    def restore(self) -> int:
        """Put the alerts the store lists as firing or pending back into the rules engine (restart memory)."""
        records = self.alerts.store.list_alerts(states=("firing", "pending"), limit=1 << 31)
        clearing = self.alerts.store.clearing()

        def clear_since(a: AlertRecord) -> int | None:  # a clock started before the last transition is stale
            since = clearing.get(a.fingerprint)
            return since if a.state == "firing" and since is not None and since >= a.updated_ns else None

        n = self.engine.restore(
            RestoredAlert(a.rule_id, a.device_id, AlertState(a.state), Severity(a.severity),
                          a.started_ns if a.state == "firing" and a.started_ns is not None else a.updated_ns,
                          a.updated_ns, clear_since(a))
            for a in records)
        if records:
            logger.info("rules: {} firing or pending alerts restored from the alert store", n)
        self._restored = [(a.rule_id, a.device_id) for a in records]
        return n

    def report_stale_restored(self) -> list[tuple[str, str]]:
        """After warm-up: log the restored alerts whose device has no recent reading (the desk shows them as
        data stale, not as live, until it reports); returns them as (rule id, device id)."""
        now = time.time_ns()

        def stale(rule_id: str, device_id: str) -> bool:  # as the desk says it (service/desk/state.py)
            if rule_id in self._valueless:
                return False
            seen = self.trend_now(rule_id, device_id)
            device = self.view.by_id.get(device_id)
            interval_s = device.expected_interval_s if device is not None else 300.0
            return seen is None or now - seen.time_ns > interval_s * self._silent_factor * 1e9

        stale_ones = [(r, d) for r, d in self._restored if stale(r, d)]
        if stale_ones:
            logger.warning("rules: {} of {} restored alerts have no recent reading ({}{}): shown as data stale until "
                           "their devices report", len(stale_ones), len(self._restored),
                           ", ".join(f"{r} {d}" for r, d in stale_ones[:5]), " …" if len(stale_ones) > 5 else "")
        return stale_ones

    async def warm_up(self, influx: InfluxClient, keep: Callable[[Reading], bool] | None = None) -> None:
        """Restore alert state from the store, then replay recent history into the rule windows.

        Nothing is notified for history, except what moved a restored alert on (a resolution
        the store has not seen): that is handled now, so its case closes. `keep` (a cluster's
        leader) selects the stored readings to replay; the others reach the rules later, live.
        """
        self.restore()
        if not self.cfg.rules.warm_up:
            self.report_stale_restored()
            return
        n = 0
        moved: list[AlertTransition] = []
        for q in self.engine.warm_up_queries(time.time_ns()):
            try:
                results = await influx.query(q)
            except Exception as exc:  # warm-up is best effort: rules then start cold
                logger.warning("rules warm-up query failed ({}); starting cold: {}", exc, q)
                continue
            for result in results:
                readings = readings_from_series(result.get("series", []))
                if keep is not None:
                    readings = [r for r in readings if keep(r)]
                n += len(readings)
                moved.extend(self.engine.warm_up(readings))
        logger.info("rules warmed up from {} stored readings", n)
        self.report_stale_restored()
        if moved:
            self._warm_lines = self._handle(sorted(moved, key=lambda t: t.time_ns))

    def _collect(self, transitions: Iterable[AlertTransition]) -> bytes:
        """Queue transitions for the alert store (see `flush`); returns their `alerts` lines."""
        points = []
        for t in transitions:
            self.transitions += 1
            self.recent.append(t)
            self._pending.append(t)
            points.append(transition_point(t))
        return encode_points(points)

    def flush(self, *, strict: bool = False) -> None:
        """Hand the queued transitions to the alert store in one commit (one fsync, not one each), on this
        thread: warm-up, close, and the cluster leader's bus callback.

        A failed commit is logged and must not stop ingest; with `strict` (the cluster leader, whose
        readings wait at the broker until this returns) the transitions stay queued and it raises.
        """
        if self._pending or self._marks or self.engine.engine.clearing:
            self._store(*self._take(), strict=strict)

    def commit(self) -> asyncio.Future[None] | None:
        """The queued transitions to the alert store in the commit thread (one commit, after every commit
        asked for before); the event loop runs on meanwhile. None when nothing is queued."""
        if not self._pending and not self._marks and not self.engine.engine.clearing:
            return None
        return asyncio.get_running_loop().run_in_executor(self.alerts.committer, self._store, *self._take())

    def _take(self) -> tuple[list[AlertTransition], list[tuple[str, int | None]]]:
        """The queued transitions and `keep_firing_for` clock changes (by fingerprint), handed over."""
        pending, self._pending = self._pending, []
        engine = self.engine.engine
        marks = self._marks + [(fingerprint(rule_id, device_id), since)
                               for rule_id, device_id, since in engine.clearing or ()]
        self._marks, engine.clearing = [], []
        return pending, marks

    def _store(self, pending: list[AlertTransition], marks: list[tuple[str, int | None]], *,
               strict: bool = False) -> None:
        try:
            results = self.alerts.handle_many(pending) if pending else []
            if marks:  # rare (a value falling below the clear threshold), after the transitions it follows
                self.alerts.store.set_clearing(marks)
        except Exception:
            if strict:
                self._pending = pending + self._pending
                self._marks = marks + self._marks
                raise
            logger.exception("alerts: could not store {} transitions", len(pending))
            return
        for t, result in zip(pending, results, strict=True):
            if isinstance(result, Exception):  # a broken transition must not stop ingest
                logger.opt(exception=result).error("alerts: could not handle {} {} → {}",
                                                   t.rule_id, t.device_id, t.to_state)
        for callback in self.on_change if pending else ():
            callback(pending)

    def _handle(self, transitions: Iterable[AlertTransition]) -> bytes:
        lines = self._collect(transitions)
        self.flush()
        return lines

    def on_reading(self, reading: Reading) -> bytes:
        """Pipeline hook: evaluate one reading; returns `alerts` lines to write with it. Its transitions
        reach the alert store at `on_chunk_end`, before the chunk's lines are handed to the writer."""
        try:
            transitions = self.engine.process(reading)
        except Exception:  # a rule bug must not stop ingest; the reading itself is still stored
            logger.exception("rules: evaluating {} failed", reading.device_id)
            return b""
        if reading.device_id in self.live_devices and self.on_live is not None:
            self.on_live(reading.device_id)
        return self._collect(transitions) if transitions else b""

    def trend_now(self, rule_id: str, device_id: str) -> TrendNow | None:
        """The newest reading the rules engine has of (rule, device), with its rate and time to target."""
        try:
            return self.engine.trend_now(rule_id, device_id)
        except Exception:  # a view for the desk: never worth breaking a snapshot
            logger.exception("rules: trend of {} on {} failed", rule_id, device_id)
            return None

    def report_state(self, every_s: float = _STATE_EVERY_S) -> None:
        """Hand the rule-state footprint to `on_state`, at most once per `every_s` (it walks a sample)."""
        now = time.monotonic()
        if self._on_state is None or now - self._state_seen_at < every_s:
            return
        self._state_seen_at = now
        self._on_state(self.engine.state_stats(), self.engine.due_entries)

    def on_chunk_end(self) -> asyncio.Future[None] | None:
        """Pipeline hook after a chunk's readings: their transitions in one commit, in the commit thread. The
        pipeline awaits it before the chunk's acks can run, so an acknowledged reading's transition is stored."""
        return self.commit()

    async def run(self, writer: BatchWriter, stop: asyncio.Event,
                  catching_up: Callable[[], bool] = lambda: False) -> None:
        """Rule ticks: time-based transitions (for, keep_firing_for, no data), until `stop`.

        While the pipeline is replaying a backlog (`catching_up`), the wall clock is ahead of the
        readings, so a tick would call every device silent; ticks wait until it has caught up
        (readings still drive `for` and `keep_firing_for` meanwhile).
        """
        if self._warm_lines:
            await writer.add(self._warm_lines)
            self._warm_lines = b""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.rules.tick_interval_s)
            if self.view.loaded_at != self._devices_loaded_at:
                self._devices_loaded_at = self.view.loaded_at
                self.engine.set_devices(self.view.by_id.values())
            if catching_up():
                self.report_state()  # the gauges still tell what the windows hold while a backlog replays
                continue
            lines = self._collect(self.engine.tick(time.time_ns()))
            stored = self.commit()  # in order with the pipeline's: both are asked for on this loop
            if stored is not None:
                await stored
            if lines:
                await writer.add(lines)
            self.report_state()

    async def deliver(self) -> None:
        """The notification outbox (delivery and repeats), until `close`."""
        await self.alerts.run()

    async def close(self, delivery: asyncio.Task[None] | None = None) -> None:
        """Stop the outbox, wait for `delivery` (its task), store what is queued and close the store."""
        await self.alerts.stop()
        if delivery is not None:
            await asyncio.gather(delivery, return_exceptions=True)
        self.flush()
        self.alerts.close()
