"""The rules engine: readings in, alert transitions out, with all state in memory.

`process` does O(1) amortised work per reading and matching rule (windows with running
sums and monotonic deques; Theil–Sen only for trend rules, on a bounded window) and never
touches InfluxDB; `warm_up` replays history at start; `tick` lets time pass (a `for`
elapsing, `keep_firing_for` expiring, a device going silent). Time always comes from the
readings or from `tick`'s argument, never from the wall clock.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable

from provisioning.device import Device
from rules.durations import format_duration
from rules.machine import FIRING, PENDING, AlertMachine, Change, RuleState, Timing
from rules.model import ANY, OP_SYMBOLS, OPS, Rule
from rules.nodata import SilenceWatcher
from rules.schedule import LocalClock, period_at
from rules.transition import AlertState, AlertTransition
from rules.trend import time_to_threshold
from rules.warmup import warm_up_queries
from rules.windows import TrendWindow, Window, make_window
from storage.reading import Reading

_NS = 1_000_000_000
_TAG_KEYS_FROM_REGISTRY = ("district", "zone_class", "model", "site")
_ETA_MAX_SAMPLES = 64  # bounds the O(n²) Theil–Sen of an `eta` annotation


class _DeviceState:
    """What one (rule, device) keeps: its window(s), its machine, and what the last evaluation saw."""

    __slots__ = ("clear_thr", "due_ns", "last_ns", "level_thr", "machine", "tags", "trend", "value", "window")

    def __init__(self, window: Window, trend: TrendWindow | None) -> None:
        self.window = window
        self.trend = trend
        self.machine = AlertMachine()
        self.last_ns = -1
        self.value: float | None = None
        self.level_thr: float | None = None
        self.clear_thr: float | None = None
        self.tags: tuple[tuple[str, str], ...] = ()
        self.due_ns: int | None = None


class _Compiled:
    """A rule with what the hot path needs precomputed."""

    __slots__ = ("clock", "index", "needs_tags", "needs_zone", "op", "rule", "states", "timing")

    def __init__(self, index: int, rule: Rule, clock: LocalClock) -> None:
        self.index = index
        self.rule = rule
        self.op = OPS[rule.op]
        self.clock = clock if rule.schedule else None
        self.timing = Timing(int(rule.for_s * _NS), rule.for_samples, int(rule.keep_firing_for_s * _NS))
        self.needs_tags = rule.select.needs_tags
        thresholds = [lv.threshold for lv in rule.levels] + ([rule.clear] if rule.clear else [])
        self.needs_zone = any(z != ANY for th in thresholds for (_, z) in th.values)
        self.states: dict[str, _DeviceState] = {}

    def new_state(self) -> _DeviceState:
        r = self.rule
        window = make_window(r.aggregate, r.window_s, r.max_samples, r.per_s)
        trend = TrendWindow(r.eta.window_s, _ETA_MAX_SAMPLES) if r.eta else None
        return _DeviceState(window, trend)


class Engine:
    """Evaluates `rules` on readings; see the module docstring for the contract.

    `tz` is the time zone for schedules of rules that carry none (the loader stamps its own
    `tz` on rules from files unless they name one: pass both the same value); `silent_factor`
    is the no-data factor for rules that do not set one; `default_interval_s` stands in
    for the expected report interval of a device the registry does not know.
    """

    def __init__(self, rules: Iterable[Rule], *, tz: str = "Asia/Shanghai", silent_factor: float = 3.0,
                 default_interval_s: float = 300.0) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._clocks: dict[str, LocalClock] = {}
        self._compiled = [_Compiled(i, r, self._clock(r.timezone or tz))
                          for i, r in enumerate(r for r in self.rules if not r.is_no_data)]
        self._by_id = {c.rule.id: c for c in self._compiled}
        self._watchers = [SilenceWatcher(r, r.no_data.factor or silent_factor,  # type: ignore[union-attr]
                                         self._interval_of) for r in self.rules if r.is_no_data]
        self._watchers_by_id = {w.rule.id: w for w in self._watchers}
        self._by_kind: dict[str, tuple[_Compiled, ...]] = {}
        self._due: list[tuple[int, int, str]] = []  # heap of (due_ns, rule index, device id)
        self._devices: dict[str, Device] = {}
        self._device_tags: dict[str, dict[str, str]] = {}
        self._tag_cache: dict[str, tuple[tuple[tuple[str, str], ...], dict[str, str]]] = {}
        self._default_interval_s = default_interval_s
        self._last_seen: dict[str, int] = {}
        self._emitting = True

    # -- configuration -------------------------------------------------------------------------

    def set_devices(self, devices: Iterable[Device]) -> None:
        """Give the engine the registry: zone class, district and expected interval per device."""
        self._devices = {d.id: d for d in devices}
        self._device_tags = {d.id: dict(d.tags()) for d in self._devices.values()}
        self._tag_cache.clear()
        for w in self._watchers:
            w.set_devices(self._devices, self._device_tags)

    def warm_up_queries(self, now_ns: int) -> list[str]:
        """The InfluxQL to run at start, one per kind, each bounded by the longest look-back its rules need."""
        return warm_up_queries(self.rules, now_ns)

    def warm_up(self, readings: Iterable[Reading]) -> None:
        """Replay history (oldest first) into windows and states without emitting transitions."""
        self._emitting = False
        try:
            for reading in readings:
                self.process(reading)
        finally:
            self._emitting = True

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

    # -- the hot path --------------------------------------------------------------------------

    def process(self, reading: Reading) -> list[AlertTransition]:
        """Evaluate every matching rule on one reading; returns the transitions it causes (often none)."""
        out: list[AlertTransition] = []
        device_id = reading.device_id
        time_ns = reading.time_ns
        previous = self._last_seen.get(device_id)
        if previous is None or time_ns > previous:
            self._last_seen[device_id] = time_ns
        for watcher in self._watchers:
            resolved = watcher.seen(device_id, reading.kind, time_ns, previous, reading.tags, self._tags_of)
            if resolved is not None and self._emitting:
                out.append(resolved)
        rules = self._by_kind.get(reading.kind)
        if rules is None:
            rules = self._rules_for_kind(reading.kind)
        if not rules:
            return out
        fields = reading.fields
        health = reading.health
        tags: dict[str, str] | None = None
        for comp in rules:
            rule = comp.rule
            sel = rule.select
            if sel.devices is not None and device_id not in sel.devices:
                continue
            if comp.needs_tags:
                if tags is None:
                    tags = self._tags_of(device_id, reading.tags)
                if not sel.matches(device_id, tags):
                    continue
            raw = fields.get(rule.field)
            if raw is None:
                raw = health.get(rule.field)
                if raw is None:
                    continue
            if isinstance(raw, str):
                continue
            value = float(raw)
            if not math.isfinite(value):
                continue
            st = comp.states.get(device_id)
            if st is None:
                st = comp.states[device_id] = comp.new_state()
            if time_ns <= st.last_ns:
                continue  # a late or redelivered reading: the window has moved on
            st.tags = reading.tags
            change = st.machine.advance(comp.timing, time_ns)
            if change is not None:
                self._emit(comp, st, device_id, change, out)
            self._add_sample(comp, st, device_id, time_ns, value)
            result = self._value_of(comp, st)
            if result is None:
                self._track(comp, st, device_id)
                continue
            st.value = result
            if comp.needs_zone and tags is None:
                tags = self._tags_of(device_id, reading.tags)
            met, holds = self._compare(comp, st, time_ns, result, tags)
            change = st.machine.observe(comp.timing, time_ns, met, holds)
            if change is not None:
                self._emit(comp, st, device_id, change, out)
            self._track(comp, st, device_id)
        return out

    def tick(self, now_ns: int) -> list[AlertTransition]:
        """Let time pass to `now_ns`: `for` durations, `keep_firing_for` expiry and silent devices."""
        out: list[AlertTransition] = []
        due = self._due
        while due and due[0][0] <= now_ns:
            due_ns, index, device_id = heapq.heappop(due)
            comp = self._compiled[index]
            st = comp.states[device_id]
            if st.due_ns != due_ns:
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

    def _add_sample(self, comp: _Compiled, st: _DeviceState, device_id: str, time_ns: int, value: float) -> None:
        cap = self._interval_of(device_id)
        weight = cap if st.last_ns < 0 else min((time_ns - st.last_ns) / _NS, cap)
        st.window.add(time_ns, value, weight)
        if st.trend is not None:
            st.trend.add(time_ns, value, weight)
        st.last_ns = time_ns

    @staticmethod
    def _value_of(comp: _Compiled, st: _DeviceState) -> float | None:
        rule = comp.rule
        window = st.window
        if window.count < rule.min_samples or window.coverage_s < rule.min_coverage_s:
            return None
        if rule.aggregate == "slope":
            slope = window.value()
            return None if slope is None else slope * rule.per_s
        if rule.aggregate == "eta":
            return _eta(window, rule.target, rule.rising, rule.min_samples)  # type: ignore[arg-type]
        return window.value()

    def _compare(self, comp: _Compiled, st: _DeviceState, time_ns: int, value: float,
                 tags: dict[str, str] | None) -> tuple[int, bool]:
        rule = comp.rule
        if comp.clock is not None:
            period = period_at(rule.schedule, comp.clock.minute_of_day(time_ns))
            if period is None:
                st.level_thr = st.clear_thr = None
                return -1, False
        else:
            period = ANY
        zone = (tags.get("zone_class") or ANY) if tags is not None else ANY
        op = comp.op
        met = -1
        for i, level in enumerate(rule.levels):
            thr = level.threshold.resolve(period, zone)
            if thr is not None and op(value, thr):
                met = i
                st.level_thr = thr
        if met < 0:
            st.level_thr = rule.levels[0].threshold.resolve(period, zone)
        clear = rule.clear.resolve(period, zone) if rule.clear is not None else None
        st.clear_thr = clear
        return met, clear is not None and op(value, clear)

    def _track(self, comp: _Compiled, st: _DeviceState, device_id: str) -> None:
        """Queue the state for `tick` when only time can move it next (lazy: stale entries are skipped)."""
        due = st.machine.due_ns(comp.timing)
        if due != st.due_ns:
            st.due_ns = due
            if due is not None:
                heapq.heappush(self._due, (due, comp.index, device_id))

    def _emit(self, comp: _Compiled, st: _DeviceState, device_id: str, change: Change,
              out: list[AlertTransition]) -> None:
        if not self._emitting:
            return
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

    def _rules_for_kind(self, kind: str) -> tuple[_Compiled, ...]:
        found = tuple(c for c in self._compiled if c.rule.select.kinds is None or kind in c.rule.select.kinds)
        self._by_kind[kind] = found
        return found

    def _tags_of(self, device_id: str, reading_tags: tuple[tuple[str, str], ...]) -> dict[str, str]:
        """The reading's tags, completed from the registry where the reading lacks one."""
        cached = self._tag_cache.get(device_id)
        if cached is not None and cached[0] == reading_tags:
            return cached[1]
        tags = dict(reading_tags)
        registry = self._device_tags.get(device_id)
        if registry:
            for key in _TAG_KEYS_FROM_REGISTRY:
                if not tags.get(key) and registry.get(key):
                    tags[key] = registry[key]
        self._tag_cache[device_id] = (reading_tags, tags)
        return tags

    def _interval_of(self, device_id: str) -> float:
        device = self._devices.get(device_id)
        return float(device.expected_interval_s) if device is not None else self._default_interval_s

    def _clock(self, tz: str) -> LocalClock:
        clock = self._clocks.get(tz)
        if clock is None:
            clock = self._clocks[tz] = LocalClock(tz)
        return clock


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

