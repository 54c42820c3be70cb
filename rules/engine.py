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
from array import array
from collections.abc import Callable, Iterable
from math import isfinite

from core.device import Device
from core.reading import Reading
from core.timing import format_duration
from core.transition import AlertState, AlertTransition
from rules.footprint import RuleStateStats, sampled
from rules.machine import FIRING, INACTIVE, PENDING, RESOLVED, AlertMachine, Change, RestoredAlert, RuleState, Timing
from rules.model import ANY, OP_SYMBOLS, OPS, Rule, TrendNow
from rules.nodata import SilenceWatcher, Slots
from rules.schedule import LocalClock, period_at
from rules.shared_windows import MeanGroup
from rules.trend import time_to_threshold
from rules.warmup import warm_up_queries
from rules.windows import PointStore, Window, WindowStore, make_store

BAD = "bad"
"""The `quality` field value that keeps a reading from rules with `ignore_bad` (docs/schema.md)."""

_NS = 1_000_000_000
_NAN = math.nan
_COMPACT_AT = 256  # superseded due-heap entries tolerated before a compaction is considered
_TAG_KEYS_FROM_REGISTRY = ("district", "zone_class", "model", "site")
_ETA_MAX_SAMPLES = 64  # bounds the O(n²) Theil–Sen of an `eta` annotation
_STATES = (INACTIVE, PENDING, FIRING, RESOLVED)  # an alert state's code is its index here
_CODE = {s: i for i, s in enumerate(_STATES)}
_LIVE = (1, 2)  # the codes of PENDING and FIRING: the states with a machine object


class _Active(AlertMachine):
    """The alert machine of a (rule, device) while it is pending or firing, with what its transitions need.

    Only these few have an object: every other (rule, device) is its state code and level in
    the rule's columns (`_Compiled.codes`, `.levels`).
    """

    __slots__ = ("clear_thr", "due_ns", "level_thr", "noted_clear", "tags")

    def __init__(self, state: AlertState, tags: tuple[tuple[str, str], ...]) -> None:
        super().__init__()
        self.state = state
        self.tags = tags
        self.due_ns: int | None = None
        self.level_thr: float | None = None
        self.clear_thr: float | None = None
        self.noted_clear: int | None = None  # the `clear_since_ns` last reported in `Engine.clearing`


