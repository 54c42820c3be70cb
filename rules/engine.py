"""The rules engine: readings in, alert transitions out, with all state in memory.

`process` does O(1) amortised work per reading and matching rule (windows with running
sums and monotonic deques; Theil–Sen only for trend rules, on a bounded window) and never
touches InfluxDB; `warm_up` replays history at start; `tick` lets time pass (a `for`
elapsing, `keep_firing_for` expiring, a device going silent). Time always comes from the
readings or from `tick`'s argument, never from the wall clock.

Late, early and out-of-order readings (per rule and device; see rules/README.md):
- a reading at or before the last one taken, by at most the rule's window (or `late_tolerance_s`
  when that is longer), is skipped: the window has moved on (a redelivery, a small reordering);
- a live reading further back than that means the device's clock jumped back, or the reading
  before was stamped in the future: the window restarts from this reading (the alert state is
  kept), so one bad time cannot blind a rule;
- a history reading (a record the device stored and sent later) enters the windows in time
  order like any other, but when it is older than the rule's horizon (its window, `for`
  duration and `late_tolerance_s`) behind the newest time the engine has seen, it raises no
  fresh transition: old data fills the series, it does not page anyone.
"""

from __future__ import annotations

import heapq
import math
import sys
from collections.abc import Callable, Iterable
from math import isfinite

from core.device import Device
from core.reading import Reading
from core.timing import format_duration
from core.transition import AlertState, AlertTransition
from rules.footprint import RuleStateStats, measure
from rules.machine import FIRING, PENDING, AlertMachine, Change, RestoredAlert, RuleState, Timing
from rules.model import ANY, OP_SYMBOLS, OPS, Rule
from rules.nodata import SilenceWatcher
from rules.schedule import LocalClock, period_at
from rules.trend import time_to_threshold
from rules.warmup import warm_up_queries
from rules.windows import TrendWindow, Window, make_window

_NS = 1_000_000_000
_DICT_SLOT = 3 * 8 + 8  # a dict entry (hash, key, value) and its index slot, amortised
_COMPACT_AT = 256  # superseded due-heap entries tolerated before a compaction is considered
_TAG_KEYS_FROM_REGISTRY = ("district", "zone_class", "model", "site")
_ETA_MAX_SAMPLES = 64  # bounds the O(n²) Theil–Sen of an `eta` annotation


class _DeviceState(AlertMachine):
    """What one (rule, device) keeps: its window(s), its machine, and what the last evaluation saw.

    It *is* its alert machine (`machine` is itself): one object per (rule, device), not two,
    saves ~90 bytes each, which a million devices times their rules multiply.
    """

    __slots__ = ("clear_thr", "due_ns", "hold_ns", "last_ns", "level_thr", "machine", "tags", "trend", "value",
                 "window")

    def __init__(self, window: Window, trend: TrendWindow | None) -> None:
        super().__init__()
        self.window = window
        self.trend = trend
        self.machine: AlertMachine = self
        self.last_ns = -1
        self.value: float | None = None
        self.level_thr: float | None = None
        self.clear_thr: float | None = None
        self.tags: tuple[tuple[str, str], ...] = ()
        self.due_ns: int | None = None
        self.hold_ns = -1
        """Restored from the alert store as of this time: older readings fill the window, not the machine."""


