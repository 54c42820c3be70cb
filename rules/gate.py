"""`RuleSet`: the rules engine behind a quality gate, plus the `quality` rule kind.

A reading judged `bad` (decoders/quality: out of range, spike, install violation) reaches only
the rules that say `ignore_bad = false`, so a single spike cannot open a flood case; no-data
rules see every reading (a device sending bad data is not silent). Two `Engine`s carry this
out — one for rules that take every reading, one for those that take only readings not judged
bad — so the engine itself is unchanged. `QualityWatch`es see every judged reading.
The interface is `Engine`'s: process, tick, restore, warm_up, warm_up_queries, set_devices, state_of.
Every transition is labelled with its device's `kind` (the `alerts` points' `kind` tag).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from core.device import Device
from core.reading import Reading
from core.transition import AlertState, AlertTransition
from rules.engine import Engine
from rules.footprint import RuleStateStats
from rules.machine import RestoredAlert, RuleState
from rules.model import Rule
from rules.quality import QualityWatch
from rules.warmup import warm_up_queries

BAD = "bad"
"""The `quality` field value that keeps a reading from rules with `ignore_bad` (docs/schema.md)."""

_REGISTRY_TAGS = ("district", "zone_class", "model", "site")


class RuleSet:
    """All rules of a service; see the module docstring."""

    def __init__(self, rules: Iterable[Rule], *, tz: str = "Asia/Shanghai", silent_factor: float = 3.0,
                 default_interval_s: float = 300.0) -> None:
        self.rules = [r for r in rules if r.enabled]
        plain = [r for r in self.rules if not r.is_quality]
        opts = dict(tz=tz, silent_factor=silent_factor, default_interval_s=default_interval_s)
        self.every = Engine([r for r in plain if r.is_no_data or not r.ignore_bad], **opts)  # type: ignore[arg-type]
        self.good = Engine([r for r in plain if not r.is_no_data and r.ignore_bad], **opts)  # type: ignore[arg-type]
        self.watches = [QualityWatch(r) for r in self.rules if r.is_quality]
        self._device_tags: dict[str, dict[str, str]] = {}
        self._kinds: dict[str, str] = {}
        self._tags: dict[str, tuple[tuple[tuple[str, str], ...], dict[str, str]]] = {}

    def set_devices(self, devices: Iterable[Device]) -> None:
        devices = list(devices)
        self.every.set_devices(devices)
        self.good.set_devices(devices)
        self._device_tags = {d.id: dict(d.tags()) for d in devices}
        self._kinds = {d.id: d.kind for d in devices}
        self._tags.clear()
        for w in self.watches:
            w.reset_selection()

    def process(self, reading: Reading) -> list[AlertTransition]:
        """Every transition one reading causes; a `bad` reading reaches only rules that take it."""
        out = self.every.process(reading)
        if reading.fields.get("quality") != BAD:
            out += self.good.process(reading)
        if self.watches:
            tags = self._tags_of(reading)
            for w in self.watches:
                t = w.seen(reading, tags)
                if t is not None:
                    out.append(t)
        return [_with_kind(t, reading.kind) for t in out] if out else out

    def tick(self, now_ns: int) -> list[AlertTransition]:
        out = self.every.tick(now_ns) + self.good.tick(now_ns)
        out.sort(key=lambda t: t.time_ns)
        return [_with_kind(t, self._kinds.get(t.device_id, "")) for t in out]

    def warm_up_queries(self, now_ns: int) -> list[str]:
        return warm_up_queries([r for r in self.rules if not r.is_quality], now_ns)

    def restore(self, alerts: Iterable[RestoredAlert]) -> int:
        """Put the store's firing and pending alerts back (see `Engine.restore`); call before `warm_up`."""
        alerts = list(alerts)
        n = self.every.restore(alerts) + self.good.restore(alerts)
        watches = {w.rule.id: w for w in self.watches}
        for a in alerts:
            w = watches.get(a.rule_id)
            if w is not None and a.state is AlertState.FIRING:
                w.restore(a.device_id)
                n += 1
        return n

    def warm_up(self, readings: Iterable[Reading]) -> list[AlertTransition]:
        """Replay history without emitting; bad readings are kept from the gated rules here too.

        Returns the transitions of restored alerts that history moved on (see `Engine.warm_up`).
        """
        readings = list(readings)
        out = self.every.warm_up(readings) + self.good.warm_up([r for r in readings
                                                                 if r.fields.get("quality") != BAD])
        out.sort(key=lambda t: t.time_ns)
        return [_with_kind(t, self._kinds.get(t.device_id, "")) for t in out]

    def state_of(self, rule_id: str, device_id: str) -> RuleState | None:
        for engine in (self.every, self.good):
            try:
                return engine.state_of(rule_id, device_id)
            except KeyError:
                continue
        raise KeyError(f"no rule {rule_id!r}")

    def state_stats(self) -> list[RuleStateStats]:
        """Memory of the rule state by rule, both engines (see `Engine.state_stats`)."""
        return self.every.state_stats() + self.good.state_stats()

    @property
    def due_entries(self) -> int:
        """Entries in both engines' due-heaps."""
        return self.every.due_entries + self.good.due_entries

    def _tags_of(self, reading: Reading) -> dict[str, str]:
        cached = self._tags.get(reading.device_id)
        if cached is not None and cached[0] == reading.tags:
            return cached[1]
        tags = dict(reading.tags)
        for key, value in self._device_tags.get(reading.device_id, {}).items():
            if key in _REGISTRY_TAGS and not tags.get(key):
                tags[key] = value
        self._tags[reading.device_id] = (reading.tags, tags)
        return tags


def _with_kind(t: AlertTransition, kind: str) -> AlertTransition:
    """The transition labelled with its device's kind (the `alerts` points' `kind` tag, inhibit rules)."""
    if not kind or ("kind", kind) in t.labels:
        return t
    labels = dict(t.labels)
    labels["kind"] = kind
    return dataclasses.replace(t, labels=tuple(sorted(labels.items())))