class _Compiled:
    """A rule with what the hot path needs precomputed, and its state for every device it has seen.

    State is kept as columns indexed by a row per device (`row_of[slot]`, the device's slot
    in the engine): the newest reading time taken, the last evaluated value (NaN: none), the
    alert state's code and level, and the window store's rows. Pending and firing machines
    live in `active`; `hold` has the rows `restore` put back (see `Engine.restore`).
    """

    __slots__ = ("_thresholds", "active", "aggregate", "clock", "codes", "field", "followers", "group", "hold",
                 "horizon_ns", "ignore_bad", "index", "last_ns", "late_ns", "levels", "min_coverage_s", "min_samples",
                 "min_span_s", "needs_tags", "op", "period_of_minute", "plain", "row_of", "rule", "siblings", "timing",
                 "trend", "values", "window")

    def __init__(self, index: int, rule: Rule, clock: LocalClock, late_tolerance_s: float = 120.0) -> None:
        self.index = index
        self.rule = rule
        self.field = rule.field
        self.aggregate = rule.aggregate
        self.plain = rule.aggregate not in ("slope", "eta")  # the window's value is the rule's value
        self.min_samples = rule.min_samples
        self.min_span_s = rule.min_span_s
        self.min_coverage_s = rule.min_coverage_s
        self.ignore_bad = rule.ignore_bad
        self.op = OPS[rule.op]
        self.clock = clock if rule.schedule else None
        # the schedule as a table of 1,440 local minutes -> period name (None: uncovered)
        self.period_of_minute = tuple(period_at(rule.schedule, m) for m in range(1440)) if rule.schedule else None
        self.timing = Timing(int(rule.for_s * _NS), rule.for_samples, int(rule.keep_firing_for_s * _NS))
        self.late_ns = int(max(rule.window_s, late_tolerance_s) * _NS)
        self.horizon_ns = int((max(rule.window_s, rule.for_s) + late_tolerance_s) * _NS)
        self.needs_tags = rule.select.needs_tags
        self._thresholds: dict[tuple[str, str], _Limits] = {}
        self.row_of = array("i")  # by device slot: the device's row, -1 for none
        self.last_ns = array("q")
        self.values = array("d")
        self.codes = bytearray()
        self.levels = array("b")
        self.active: dict[int, _Active] = {}
        self.hold: dict[int, int] = {}
        self.window: WindowStore = make_store(rule.aggregate, rule.window_s, rule.max_samples, rule.per_s,
                                              rule.resolution_s)
        self.trend = PointStore(rule.eta.window_s, _ETA_MAX_SAMPLES) if rule.eta else None
        self.group: MeanGroup | None = None  # the rules sharing this one's buckets (`share_windows`)
        self.siblings: tuple[_Compiled, ...] = ()  # the group's rules, this one included (rows made together)
        self.followers: tuple[_Compiled, ...] = ()  # the group's lead: the others, checked before it adds

    def join(self, group: MeanGroup, members: list[_Compiled]) -> None:
        """Keep this rule's windows in `group` with `members` (the first the lead: the engine visits it first)."""
        i = members.index(self)
        self.group = group
        self.window = group.member(i)
        self.siblings = tuple(members)
        self.row_of = members[0].row_of  # one row index for the group: a device's row is the same in each
        if i == 0:
            self.followers = tuple(members[1:])
            self.plain = False  # (the lead's own path in `Engine.process`)

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

    def row(self, slot: int) -> int:
        """The device's row, -1 when the rule has none for it."""
        return self.row_of[slot] if slot < len(self.row_of) else -1

    def make_row(self, slot: int) -> int:
        """The device's row, created (empty) when it has none."""
        row_of = self.row_of
        if slot >= len(row_of):
            row_of.extend(array("i", [-1]) * (slot + 1 - len(row_of)))
        row = row_of[slot]
        if row < 0:
            if self.group is not None:
                row = row_of[slot] = self.group.new_row()
                for comp in self.siblings:
                    comp._new_row()
            else:
                row = row_of[slot] = self.window.new_row()
                self._new_row()
        return row

    def _new_row(self) -> None:
        if self.trend is not None:
            self.trend.new_row()
        self.last_ns.append(-1)
        self.values.append(_NAN)
        self.codes.append(0)
        self.levels.append(-1)

    def footprint(self) -> RuleStateStats:
        """States (rows), window entries and bytes of this rule (see rules/footprint.py)."""
        window, trend = self.window, self.trend

        def row_cost(row: int) -> tuple[int, int]:
            entries, size = window.entries(row), window.row_array_bytes(row)
            if trend is not None:
                entries += trend.entries(row)
                size += trend.row_array_bytes(row)
            return entries, size

        columns = (window.column_bytes() + (trend.column_bytes() if trend is not None else 0)
                   + sum(sys.getsizeof(c) for c in (self.row_of, self.last_ns, self.values, self.codes, self.levels))
                   + sys.getsizeof(self.active) + sys.getsizeof(self.hold) + len(self.active) * _ACTIVE_BYTES)
        return sampled(self.rule.id, window.rows, row_cost, columns, len(self.active))


_Limits = tuple[tuple[float | None, ...], float | None]  # each level's limit, and the clear limit
_ACTIVE_BYTES = sys.getsizeof(_Active(INACTIVE, ()))