class _Compiled:
    """A rule with what the hot path needs precomputed."""

    __slots__ = ("_thresholds", "aggregate", "clock", "field", "horizon_ns", "index", "late_ns", "min_coverage_s",
                 "min_samples", "needs_tags", "op", "period_of_minute", "plain", "rule", "states", "timing")

    def __init__(self, index: int, rule: Rule, clock: LocalClock, late_tolerance_s: float = 120.0) -> None:
        self.index = index
        self.rule = rule
        self.field = rule.field
        self.aggregate = rule.aggregate
        self.plain = rule.aggregate not in ("slope", "eta")  # the window's value is the rule's value
        self.min_samples = rule.min_samples
        self.min_coverage_s = rule.min_coverage_s
        self.op = OPS[rule.op]
        self.clock = clock if rule.schedule else None
        # the schedule as a table of 1,440 local minutes -> period name (None: uncovered)
        self.period_of_minute = tuple(period_at(rule.schedule, m) for m in range(1440)) if rule.schedule else None
        self.timing = Timing(int(rule.for_s * _NS), rule.for_samples, int(rule.keep_firing_for_s * _NS))
        self.late_ns = int(max(rule.window_s, late_tolerance_s) * _NS)
        self.horizon_ns = int((max(rule.window_s, rule.for_s) + late_tolerance_s) * _NS)
        self.needs_tags = rule.select.needs_tags
        self.states: dict[str, _DeviceState] = {}
        self._thresholds: dict[tuple[str, str], _Limits] = {}

    def thresholds(self, period: str, zone: str) -> _Limits:
        """Each level's limit and the clear limit in (period, zone class).

        Cached because rules are immutable: the few (period, zone) pairs a rule meets are
        resolved once instead of twice per level per reading.
        """
        key = (period, zone)
        found = self._thresholds.get(key)
        if found is None:
            rule = self.rule
            levels = tuple(level.threshold.resolve(period, zone) for level in rule.levels)
            clear = rule.clear.resolve(period, zone) if rule.clear is not None else None
            found = self._thresholds[key] = (levels, clear)
        return found

    def new_window(self) -> tuple[Window, TrendWindow | None]:
        r = self.rule
        window = make_window(r.aggregate, r.window_s, r.max_samples, r.per_s, r.resolution_s)
        trend = TrendWindow(r.eta.window_s, _ETA_MAX_SAMPLES) if r.eta else None
        return window, trend

    def new_state(self) -> _DeviceState:
        return _DeviceState(*self.new_window())


_Limits = tuple[tuple[float | None, ...], float | None]  # each level's limit, and the clear limit


class _Route:
    """What one device's readings go through: its matching rules, zone class and report interval.

    `rules` pairs each rule with its (level limits, clear limit) for the device's zone class when
    the rule has no schedule (None otherwise: the limits then depend on the local time).

    Cached per device because selection (kind, device list, tags completed from the registry)
    and the registry lookups give the same answer for every reading of a device; it is
    rebuilt when a reading comes with another kind or other tags, and all are dropped by
    `Engine.set_devices` (the registry is what they were computed from).
    """

    __slots__ = ("interval_s", "kind", "reading_tags", "rules", "zone")

    def __init__(self, kind: str, reading_tags: tuple[tuple[str, str], ...],
                 rules: tuple[tuple[_Compiled, _Limits | None], ...], zone: str, interval_s: float) -> None:
        self.kind = kind
        self.reading_tags = reading_tags
        self.rules = rules
        self.zone = zone
        self.interval_s = interval_s


