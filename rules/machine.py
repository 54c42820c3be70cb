"""The per-(rule, device) alert state machine: `for`, `for_samples`, escalation, hysteresis, `keep_firing_for`.

Pure and clock-free: every call gets the time, so replaying the same readings gives the same
transitions. Time-based steps (a `for` elapsing, `keep_firing_for` expiring) happen at their
due instant, whether a later reading or `Engine.tick` notices them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.transition import AlertState, Severity

INACTIVE, PENDING, FIRING, RESOLVED = AlertState.INACTIVE, AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED


@dataclass(frozen=True, slots=True)
class Timing:
    """A rule's timing, shared by all its machines: nanoseconds and a sample count."""

    for_ns: int = 0
    for_samples: int = 1
    keep_firing_for_ns: int = 0


@dataclass(frozen=True, slots=True)
class RuleState:
    """A snapshot of one (rule, device) for tests and the CLI."""

    state: AlertState
    severity: Severity | None
    value: float | None
    samples: int
    pending_since_ns: int | None
    clear_since_ns: int | None
    last_time_ns: int | None
    window_count: int
    coverage_s: float


@dataclass(frozen=True, slots=True)
class RestoredAlert:
    """An alert the alert store lists as firing or pending, to put back into its machine after a restart.

    `since_ns`: when it started firing (or pending); `updated_ns`: its last stored transition;
    `clear_since_ns`: when a firing alert's value fell below its clear threshold, its `keep_firing_for`
    clock running (None: it holds).
    """

    rule_id: str
    device_id: str
    state: AlertState
    severity: Severity
    since_ns: int
    updated_ns: int
    clear_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """One state change: `level` is the index of the rule level it concerns (severity), at `time_ns`."""

    from_state: AlertState
    to_state: AlertState
    level: int
    time_ns: int


class AlertMachine:
    """State of one (rule, device): `observe` each evaluated value, `advance` to let time pass.

    `observe(t, met, holds)`: `met` is the index of the highest level whose threshold the value
    crosses (-1 for none), `holds` whether a firing alert stays up (value on the alarm side
    of the clear threshold). A firing alert only escalates; it resolves once it has not held
    for `keep_firing_for` (at once when that is zero).
    """

    __slots__ = ("clear_since_ns", "level", "samples", "since_ns", "state")

    def __init__(self) -> None:
        self.state = INACTIVE
        self.level = -1
        self.since_ns = 0
        self.samples = 0
        self.clear_since_ns: int | None = None

    def due_at(self, timing: Timing) -> int | None:
        """When only the passing of time would next change the state (what `tick` waits for); None if never."""
        if self.state is PENDING:
            if timing.for_ns > 0 and self.samples >= timing.for_samples:
                return self.since_ns + timing.for_ns
            return None
        if self.state is FIRING and self.clear_since_ns is not None:
            return self.clear_since_ns + timing.keep_firing_for_ns
        return None

    def advance(self, timing: Timing, now_ns: int) -> Change | None:
        """Apply what falls due by `now_ns` without a new value: `for` elapsing or `keep_firing_for` expiring."""
        if self.state is PENDING and self.samples >= timing.for_samples and timing.for_ns > 0:
            due = self.since_ns + timing.for_ns
            if now_ns >= due:
                return self._fire(due)
        elif self.state is FIRING and self.clear_since_ns is not None:
            due = self.clear_since_ns + timing.keep_firing_for_ns
            if now_ns >= due:
                return self._resolve(due)
        return None

    def observe(self, timing: Timing, time_ns: int, met: int, holds: bool) -> Change | None:
        """Take one evaluated value at `time_ns` (call `advance(time_ns)` first)."""
        state = self.state
        if state is INACTIVE or state is RESOLVED:
            if met < 0:
                return None
            self.since_ns, self.samples, self.level = time_ns, 1, met
            if self._ready(timing, time_ns):
                return self._fire(time_ns)
            self.state = PENDING
            return Change(state, PENDING, met, time_ns)
        if state is PENDING:
            if met < 0:
                self.state = INACTIVE
                return Change(PENDING, INACTIVE, self.level, time_ns)
            self.samples += 1
            self.level = met
            return self._fire(time_ns) if self._ready(timing, time_ns) else None
        # FIRING
        if met > self.level:
            self.level = met
            self.clear_since_ns = None
            return Change(FIRING, FIRING, met, time_ns)
        if holds or met >= 0:
            self.clear_since_ns = None
            return None
        if timing.keep_firing_for_ns <= 0:
            return self._resolve(time_ns)
        if self.clear_since_ns is None:
            self.clear_since_ns = time_ns
        return None

    def _ready(self, timing: Timing, time_ns: int) -> bool:
        return self.samples >= timing.for_samples and time_ns - self.since_ns >= timing.for_ns

    def _fire(self, time_ns: int) -> Change:
        previous = self.state
        self.state = FIRING
        self.clear_since_ns = None
        return Change(previous, FIRING, self.level, time_ns)

    def _resolve(self, time_ns: int) -> Change:
        self.state = RESOLVED
        self.clear_since_ns = None
        self.samples = 0
        return Change(FIRING, RESOLVED, self.level, time_ns)