class _Profile:
    """What a device's readings go through: shared by every device with the same kind, rules, zone class and
    report interval (a handful of objects for a city, not one per device).

    `rules` pairs each matching rule with its (level limits, clear limit) for the zone class
    when the rule has no schedule (None otherwise: the limits then depend on the local time);
    `zone` and `interval_s` come from the registry. A device's profile is chosen on its first
    reading and again when a reading comes with another kind or other tags, or the registry
    changed (`gen`).
    """

    __slots__ = ("gen", "interval_s", "kind", "rules", "zone")

    def __init__(self, gen: int, kind: str, rules: tuple[tuple[_Compiled, _Limits | None], ...], zone: str,
                 interval_s: float) -> None:
        self.gen = gen
        self.kind = kind
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
    (see the module docstring). With `gate_bad`, a reading whose `quality` field is "bad"
    reaches only the rules with `ignore_bad = false` (rules/gate.py); no-data rules see it.
    """

    def __init__(self, rules: Iterable[Rule], *, tz: str = "Asia/Shanghai", silent_factor: float = 3.0,
                 default_interval_s: float = 300.0, late_tolerance_s: float = 120.0, gate_bad: bool = False) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._gate_bad = gate_bad
        self._clocks: dict[str, LocalClock] = {}
        self._late_ns = int(late_tolerance_s * _NS)
        self._newest_ns = -1  # the newest live reading time or tick: "now" for the history horizon
        value_rules = [r for r in self.rules if not r.is_no_data and not r.is_quality]  # (quality: RuleSet)
        if gate_bad:  # the rules that take every reading first, as when they ran in an engine of their own
            value_rules.sort(key=lambda r: r.ignore_bad)
        self._compiled = [_Compiled(i, r, self._clock(r.timezone or tz), late_tolerance_s)
                          for i, r in enumerate(value_rules)]
        self._by_id = {c.rule.id: c for c in self._compiled}
        _share_windows(self._compiled)
        slots = Slots(self._slot, self._device_id_at, self._seen_at, self._find_slot)
        self._watchers = [SilenceWatcher(r, r.no_data.factor or silent_factor,  # type: ignore[union-attr]
                                         self._interval_of, self._labels_of, slots) for r in self.rules if r.is_no_data]
        self._watchers_by_id = {w.rule.id: w for w in self._watchers}
        self._by_kind: dict[str, tuple[_Compiled, ...]] = {}
        self._due: list[tuple[int, int, int, str]] = []  # heap of (due_ns, rule index, row, device id)
        self._due_stale = 0  # entries of `_due` superseded since the last compaction (an upper bound)
        self._devices: dict[str, Device] = {}
        # a device is a slot in a few columns (no object per device): its id, its newest reading
        # time, its profile (the rules it goes through) and the tags of its newest reading
        self._slot_of: dict[str, int] = {}
        self._ids: list[str] = []
        self._seen = array("q")  # -1: no reading yet
        self._profile: list[_Profile | None] = []
        self._tags: list[tuple[tuple[str, str], ...]] = []
        self._gen = 0  # the registry's generation: profiles chosen under an older one are chosen again
        self._profiles: dict[tuple, _Profile] = {}  # one object per distinct profile
        self._intervals: dict[float, float] = {}  # one float object per distinct report interval
        self._default_interval_s = default_interval_s
        self._emitting = True
        self._restored: set[tuple[str, str]] = set()  # (rule id, device id) put back by `restore`
        self.clearing: list[tuple[str, str, int | None]] | None = None
        """Set to a list to be told when a firing alert's `keep_firing_for` clock starts (rule id, device id,
        the time the value fell below the clear threshold) or stops (None): what the alert store keeps so that
        a restart can put the clock back (`RestoredAlert.clear_since_ns`). None: not recorded."""
        self._warm_out: list[AlertTransition] = []

    # -- configuration -------------------------------------------------------------------------

    def set_devices(self, devices: Iterable[Device]) -> None:
        """Give the engine the registry: zone class, district and expected interval per device."""
        self._devices = {d.id: d for d in devices}
        self._gen += 1
        self._profiles.clear()
        for w in self._watchers:
            w.set_devices(self._devices)

    def device(self, device_id: str) -> Device | None:
        """The registry's device of that id (None when unknown)."""
        return self._devices.get(device_id)

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
            row = comp.make_row(self._slot(a.device_id))
            m = comp.active.get(row)
            if m is None:
                m = comp.active[row] = _Active(INACTIVE, ())
            m.state, m.level, m.since_ns = a.state, level, a.since_ns
            m.clear_since_ns = m.noted_clear = a.clear_since_ns if a.state is FIRING else None
            m.samples = max(1, comp.timing.for_samples if a.state is FIRING else 1)
            comp.hold[row] = a.updated_ns
            if comp.group is not None:
                comp.group.split(row)  # (this rule skips history the others take)
            self._track(comp, row, m, a.device_id)
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
        slot = self._find_slot(device_id)
        row = comp.row(slot) if slot >= 0 else -1
        if row < 0 or (comp.group is not None and comp.last_ns[row] < 0 and not comp.codes[row]
                       and row not in comp.active):
            return None  # (a rule sharing buckets has the row its group made, and no reading yet)
        m = comp.active.get(row)
        if m is not None:
            state, level, samples, clear_since = m.state, m.level, m.samples, m.clear_since_ns
        else:
            state, level, samples, clear_since = _STATES[comp.codes[row]], comp.levels[row], 0, None
        sev = comp.rule.levels[level].severity if level >= 0 else None
        value = comp.values[row]
        last_ns = comp.last_ns[row]
        return RuleState(state, sev, None if value != value else value, samples,
                         m.since_ns if m is not None and state is PENDING else None, clear_since,
                         last_ns if last_ns >= 0 else None, comp.window.count(row), comp.window.coverage(row))

    def trend_now(self, rule_id: str, device_id: str) -> TrendNow | None:
        """The newest reading one (rule, device) has seen, with its rate and time to the rule's target, computed
        now from the window (not frozen at the last transition; none from a trend not ready: `min_samples`,
        `min_span`), and since when it is below the clear level; None when the rule has not seen the device
        or is a no-data watcher."""
        comp = self._by_id.get(rule_id)
        slot = self._find_slot(device_id) if comp is not None else -1
        row = comp.row(slot) if comp is not None and slot >= 0 else -1
        if comp is None or row < 0 or comp.last_ns[row] < 0:
            return None
        rule = comp.rule
        trend = comp.trend if comp.plain or comp.followers else comp.window
        value = comp.values[row]
        if isinstance(trend, PointStore):
            need = (rule.min_samples, rule.min_span_s) if trend is comp.window else \
                (rule.eta.min_samples, rule.eta.min_span_s) if rule.eta else (2, 0.0)
            current = trend.last(row)
            rate = trend.slope_now(row) if _trend_ready(trend, row, *need) else None  # no rate from seconds
        else:
            current, rate = (value if rule.aggregate == "last" and value == value else None), None
        # the ETA from that same slope (Theil-Sen once a call: the desk asks for every flood alert of a snapshot)
        target = rule.target if rule.aggregate == "eta" else rule.eta.target if rule.eta is not None else None
        eta = time_to_threshold(current, rate, target, rising=rule.rising) \
            if target is not None and rate is not None and current is not None else None
        m = comp.active.get(row) if comp.active else None
        return TrendNow(int(comp.last_ns[row]), current, rate if rate is not None and math.isfinite(rate) else None,
                        eta if eta is not None and math.isfinite(eta) else None,
                        m.clear_since_ns if m is not None else None)

    def window_of(self, rule_id: str, device_id: str) -> Window | None:
        """A view of one (rule, device)'s window (None when the rule has not seen the device): for tests and tools."""
        comp = self._by_id[rule_id]
        slot = self._find_slot(device_id)
        row = comp.row(slot) if slot >= 0 else -1
        return None if row < 0 else Window(comp.window, row)

    def state_stats(self) -> list[RuleStateStats]:
        """Memory of the rule state by rule (sampled above footprint.SAMPLE states): for `/metrics` and benchmarks.

        The engine's per-device bookkeeping (routes, slots, last reading times) is reported as
        the rule "(devices)".
        """
        out = [c.footprint() for c in self._compiled]
        out.extend(w.footprint() for w in self._watchers)
        out.append(self._devices_footprint())
        return out

    # -- the hot path --------------------------------------------------------------------------

    def process(self, reading: Reading) -> list[AlertTransition]:
        """Evaluate every matching rule on one reading; returns the transitions it causes (often none)."""
        out: list[AlertTransition] = []
        device_id = reading.device_id
        time_ns = reading.time_ns
        history = reading.history
        reading_tags = reading.tags
        slot = self._slot_of.get(device_id)
        if slot is None:
            slot = self._slot(device_id)
        profile = self._profile[slot]
        kept = self._tags[slot]
        if profile is None or profile.gen != self._gen or profile.kind != reading.kind or (
                kept is not reading_tags and kept != reading_tags):
            profile = self._choose_profile(slot, device_id, reading.kind, reading_tags)
        else:
            reading_tags = kept  # (equal: the alert machines keep the device's one tuple, not each reading's)
        seen = self._seen
        last_seen = seen[slot]
        previous = last_seen if last_seen >= 0 else None
        if previous is None or time_ns > previous or (not history and previous - time_ns > self._late_ns):
            seen[slot] = time_ns
        if not history and time_ns > self._newest_ns:
            self._newest_ns = time_ns
        for watcher in self._watchers:
            resolved = watcher.seen(slot, device_id, reading.kind, time_ns, previous, reading_tags, self.tags_of)
            if resolved is not None and (self._emitting or (resolved.rule_id, device_id) in self._restored):
                (out if self._emitting else self._warm_out).append(resolved)
        fields = reading.fields
        health = reading.health
        bad = self._gate_bad and fields.get("quality") == BAD
        for comp, limits in profile.rules:
            if bad and comp.ignore_bad:
                continue
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
            row = comp.row_of[slot]
            if row < 0:
                row = comp.make_row(slot)
            last_ns = comp.last_ns[row]
            window = comp.window
            if time_ns <= last_ns:
                if history or last_ns - time_ns <= comp.late_ns:
                    continue  # a late or redelivered reading: the window has moved on
                window.clear(row)  # the clock jumped back: restart the window here
                if comp.trend is not None:
                    comp.trend.clear(row)
                last_ns = -1
            quiet = history and time_ns < self._newest_ns - comp.horizon_ns  # old data: fills windows only
            active = comp.active
            machine = active.get(row) if active else None  # (only pending and firing machines are kept)
            moved = False
            if machine is not None:
                machine.tags = reading_tags
                due_ns = machine.due_ns  # == machine.due_at(timing): `advance` can only act once it has passed
                if due_ns is not None and time_ns >= due_ns and not quiet:
                    moved = True
                    change = machine.advance(comp.timing, time_ns)
                    if change is not None:
                        self._emit(comp, row, machine, device_id, change, out)
            cap = profile.interval_s
            gap = (time_ns - last_ns) / _NS
            weight = cap if last_ns < 0 or cap < gap else gap  # min(gap, cap) without the call
            trend = comp.trend
            if trend is not None:
                trend.add(row, time_ns, value, weight)
            comp.last_ns[row] = time_ns
            if comp.hold and time_ns <= comp.hold.get(row, -1):
                window.add(row, time_ns, value, weight)
                if moved:
                    self._track(comp, row, machine, device_id)  # type: ignore[arg-type]
                continue  # history the restored state already reflects
            if comp.plain:
                result = window.update(row, time_ns, value, weight, comp.min_samples, comp.min_coverage_s)
            elif comp.followers:  # the lead of rules sharing buckets: they part ways if the others miss this reading
                group = comp.group
                if not group.split_rows[row]:  # type: ignore[union-attr]
                    for other in comp.followers:  # (as the checks above: a finite number for its field)
                        raw = fields.get(other.field)
                        if raw is None:
                            raw = health.get(other.field)
                        if raw is None or isinstance(raw, str) or not isfinite(float(raw)):
                            group.split(row)  # type: ignore[union-attr]
                            break
                result = window.update(row, time_ns, value, weight, comp.min_samples, comp.min_coverage_s)
            else:
                window.add(row, time_ns, value, weight)
                if window.count(row) < comp.min_samples or window.coverage(row) < comp.min_coverage_s \
                        or window.span_s(row) < comp.min_span_s:  # type: ignore[attr-defined]
                    result = None
                else:
                    result = self._trend_value(comp, row)
            if result is not None and not quiet:
                comp.values[row] = result
                if limits is None:
                    limits = self._scheduled_limits(comp, time_ns, profile.zone)
                met, holds, level_thr = _compare(comp.op, limits, result)
                if met >= 0 or machine is not None:
                    # (inactive or resolved with no level met, `observe` changes nothing)
                    if machine is None:
                        machine = active[row] = _Active(_STATES[comp.codes[row]], reading_tags)
                    machine.level_thr = level_thr
                    machine.clear_thr = limits[1]
                    moved = True
                    change = machine.observe(comp.timing, time_ns, met, holds)
                    if change is not None:
                        self._emit(comp, row, machine, device_id, change, out)
            if moved:
                self._track(comp, row, machine, device_id)  # type: ignore[arg-type]
        return out

    def tick(self, now_ns: int) -> list[AlertTransition]:
        """Let time pass to `now_ns`: `for` durations, `keep_firing_for` expiry and silent devices."""
        out: list[AlertTransition] = []
        self._newest_ns = max(self._newest_ns, now_ns)
        due = self._due
        while due and due[0][0] <= now_ns:
            due_ns, index, row, device_id = heapq.heappop(due)
            comp = self._compiled[index]
            m = comp.active.get(row)
            if m is None or m.due_ns != due_ns:
                self._due_stale = max(0, self._due_stale - 1)
                continue  # superseded: the state moved on since this entry was queued
            m.due_ns = None
            change = m.advance(comp.timing, now_ns)
            if change is not None:
                self._emit(comp, row, m, device_id, change, out)
            self._track(comp, row, m, device_id)
        for watcher in self._watchers:
            out.extend(watcher.tick(now_ns))
        out.sort(key=lambda t: t.time_ns)
        return out

    # -- helpers -------------------------------------------------------------------------------

    def _trend_value(self, comp: _Compiled, row: int) -> float | None:
        """The value of a slope or eta rule from its (ready) window."""
        rule = comp.rule
        window: PointStore = comp.window  # type: ignore[assignment]
        if comp.aggregate == "slope":
            slope = window.slope_per_s(row)
            return None if slope is None else slope * rule.per_s
        return _eta(window, row, rule.target, rule.rising, rule.min_samples, rule.min_span_s)  # type: ignore[arg-type]

    @staticmethod
    def _scheduled_limits(comp: _Compiled, time_ns: int, zone: str) -> _Limits:
        """The limits of a rule with a schedule at `time_ns`; outside every period, no limit at all."""
        period = comp.period_of_minute[comp.clock.minute_of_day(time_ns)]  # type: ignore[index,union-attr]
        return _NO_LIMITS if period is None else comp.thresholds(period, zone)

    def _track(self, comp: _Compiled, row: int, m: _Active, device_id: str) -> None:
        """Queue the machine for `tick` when only time can move it next (lazy: stale entries are skipped);
        note its state in the rule's columns, and let it go once it is neither pending nor firing."""
        due = m.due_at(comp.timing)
        if due != m.due_ns:
            if m.due_ns is not None:
                self._due_stale += 1
            m.due_ns = due
            if due is not None:
                heapq.heappush(self._due, (due, comp.index, row, device_id))
            if self._due_stale > _COMPACT_AT and 2 * self._due_stale > len(self._due):
                self._compact_due()
        if m.clear_since_ns != m.noted_clear:
            m.noted_clear = m.clear_since_ns
            if self.clearing is not None:
                self.clearing.append((comp.rule.id, device_id, m.clear_since_ns))
        code = _CODE[m.state]
        comp.codes[row] = code
        comp.levels[row] = m.level
        if code not in _LIVE and comp.active.get(row) is m:
            del comp.active[row]

    def _compact_due(self) -> None:
        """Drop superseded entries from the due-heap: at most one live entry per (rule, device) stays.

        Run when more than half the heap is superseded, so its cost (linear in the heap) is paid
        for by the pushes that superseded them, and the heap stays within 2 × live + _COMPACT_AT.
        """
        compiled = self._compiled
        live = set()
        for e in self._due:
            m = compiled[e[1]].active.get(e[2])
            if m is not None and m.due_ns == e[0]:
                live.add(e)
        self._due[:] = live  # in place: `tick` may be iterating this very list
        heapq.heapify(self._due)
        self._due_stale = 0

    @property
    def due_entries(self) -> int:
        """Entries in the due-heap (live ones and superseded ones not yet compacted away)."""
        return len(self._due)

    def _emit(self, comp: _Compiled, row: int, m: _Active, device_id: str, change: Change,
              out: list[AlertTransition]) -> None:
        if not self._emitting:
            if (comp.rule.id, device_id) not in self._restored:
                return
            out = self._warm_out
        rule = comp.rule
        level = rule.levels[max(change.level, 0)]
        resolving = change.to_state is AlertState.RESOLVED
        threshold = m.clear_thr if resolving else m.level_thr
        value: float | None = comp.values[row]
        if not math.isfinite(value):  # type: ignore[arg-type]
            value = None
        eta = self._eta_of(comp, row)
        trend = comp.trend if comp.plain or comp.followers else comp.window
        current = trend.last(row) if isinstance(trend, PointStore) else (value if rule.aggregate == "last" else None)
        rate = None
        if isinstance(trend, PointStore):
            need = (rule.min_samples, rule.min_span_s) if trend is comp.window else \
                (rule.eta.min_samples, rule.eta.min_span_s) if rule.eta else (2, 0.0)
            rate = trend.slope_per_s(row) if _trend_ready(trend, row, *need) else None  # no rate from seconds
        firing = change.to_state is AlertState.FIRING
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
            labels=_labels(m.tags, rule.labels),
            field_name=rule.field,
            aggregate=rule.aggregate,
            target=rule.target if rule.target is not None else (rule.eta.target if rule.eta else None),
            current=current,
            rate_per_s=rate if rate is not None and math.isfinite(rate) else None,
            held_s=(change.time_ns - m.since_ns) / _NS if firing else None,
        ))

    @staticmethod
    def _eta_of(comp: _Compiled, row: int) -> float | None:
        rule = comp.rule
        if rule.aggregate == "eta":
            eta: float | None = comp.values[row]
            if eta != eta:
                eta = None
        elif rule.eta is not None and comp.trend is not None:
            eta = _eta(comp.trend, row, rule.eta.target, rule.rising, rule.eta.min_samples, rule.eta.min_span_s)
        else:
            return None
        return eta if eta is not None and math.isfinite(eta) else None

    def _slot(self, device_id: str) -> int:
        """The device's slot in the rules' columns, made (with no profile yet) for a device new to the engine."""
        slot = self._slot_of.get(device_id)
        if slot is None:
            slot = self._slot_of[device_id] = len(self._ids)
            self._ids.append(device_id)
            self._seen.append(-1)
            self._profile.append(None)
            self._tags.append(())
        return slot

    def _find_slot(self, device_id: str) -> int:
        """The device's slot, -1 when it has none."""
        return self._slot_of.get(device_id, -1)

    def _device_id_at(self, slot: int) -> str:
        return self._ids[slot]

    def _seen_at(self, slot: int) -> int | None:
        """The newest reading time (ns) of the device in `slot`, None when it has not reported."""
        t = self._seen[slot]
        return t if t >= 0 else None

    def _choose_profile(self, slot: int, device_id: str, kind: str, reading_tags: tuple[tuple[str, str], ...]
                        ) -> _Profile:
        """Select the rules for a device's readings once (see `_Profile` for when this runs again)."""
        tags = self.tags_of(device_id, reading_tags)
        rules = self._by_kind.get(kind)
        if rules is None:
            rules = self._rules_for_kind(kind)
        zone = tags.get("zone_class") or ANY
        selected = tuple((c, None if c.period_of_minute is not None else c.thresholds(ANY, zone)) for c in rules
                         if (c.rule.select.devices is None or device_id in c.rule.select.devices)
                         and (not c.needs_tags or c.rule.select.matches(device_id, tags)))
        for comp, _ in selected:  # every selected rule's row index reaches this slot (rows themselves come later)
            if slot >= len(comp.row_of):
                comp.row_of.extend(array("i", [-1]) * (slot + 1 - len(comp.row_of)))
        interval = self._interval_of(device_id)
        key = (kind, selected, zone, interval)
        profile = self._profiles.get(key)
        if profile is None:
            profile = self._profiles[key] = _Profile(self._gen, kind, selected, zone, interval)
        self._profile[slot] = profile
        self._tags[slot] = reading_tags
        return profile

    def _rules_for_kind(self, kind: str) -> tuple[_Compiled, ...]:
        found = tuple(c for c in self._compiled if c.rule.select.kinds is None or kind in c.rule.select.kinds)
        self._by_kind[kind] = found
        return found

    def tags_of(self, device_id: str, reading_tags: tuple[tuple[str, str], ...]) -> dict[str, str]:
        """The reading's tags, completed from the registry where the reading lacks one.

        Not cached: it runs when a device's route is (re)built and when a no-data rule first
        sees it, and a cached dict per device would cost ~400 bytes each at city scale.
        """
        tags = dict(reading_tags)
        device = self._devices.get(device_id)
        if device is not None:
            for key in _TAG_KEYS_FROM_REGISTRY:
                if not tags.get(key):
                    value = getattr(device, key)
                    if value:
                        tags[key] = value
        return tags

    def _labels_of(self, device_id: str) -> tuple[tuple[str, str], ...]:
        """The tags of the device's newest reading, else the registry's (a no-data alert's labels)."""
        slot = self._slot_of.get(device_id)
        if slot is not None and self._tags[slot]:
            return self._tags[slot]
        device = self._devices.get(device_id)
        return device.tags() if device is not None else ()

    def _interval_of(self, device_id: str) -> float:
        device = self._devices.get(device_id)
        interval = float(device.expected_interval_s) if device is not None else self._default_interval_s
        return self._intervals.setdefault(interval, interval)

    def _devices_footprint(self) -> RuleStateStats:
        """The engine's per-device bookkeeping: routes (one per device), their dict and the slots' columns."""
        n = len(self._ids)
        slot_ints = max(0, n - 257) * sys.getsizeof(1 << 20)  # the dict's slot numbers (small ones are shared)
        columns = (self._slot_of, self._ids, self._seen, self._profile, self._tags)
        return RuleStateStats("(devices)", n, 0, slot_ints + sum(sys.getsizeof(c) for c in columns))

    def _clock(self, tz: str) -> LocalClock:
        clock = self._clocks.get(tz)
        if clock is None:
            clock = self._clocks[tz] = LocalClock(tz)
        return clock