class Engine:
    """Evaluates `rules` on readings; see the module docstring for the contract.

    `tz` is the time zone for schedules of rules that carry none (the loader stamps its own
    `tz` on rules from files unless they name one: pass both the same value); `silent_factor`
    is the no-data factor for rules that do not set one; `default_interval_s` stands in
    for the expected report interval of a device the registry does not know;
    `late_tolerance_s` is how far back a reading may come and still be a mere reordering
    (see the module docstring).
    """

    def __init__(self, rules: Iterable[Rule], *, tz: str = "Asia/Shanghai", silent_factor: float = 3.0,
                 default_interval_s: float = 300.0, late_tolerance_s: float = 120.0) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._clocks: dict[str, LocalClock] = {}
        self._late_ns = int(late_tolerance_s * _NS)
        self._newest_ns = -1  # the newest live reading time or tick: "now" for the history horizon
        self._compiled = [_Compiled(i, r, self._clock(r.timezone or tz), late_tolerance_s)
                          for i, r in enumerate(r for r in self.rules if not r.is_no_data)]
        self._by_id = {c.rule.id: c for c in self._compiled}
        self._watchers = [SilenceWatcher(r, r.no_data.factor or silent_factor,  # type: ignore[union-attr]
                                         self._interval_of) for r in self.rules if r.is_no_data]
        self._watchers_by_id = {w.rule.id: w for w in self._watchers}
        self._by_kind: dict[str, tuple[_Compiled, ...]] = {}
        self._due: list[tuple[int, int, str]] = []  # heap of (due_ns, rule index, device id)
        self._due_stale = 0  # entries of `_due` superseded since the last compaction (an upper bound)
        self._devices: dict[str, Device] = {}
        self._device_tags: dict[str, dict[str, str]] = {}
        self._routes: dict[str, _Route] = {}
        self._selections: dict[tuple, tuple] = {}  # one copy of each distinct rule selection, shared by routes
        self._default_interval_s = default_interval_s
        self._last_seen: dict[str, int] = {}
        self._emitting = True
        self._restored: set[tuple[str, str]] = set()  # (rule id, device id) put back by `restore`
        self._warm_out: list[AlertTransition] = []

    # -- configuration -------------------------------------------------------------------------

    def set_devices(self, devices: Iterable[Device]) -> None:
        """Give the engine the registry: zone class, district and expected interval per device."""
        self._devices = {d.id: d for d in devices}
        self._device_tags = {d.id: dict(d.tags()) for d in self._devices.values()}
        self._routes.clear()
        self._selections.clear()
        for w in self._watchers:
            w.set_devices(self._devices, self._device_tags)

    def warm_up_queries(self, now_ns: int) -> list[str]:
        """The InfluxQL to run at start, one per kind, each bounded by the longest look-back its rules need."""
        return warm_up_queries(self.rules, now_ns)

    def restore(self, alerts: Iterable[RestoredAlert]) -> int:
        """Put the firing and pending alerts the alert store lists back into their machines; call before `warm_up`.

        A restart then remembers them: a later reading below the clear threshold resolves
        the alert (and its case closes) although no stored reading is recent enough to
        rebuild the state. Returns how many were restored (rules that no longer exist are skipped).
        """
        n = 0
        for a in alerts:
            watcher = self._watchers_by_id.get(a.rule_id)
            if watcher is not None:
                if a.state is FIRING:
                    watcher.restore(a.device_id, a.since_ns)
                    self._restored.add((a.rule_id, a.device_id))
                    n += 1
                continue
            comp = self._by_id.get(a.rule_id)
            if comp is None or a.state not in (FIRING, PENDING):
                continue
            levels = [str(level.severity) for level in comp.rule.levels]
            level = levels.index(str(a.severity)) if str(a.severity) in levels else 0
            st = comp.states.get(a.device_id)
            if st is None:
                st = comp.states[a.device_id] = comp.new_state()
            m = st.machine
            m.state, m.level, m.since_ns, m.clear_since_ns = a.state, level, a.since_ns, None
            m.samples = max(1, comp.timing.for_samples if a.state is FIRING else 1)
            st.hold_ns = a.updated_ns
            self._track(comp, st, a.device_id)
            self._restored.add((a.rule_id, a.device_id))
            n += 1
        return n

    def warm_up(self, readings: Iterable[Reading]) -> list[AlertTransition]:
        """Replay history (oldest first) into windows and states without emitting transitions.

        Returns only the transitions of alerts put back by `restore` that history moved on
        (e.g. the water fell after the last stored transition): the store must hear of those.
        """
        self._emitting = False
        self._warm_out = []
        try:
            for reading in readings:
                self.process(reading)
        finally:
            self._emitting = True
        out, self._warm_out = self._warm_out, []
        return out

    def state_of(self, rule_id: str, device_id: str) -> RuleState | None:
        """The current state of one (rule, device), None when the rule has never seen the device."""
        watcher = self._watchers_by_id.get(rule_id)
        if watcher is not None:
            return watcher.state_of(device_id)
        comp = self._by_id.get(rule_id)
        if comp is None:
            raise KeyError(f"no rule {rule_id!r}")
        st = comp.states.get(device_id)
        if st is None:
            return None
        m = st.machine
        sev = comp.rule.levels[m.level].severity if m.level >= 0 else None
        return RuleState(m.state, sev, st.value, m.samples,
                         m.since_ns if m.state is PENDING else None, m.clear_since_ns,
                         st.last_ns if st.last_ns >= 0 else None, st.window.count, st.window.coverage_s)

    def state_stats(self) -> list[RuleStateStats]:
        """Memory of the rule state by rule (sampled above footprint.SAMPLE states): for `/metrics` and benchmarks."""
        out = [measure(c.rule.id, c.states, _state_size) for c in self._compiled]
        out.extend(w.footprint() for w in self._watchers)
        return out

    # -- the hot path --------------------------------------------------------------------------

    def process(self, reading: Reading) -> list[AlertTransition]:
        """Evaluate every matching rule on one reading; returns the transitions it causes (often none)."""
        out: list[AlertTransition] = []
        device_id = reading.device_id
        time_ns = reading.time_ns
        history = reading.history
        previous = self._last_seen.get(device_id)
        if previous is None or time_ns > previous or (not history and previous - time_ns > self._late_ns):
            self._last_seen[device_id] = time_ns
        if not history and time_ns > self._newest_ns:
            self._newest_ns = time_ns
        for watcher in self._watchers:
            resolved = watcher.seen(device_id, reading.kind, time_ns, previous, reading.tags, self._tags_of)
            if resolved is not None and (self._emitting or (resolved.rule_id, device_id) in self._restored):
                (out if self._emitting else self._warm_out).append(resolved)
        route = self._routes.get(device_id)
        reading_tags = reading.tags
        if route is None or route.kind != reading.kind or (
                route.reading_tags is not reading_tags and route.reading_tags != reading_tags):
            route = self._route(device_id, reading.kind, reading_tags)
        fields = reading.fields
        health = reading.health
        for comp, limits in route.rules:
            raw = fields.get(comp.field)
            if raw is None:
                raw = health.get(comp.field)
                if raw is None:
                    continue
            if isinstance(raw, str):
                continue
            value = float(raw)
            if not isfinite(value):
                continue
            st = comp.states.get(device_id)
            if st is None:
                st = comp.states[device_id] = comp.new_state()
            last_ns = st.last_ns
            if time_ns <= last_ns:
                if history or last_ns - time_ns <= comp.late_ns:
                    continue  # a late or redelivered reading: the window has moved on
                st.window, st.trend = comp.new_window()  # the clock jumped back: restart the window here
                last_ns = -1
            quiet = history and time_ns < self._newest_ns - comp.horizon_ns  # old data: fills windows only
            st.tags = reading_tags
            machine = st.machine
            moved = False
            due_ns = st.due_ns  # == machine.due_at(timing) here: `advance` can only act once it has passed
            if due_ns is not None and time_ns >= due_ns and not quiet:
                moved = True
                change = machine.advance(comp.timing, time_ns)
                if change is not None:
                    self._emit(comp, st, device_id, change, out)
            cap = route.interval_s
            gap = (time_ns - last_ns) / _NS
            weight = cap if last_ns < 0 or cap < gap else gap  # min(gap, cap) without the call
            st.window.add(time_ns, value, weight)
            if st.trend is not None:
                st.trend.add(time_ns, value, weight)
            st.last_ns = time_ns
            if time_ns <= st.hold_ns:
                continue  # history the restored state already reflects
            window = st.window
            if window.count < comp.min_samples or window.coverage_s < comp.min_coverage_s:
                result = None
            else:
                result = window.value() if comp.plain else self._trend_value(comp, window)
            if result is not None and not quiet:
                st.value = result
                if limits is None:
                    limits = self._scheduled_limits(comp, time_ns, route.zone)
                met, holds = _compare(comp.op, limits, st, result)
                if met >= 0 or machine.state is PENDING or machine.state is FIRING:
                    # (inactive or resolved with no level met, `observe` changes nothing)
                    moved = True
                    change = machine.observe(comp.timing, time_ns, met, holds)
                    if change is not None:
                        self._emit(comp, st, device_id, change, out)
            if moved:
                self._track(comp, st, device_id)
        return out

    def tick(self, now_ns: int) -> list[AlertTransition]:
        """Let time pass to `now_ns`: `for` durations, `keep_firing_for` expiry and silent devices."""
        out: list[AlertTransition] = []
        self._newest_ns = max(self._newest_ns, now_ns)
        due = self._due
        while due and due[0][0] <= now_ns:
            due_ns, index, device_id = heapq.heappop(due)
            comp = self._compiled[index]
            st = comp.states[device_id]
            if st.due_ns != due_ns:
                self._due_stale = max(0, self._due_stale - 1)
                continue  # superseded: the state moved on since this entry was queued
            st.due_ns = None
            change = st.machine.advance(comp.timing, now_ns)
            if change is not None:
                self._emit(comp, st, device_id, change, out)
            self._track(comp, st, device_id)
        for watcher in self._watchers:
            out.extend(watcher.tick(now_ns, self._last_seen))
        out.sort(key=lambda t: t.time_ns)
        return out

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _trend_value(comp: _Compiled, window: Window) -> float | None:
        """The value of a slope or eta rule from its (ready) window."""
        rule = comp.rule
        if comp.aggregate == "slope":
            slope = window.value()
            return None if slope is None else slope * rule.per_s
        return _eta(window, rule.target, rule.rising, rule.min_samples)  # type: ignore[arg-type]

    @staticmethod
    def _scheduled_limits(comp: _Compiled, time_ns: int, zone: str) -> _Limits:
        """The limits of a rule with a schedule at `time_ns`; outside every period, no limit at all."""
        period = comp.period_of_minute[comp.clock.minute_of_day(time_ns)]  # type: ignore[index,union-attr]
        return _NO_LIMITS if period is None else comp.thresholds(period, zone)

    def _track(self, comp: _Compiled, st: _DeviceState, device_id: str) -> None:
        """Queue the state for `tick` when only time can move it next (lazy: stale entries are skipped)."""
        due = st.machine.due_at(comp.timing)
        if due != st.due_ns:
            if st.due_ns is not None:
                self._due_stale += 1
            st.due_ns = due
            if due is not None:
                heapq.heappush(self._due, (due, comp.index, device_id))
            if self._due_stale > _COMPACT_AT and 2 * self._due_stale > len(self._due):
                self._compact_due()

    def _compact_due(self) -> None:
        """Drop superseded entries from the due-heap: at most one live entry per (rule, device) stays.

        Run when more than half the heap is superseded, so its cost (linear in the heap) is paid
        for by the pushes that superseded them, and the heap stays within 2 × live + _COMPACT_AT.
        """
        compiled = self._compiled
        live = {e for e in self._due if compiled[e[1]].states[e[2]].due_ns == e[0]}
        self._due[:] = live  # in place: `tick` may be iterating this very list
        heapq.heapify(self._due)
        self._due_stale = 0

    @property
    def due_entries(self) -> int:
        """Entries in the due-heap (live ones and superseded ones not yet compacted away)."""
        return len(self._due)

    def _emit(self, comp: _Compiled, st: _DeviceState, device_id: str, change: Change,
              out: list[AlertTransition]) -> None:
        if not self._emitting:
            if (comp.rule.id, device_id) not in self._restored:
                return
            out = self._warm_out
        rule = comp.rule
        level = rule.levels[max(change.level, 0)]
        resolving = change.to_state is AlertState.RESOLVED
        threshold = st.clear_thr if resolving else st.level_thr
        value = st.value if st.value is None or math.isfinite(st.value) else None
        eta = self._eta_of(comp, st)
        out.append(AlertTransition(
            rule_id=rule.id,
            device_id=device_id,
            from_state=change.from_state,
            to_state=change.to_state,
            severity=level.severity,
            time_ns=change.time_ns,
            value=value,
            threshold=threshold,
            route=level.route,
            summary=_summary(rule, change, value, threshold, eta),
            eta_s=eta,
            labels=_labels(st.tags, rule.labels),
        ))

    @staticmethod
    def _eta_of(comp: _Compiled, st: _DeviceState) -> float | None:
        rule = comp.rule
        if rule.aggregate == "eta":
            eta = st.value
        elif rule.eta is not None and st.trend is not None:
            eta = _eta(st.trend, rule.eta.target, rule.rising, rule.eta.min_samples)
        else:
            return None
        return eta if eta is not None and math.isfinite(eta) else None

    def _route(self, device_id: str, kind: str, reading_tags: tuple[tuple[str, str], ...]) -> _Route:
        """Select the rules for a device's readings once (see `_Route` for when it is rebuilt)."""
        tags = self._tags_of(device_id, reading_tags)
        rules = self._by_kind.get(kind)
        if rules is None:
            rules = self._rules_for_kind(kind)
        zone = tags.get("zone_class") or ANY
        selected = tuple((c, None if c.period_of_minute is not None else c.thresholds(ANY, zone)) for c in rules
                         if (c.rule.select.devices is None or device_id in c.rule.select.devices)
                         and (not c.needs_tags or c.rule.select.matches(device_id, tags)))
        selected = self._selections.setdefault(selected, selected)  # ~60 B a rule, per device otherwise
        route = _Route(kind, reading_tags, selected, zone, self._interval_of(device_id))
        self._routes[device_id] = route
        return route

    def _rules_for_kind(self, kind: str) -> tuple[_Compiled, ...]:
        found = tuple(c for c in self._compiled if c.rule.select.kinds is None or kind in c.rule.select.kinds)
        self._by_kind[kind] = found
        return found

    def _tags_of(self, device_id: str, reading_tags: tuple[tuple[str, str], ...]) -> dict[str, str]:
        """The reading's tags, completed from the registry where the reading lacks one.

        Not cached: it runs when a device's route is (re)built and when a no-data rule first
        sees it, and a cached dict per device would cost ~400 bytes each at city scale.
        """
        tags = dict(reading_tags)
        registry = self._device_tags.get(device_id)
        if registry:
            for key in _TAG_KEYS_FROM_REGISTRY:
                if not tags.get(key) and registry.get(key):
                    tags[key] = registry[key]
        return tags

    def _interval_of(self, device_id: str) -> float:
        device = self._devices.get(device_id)
        return float(device.expected_interval_s) if device is not None else self._default_interval_s

    def _clock(self, tz: str) -> LocalClock:
        clock = self._clocks.get(tz)
        if clock is None:
            clock = self._clocks[tz] = LocalClock(tz)
        return clock


