"""The `quality` rule kind: a maintenance alert for a device whose data stays suspect.

A reading's `quality_check` field (written by decoders/quality) names the checks it failed.
A rule fires when a device's readings fail one of its `checks` without a break for `for`
(a stuck sensor, a depth gauge set up wrong), or `count` times within `within` (repeated
spikes). Per device with failures it keeps when the current failing run began, the times of
the last `count` failures (a handful of integers, not a window of readings) and whether the
alert fires; a device whose readings pass holds nothing. It resolves on a reading that passes
once no failure is left within `within`. Time comes from the readings only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from core.reading import Reading
from core.timing import format_duration
from core.transition import AlertState, AlertTransition
from rules.model import Rule

_NS = 1_000_000_000


class _Run:
    __slots__ = ("firing", "last_ns", "recent", "resolved", "start_ns")

    def __init__(self) -> None:
        self.start_ns = -1
        self.recent: list[int] = []
        self.last_ns = -1
        self.firing = False
        self.resolved = False


class QualityWatch:
    """One quality rule's watch over the devices it selects."""

    def __init__(self, rule: Rule) -> None:
        assert rule.quality is not None
        self.rule = rule
        self.spec = rule.quality
        self._for_ns = int(self.spec.for_s * _NS)
        self._within_ns = int(self.spec.within_s * _NS)
        self._runs: dict[str, _Run] = {}  # only devices with a failure still counting, firing or once resolved
        self._selected: dict[str, bool] = {}  # (only for rules that select by device or tags)
        select = rule.select
        self._by_kind_only = select.devices is None and not select.needs_tags

    def reset_selection(self) -> None:
        """Forget which devices the rule selects (the registry changed)."""
        self._selected.clear()

    def seen(self, reading: Reading, tags_of: Callable[[Reading], Mapping[str, str]]) -> AlertTransition | None:
        """Note one judged reading; returns the FIRING or RESOLVED transition it causes, if any.

        `tags_of(reading)`: its tags completed from the registry, asked for only when the rule
        selects by tags or devices and has not yet seen the device.
        """
        quality = reading.fields.get("quality")
        if quality is None:
            return None  # not judged (quality switched off): nothing to say
        device_id = reading.device_id
        kinds = self.rule.select.kinds
        if self._by_kind_only:
            if kinds is not None and reading.kind not in kinds:
                return None
        else:
            selected = self._selected.get(device_id)
            if selected is None:
                selected = self._selected[device_id] = ((kinds is None or reading.kind in kinds)
                                                         and self.rule.select.matches(device_id, tags_of(reading)))
            if not selected:
                return None
        failed_checks = reading.fields.get("quality_check")
        failed = isinstance(failed_checks, str) and any(c in self.spec.checks for c in failed_checks.split(","))
        run = self._runs.get(device_id)
        if run is None:
            if not failed:
                return None  # nothing counting: a passing reading changes nothing
            run = self._runs[device_id] = _Run()
        t = reading.time_ns
        if t <= run.last_ns:
            return None
        run.last_ns = t
        count = self.spec.count
        if failed:
            if run.start_ns < 0:
                run.start_ns = t
            if count:
                run.recent.append(t)
                del run.recent[:-count]
            long_run = self._for_ns > 0 and t - run.start_ns >= self._for_ns
            repeated = count > 0 and len(run.recent) == count and t - run.recent[0] <= self._within_ns
            if (long_run or repeated) and not run.firing:
                run.firing = True
                checks = "/".join(sorted(self.spec.checks))
                what = (f"failing {checks} for {format_duration(round((t - run.start_ns) / _NS))}" if long_run
                        else f"{self.spec.count} × {checks} within {format_duration(round(self.spec.within_s))}")
                return self._transition(reading, run, AlertState.FIRING, f"{self.rule.id} firing: {what}"
                                        f" (last: {failed_checks}); check the sensor on site")
            return None
        run.start_ns = -1
        recent = bool(run.recent) and t - run.recent[-1] <= self._within_ns
        if run.firing and not recent:
            run.firing = False
            return self._transition(reading, run, AlertState.RESOLVED,
                                    f"{self.rule.id} resolved: readings pass the checks again")
        if not (run.firing or run.resolved or recent):
            del self._runs[device_id]  # back to nothing counting
        return None

    def restore(self, device_id: str) -> None:
        """The alert store says this device's alert fires (a restart): the next passing reading resolves it."""
        run = self._runs.get(device_id)
        if run is None:
            run = self._runs[device_id] = _Run()
        run.firing = True

    def firing(self, device_id: str) -> bool:
        run = self._runs.get(device_id)
        return run is not None and run.firing

    def _transition(self, reading: Reading, run: _Run, to: AlertState, summary: str) -> AlertTransition:
        level = self.rule.levels[0]
        if to is AlertState.FIRING:
            from_state = AlertState.RESOLVED if run.resolved else AlertState.INACTIVE
        else:
            from_state, run.resolved = AlertState.FIRING, True
        labels = dict(reading.tags)
        labels.update(self.rule.labels)
        counting = self.spec.count > 0 and not self._for_ns
        value = float(len(run.recent)) if counting else (
            (reading.time_ns - run.start_ns) / _NS if run.start_ns >= 0 else 0.0)
        return AlertTransition(
            rule_id=self.rule.id, device_id=reading.device_id, from_state=from_state, to_state=to,
            severity=level.severity, time_ns=reading.time_ns, value=value,
            threshold=float(self.spec.count) if counting else self.spec.for_s,
            route=level.route, summary=summary, labels=tuple(sorted(labels.items())),
            aggregate="failed_count" if counting else "failed_for",
        )