_NO_LIMITS: _Limits = ((), None)
_SHARABLE = ("mean", "laeq")


def _share_windows(compiled: list[_Compiled]) -> None:
    """Group the mean and LAeq rules that see the very same samples (same aggregate, window, resolution, cap,
    selector and quality gate; fields differ) so that they keep one set of buckets (rules/shared_windows.py)."""
    groups: dict[tuple, list[_Compiled]] = {}
    for comp in compiled:
        r = comp.rule
        if r.aggregate in _SHARABLE and r.window_s > 0:
            key = (r.aggregate, r.window_s, r.resolution_s, r.max_samples, r.select, r.ignore_bad)
            groups.setdefault(key, []).append(comp)
    for members in groups.values():
        if len(members) > 1 and len({m.field for m in members}) == len(members):
            r = members[0].rule
            group = MeanGroup(len(members), r.aggregate, r.window_s, r.max_samples, r.resolution_s)
            for comp in members:
                comp.join(group, members)


def _compare(op: Callable[[float, float], bool], limits: _Limits, value: float) -> tuple[int, bool, float | None]:
    """(index of the highest level met or -1, whether the value holds a firing alert, the limit it is held to):
    the limit of the highest level met, else the first level's."""
    levels, clear = limits
    met = -1
    level_thr = None
    for i, thr in enumerate(levels):
        if thr is not None and op(value, thr):
            met = i
            level_thr = thr
    if met < 0:
        level_thr = levels[0] if levels else None
    return met, clear is not None and op(value, clear), level_thr


def _trend_ready(store: PointStore, row: int, min_samples: int, min_span_s: float) -> bool:
    """Enough samples over a long enough time for a slope that is the trend, not the noise of a few seconds."""
    return store.count(row) >= min_samples and store.span_s(row) >= min_span_s


def _eta(store: PointStore, row: int, target: float, rising: bool, min_samples: int,
         min_span_s: float = 0.0) -> float | None:
    if not _trend_ready(store, row, min_samples, min_span_s):
        return None
    slope = store.slope_per_s(row)
    last = store.last(row)
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