_NO_LIMITS: _Limits = ((), None)


def _state_size(st: _DeviceState) -> tuple[int, int]:
    """(window entries, bytes) of one (rule, device) state, its alert machine and windows included."""
    entries = st.window.entries
    size = sys.getsizeof(st) + st.window.nbytes() + _DICT_SLOT
    if st.trend is not None:
        entries += st.trend.entries
        size += st.trend.nbytes()
    return entries, size


def _compare(op: Callable[[float, float], bool], limits: _Limits, st: _DeviceState,
             value: float) -> tuple[int, bool]:
    """(index of the highest level met or -1, whether the value holds a firing alert); notes the limits in `st`."""
    levels, clear = limits
    met = -1
    for i, thr in enumerate(levels):
        if thr is not None and op(value, thr):
            met = i
            st.level_thr = thr
    if met < 0:
        st.level_thr = levels[0] if levels else None
    st.clear_thr = clear
    return met, clear is not None and op(value, clear)


def _eta(window: Window, target: float, rising: bool, min_samples: int) -> float | None:
    if not isinstance(window, TrendWindow) or window.count < min_samples:
        return None
    slope = window.slope_per_s()
    last = window.last
    if slope is None or last is None:
        return None
    return time_to_threshold(last, slope, target, rising=rising)


