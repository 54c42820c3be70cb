"""No-data: a device silent for longer than its expected report interval × a factor fires a device-silent alert.

A reading costs a dict lookup; `tick` pops only the devices whose deadline has passed from
a heap (one entry per device), re-queueing those that reported meanwhile, so the cost of a
tick follows the number of deadlines due, not the size of the fleet.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable, Mapping

from core.device import Device
from core.timing import format_duration
from core.transition import AlertState, AlertTransition
from rules.footprint import RuleStateStats
from rules.machine import RuleState
from rules.model import Rule

_NS = 1_000_000_000
TagsOf = Callable[[str, tuple[tuple[str, str], ...]], dict[str, str]]
LabelsOf = Callable[[str], tuple[tuple[str, str], ...]]
LastSeen = Callable[[str], "int | None"]


class SilenceWatcher:
    """One no-data rule's watch over the devices it selects."""

    def __init__(self, rule: Rule, factor: float, interval_of: Callable[[str], float], labels_of: LabelsOf) -> None:
        """`labels_of(device_id)`: the tags of the device's newest reading (an alert's labels)."""
        self.rule = rule
        self.factor = factor
        self._interval_of = interval_of
        self._labels_of = labels_of
        self._heap: list[tuple[int, str]] = []
        self._queued: set[str] = set()
        self._ignored: set[str] = set()
        self._firing: dict[str, int] = {}
        self._resolved: set[str] = set()
        self._devices: Mapping[str, Device] = {}
        self._baseline_ns: int | None = None
        self._registry_dirty = False

    def set_devices(self, devices: Mapping[str, Device]) -> None:
        self._devices = devices
        self._ignored.clear()
        self._registry_dirty = True

    def span_ns(self, device_id: str) -> int:
        return int(self._interval_of(device_id) * self.factor * _NS)

    def seen(self, device_id: str, kind: str, time_ns: int, previous_ns: int | None,
             tags: tuple[tuple[str, str], ...], tags_of: TagsOf) -> AlertTransition | None:
        """Note a reading; returns the RESOLVED transition when the device was silent-firing."""
        fired_ns = self._firing.get(device_id)
        if fired_ns is not None and time_ns <= fired_ns:
            return None  # history from before the silence (warm-up after a restart): still silent
        if device_id in self._queued or device_id in self._ignored:
            return None
        fired = self._firing.pop(device_id, None)
        if fired is None and not self._selects(device_id, kind, tags_of(device_id, tags)):
            self._ignored.add(device_id)
            return None
        self._push(time_ns + self.span_ns(device_id), device_id)
        if fired is None:
            return None
        self._resolved.add(device_id)
        gap = None if previous_ns is None else (time_ns - previous_ns) / _NS
        return self._transition(device_id, AlertState.FIRING, AlertState.RESOLVED, time_ns, gap,
                                f"{self.rule.id} resolved: device reported again"
                                + (f" after {format_duration(round(gap))}" if gap is not None else ""))

    def restore(self, device_id: str, fired_ns: int) -> None:
        """The alert store says this device's silent alert fires (since `fired_ns`): the next reading resolves it."""
        self._firing[device_id] = fired_ns

    def tick(self, now_ns: int, last_seen: LastSeen) -> list[AlertTransition]:
        """Fire for every selected device whose deadline has passed by `now_ns`."""
        if self._baseline_ns is None:
            self._baseline_ns = now_ns
        if self._registry_dirty:
            self._registry_dirty = False
            for device_id, device in self._devices.items():
                if device_id not in self._queued and device_id not in self._firing:
                    seen = last_seen(device_id)
                    base = now_ns if seen is None else seen
                    if self._selects(device_id, device.kind, dict(device.tags())):
                        self._push(base + self.span_ns(device_id), device_id)
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now_ns:
            _, device_id = heapq.heappop(heap)
            self._queued.discard(device_id)
            device = self._devices.get(device_id)
            if device is not None and device.status != "active":
                continue
            seen = last_seen(device_id)
            base = self._baseline_ns if seen is None else seen
            due = base + self.span_ns(device_id)
            if due > now_ns:
                self._push(due, device_id)
                continue
            self._firing[device_id] = due
            silent_s = (now_ns - base) / _NS
            expected = format_duration(self._interval_of(device_id))
            from_state = AlertState.RESOLVED if device_id in self._resolved else AlertState.INACTIVE
            out.append(self._transition(
                device_id, from_state, AlertState.FIRING, due, silent_s,
                f"{self.rule.id} firing: no data for {format_duration(round(silent_s))} "
                f"(expected every {expected}, factor {self.factor:g})"))
        return out

    def footprint(self) -> RuleStateStats:
        """This rule's bookkeeping: one heap entry per watched device, and the sets and dicts beside it."""
        heap = self._heap
        size = sys.getsizeof(heap) + sum(sys.getsizeof(x) for x in (
            self._queued, self._ignored, self._firing, self._resolved))
        if heap:
            size += len(heap) * sys.getsizeof(heap[0])
        return RuleStateStats(self.rule.id, len(self._queued) + len(self._firing), len(heap), size, len(self._firing))

    def state_of(self, device_id: str) -> RuleState | None:
        if device_id in self._firing:
            state = AlertState.FIRING
        elif device_id in self._resolved:
            state = AlertState.RESOLVED
        elif device_id in self._queued:
            state = AlertState.INACTIVE
        else:
            return None
        severity = self.rule.levels[0].severity if state is AlertState.FIRING else None
        return RuleState(state, severity, None, 0, None, None, None, 0, 0.0)

    def _selects(self, device_id: str, kind: str, tags: dict[str, str]) -> bool:
        kinds = self.rule.select.kinds
        return (kinds is None or kind in kinds) and self.rule.select.matches(device_id, tags)

    def _push(self, deadline_ns: int, device_id: str) -> None:
        heapq.heappush(self._heap, (deadline_ns, device_id))
        self._queued.add(device_id)

    def _transition(self, device_id: str, from_state: AlertState, to_state: AlertState, time_ns: int,
                    value: float | None, summary: str) -> AlertTransition:
        level = self.rule.levels[0]
        labels = dict(self._labels_of(device_id))
        labels.update(self.rule.labels)
        return AlertTransition(
            rule_id=self.rule.id, device_id=device_id, from_state=from_state, to_state=to_state,
            severity=level.severity, time_ns=time_ns, value=value,
            threshold=self._interval_of(device_id) * self.factor, route=level.route,
            summary=summary, labels=tuple(sorted(labels.items())), aggregate="silent",
        )
