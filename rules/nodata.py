"""No-data: a device silent for longer than its expected report interval × a factor fires a device-silent alert.

A reading costs a byte lookup; `tick` takes only the devices whose deadline has passed from a
timing wheel (one-second buckets of device slots), re-queueing those that reported meanwhile,
so the cost of a tick follows the number of deadlines due, not the size of the fleet. A device
is a slot (the engine's: `Slots`) in two columns, its queue state (1 byte) and its queued
deadline (8 bytes), and a 4-byte entry in one bucket: ~13 bytes, no object per device.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.device import Device
from core.timing import format_duration
from core.transition import AlertState, AlertTransition
from rules.footprint import RuleStateStats
from rules.machine import RuleState
from rules.model import Rule

_NS = 1_000_000_000
_WHEEL_NS = _NS  # a wheel bucket: the slots whose deadline falls in one second
_UNSEEN, _QUEUED, _IGNORED = 0, 1, 2  # a slot's queue state
TagsOf = Callable[[str, tuple[tuple[str, str], ...]], dict[str, str]]
LabelsOf = Callable[[str], tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Slots:
    """The engine's device slots, as a watcher needs them: `slot_of(device_id)` (made when new),
    `device_id(slot)`, `last_seen(slot)` (the newest reading time in ns, None before any)."""

    slot_of: Callable[[str], int]
    device_id: Callable[[int], str]
    last_seen: Callable[[int], int | None]
    find: Callable[[str], int]
    """The device's slot, -1 when it has none (never made one)."""