def _labels(tags: tuple[tuple[str, str], ...], rule_labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    if not rule_labels:
        return tags
    merged = dict(tags)
    merged.update(rule_labels)
    return tuple(sorted(merged.items()))


def _summary(rule: Rule, change: Change, value: float | None, threshold: float | None, eta: float | None) -> str:
    """One line a person reads in a case or a chat message."""
    if rule.aggregate == "eta":
        what = f"time for {rule.field} to reach {rule.target:g}"
    elif rule.aggregate == "last":
        what = rule.field
    else:
        what = f"{rule.aggregate}({rule.field}, {format_duration(rule.window_s)})"
    if rule.aggregate == "eta":
        shown = "never at the current trend" if value is None else format_duration(round(value))
    else:
        shown = "n/a" if value is None else f"{value:.4g}"
    sym = OP_SYMBOLS[rule.op]
    if rule.aggregate == "eta" and threshold is not None:
        limit = format_duration(round(threshold))
    else:
        limit = "n/a" if threshold is None else f"{threshold:g}"
    if change.to_state is AlertState.RESOLVED:
        text = f"{rule.id} resolved: {what} = {shown} (clear at {limit})"
    elif change.to_state is AlertState.INACTIVE:
        text = f"{rule.id} no longer pending: {what} = {shown}"
    else:
        word = {PENDING: "pending", FIRING: "firing"}[change.to_state]
        text = f"{rule.id} {word}: {what} = {shown} {sym} {limit}"
    if eta is not None and rule.eta is not None and change.to_state is not AlertState.RESOLVED:
        target = rule.eta.target
        text += f"; reaches {target:g} in {format_duration(round(eta))}" if eta > 0 else f"; at or past {target:g}"
    return text