class SilenceWatcher:
    """One no-data rule's watch over the devices it selects."""

    def __init__(self, rule: Rule, factor: float, interval_of: Callable[[str], float], labels_of: LabelsOf,
                 slots: Slots) -> None:
        """`labels_of(device_id)`: the tags of the device's newest reading (an alert's labels)."""
        self.rule = rule
        self.factor = factor
        self._interval_of = interval_of
        self._labels_of = labels_of
        self._slots = slots
        self._state = bytearray()  # by slot: _UNSEEN, _QUEUED or _IGNORED
        self._deadline = array("q")  # by slot: the deadline it is queued with
        self._wheel: dict[int, array] = {}  # second -> the slots queued with a deadline in it
        self._keys: list[int] = []  # heap of the wheel's seconds
        self._queued = 0
        self._firing: dict[str, int] = {}
        self._resolved: set[str] = set()
        self._devices: Mapping[str, Device] = {}
        self._baseline_ns: int | None = None
        self._registry_dirty = False

    def set_devices(self, devices: Mapping[str, Device]) -> None:
        self._devices = devices
        if _IGNORED in self._state:
            self._state = bytearray(self._state.replace(bytes((_IGNORED,)), bytes((_UNSEEN,))))
        self._registry_dirty = True

    def span_ns(self, device_id: str) -> int:
        return int(self._interval_of(device_id) * self.factor * _NS)

    def seen(self, slot: int, device_id: str, kind: str, time_ns: int, previous_ns: int | None,
             tags: tuple[tuple[str, str], ...], tags_of: TagsOf) -> AlertTransition | None:
        """Note a reading of the device in `slot`; returns the RESOLVED transition when it was silent-firing."""
        firing = self._firing
        if firing:
            fired_ns = firing.get(device_id)
            if fired_ns is not None and time_ns <= fired_ns:
                return None  # history from before the silence (warm-up after a restart): still silent
        state = self._state
        if slot < len(state) and state[slot]:
            return None  # queued (its deadline is checked when due) or not selected
        fired = firing.pop(device_id, None) if firing else None
        if fired is None and not self._selects(device_id, kind, tags_of(device_id, tags)):
            self._grow(slot)
            self._state[slot] = _IGNORED
            return None
        self._push(time_ns + self.span_ns(device_id), slot)
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

    def tick(self, now_ns: int) -> list[AlertTransition]:
        """Fire for every selected device whose deadline has passed by `now_ns`."""
        if self._baseline_ns is None:
            self._baseline_ns = now_ns
        slots = self._slots
        if self._registry_dirty:
            self._registry_dirty = False
            for device_id, device in self._devices.items():
                slot = slots.slot_of(device_id)
                if (slot >= len(self._state) or self._state[slot] != _QUEUED) and device_id not in self._firing:
                    seen = slots.last_seen(slot)
                    base = now_ns if seen is None else seen
                    if self._selects(device_id, device.kind, dict(device.tags())):
                        self._push(base + self.span_ns(device_id), slot)
        state, deadline = self._state, self._deadline
        due_slots = self._take_due(now_ns)
        if len(due_slots) > 1:  # in deadline order, ties by device id: as one heap of (deadline, id) popped them
            due_slots.sort(key=lambda s: (deadline[s], slots.device_id(s)))
        out = []
        for slot in due_slots:
            state[slot] = _UNSEEN
            self._queued -= 1
            device_id = slots.device_id(slot)
            device = self._devices.get(device_id)
            if device is not None and device.status != "active":
                continue
            seen = slots.last_seen(slot)
            base = self._baseline_ns if seen is None else seen
            due = base + self.span_ns(device_id)
            if due > now_ns:
                self._push(due, slot)
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

    def _take_due(self, now_ns: int) -> list[int]:
        """Take the slots whose queued deadline is at or before `now_ns` off the wheel."""
        keys, wheel, deadline = self._keys, self._wheel, self._deadline
        limit = now_ns // _WHEEL_NS
        due: list[int] = []
        while keys and keys[0] <= limit:
            key = heapq.heappop(keys)
            bucket = wheel.pop(key)
            if key < limit:  # the whole second has passed
                due.extend(bucket)
                continue
            rest = array("i")
            for slot in bucket:
                (due if deadline[slot] <= now_ns else rest).append(slot)
            if rest:
                wheel[key] = rest
                heapq.heappush(keys, key)
            break
        return due

    def footprint(self) -> RuleStateStats:
        """This rule's bookkeeping: the slots' columns, the wheel's buckets (an entry per queued device), the firing."""
        size = (sys.getsizeof(self._state) + sys.getsizeof(self._deadline) + sys.getsizeof(self._wheel)
                + sys.getsizeof(self._keys) + sum(sys.getsizeof(b) for b in self._wheel.values())
                + sys.getsizeof(self._firing) + sys.getsizeof(self._resolved))
        return RuleStateStats(self.rule.id, self._queued + len(self._firing), self._queued, size, len(self._firing))

    def state_of(self, device_id: str) -> RuleState | None:
        if device_id in self._firing:
            state = AlertState.FIRING
        elif device_id in self._resolved:
            state = AlertState.RESOLVED
        elif self._is_queued(self._slots.find(device_id)):
            state = AlertState.INACTIVE
        else:
            return None
        severity = self.rule.levels[0].severity if state is AlertState.FIRING else None
        return RuleState(state, severity, None, 0, None, None, None, 0, 0.0)

    def _selects(self, device_id: str, kind: str, tags: dict[str, str]) -> bool:
        kinds = self.rule.select.kinds
        return (kinds is None or kind in kinds) and self.rule.select.matches(device_id, tags)

    def _is_queued(self, slot: int) -> bool:
        return 0 <= slot < len(self._state) and self._state[slot] == _QUEUED

    def _grow(self, slot: int) -> None:
        """Make the columns reach `slot`."""
        n = slot + 1 - len(self._state)
        if n > 0:
            self._state.extend(bytes(n))
            self._deadline.extend(array("q", bytes(8 * n)))

    def _push(self, deadline_ns: int, slot: int) -> None:
        """Queue the slot (not queued now) to be looked at when `deadline_ns` has passed."""
        self._grow(slot)
        self._state[slot] = _QUEUED
        self._deadline[slot] = deadline_ns
        self._queued += 1
        key = deadline_ns // _WHEEL_NS
        bucket = self._wheel.get(key)
        if bucket is None:
            bucket = self._wheel[key] = array("i")
            heapq.heappush(self._keys, key)
        bucket.append(slot)

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
