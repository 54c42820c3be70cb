"""`RuleSet`: the rules engine behind a quality gate, plus the `quality` rule kind.

A reading judged `bad` (decoders/quality: out of range, spike, install violation) reaches only
the rules that say `ignore_bad = false`, so a single spike cannot open a flood case; no-data
rules see every reading (a device sending bad data is not silent). One `Engine` with
`gate_bad` carries this out (one set of per-device bookkeeping, not two engines' worth).
`QualityWatch`es see every judged reading.
The interface is `Engine`'s: process, tick, restore, warm_up, warm_up_queries, set_devices, state_of.
Every transition is labelled with its device's `kind` (the `alerts` points' `kind` tag).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from core.device import Device
from core.reading import Reading
from core.transition import AlertState, AlertTransition
from rules.engine import BAD, Engine
from rules.footprint import RuleStateStats
from rules.machine import RestoredAlert, RuleState
from rules.model import Rule, TrendNow
from rules.quality import QualityWatch
from rules.warmup import warm_up_queries

__all__ = ["BAD", "RuleSet"]


class RuleSet:
    """All rules of a service; see the module docstring."""

    def __init__(self, rules: Iterable[Rule], *, tz: str = "Asia/Shanghai", silent_factor: float = 3.0,
                 default_interval_s: float = 300.0) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.engine = Engine([r for r in self.rules if not r.is_quality], tz=tz, silent_factor=silent_factor,
                             default_interval_s=default_interval_s, gate_bad=True)
        self.watches = [QualityWatch(r) for r in self.rules if r.is_quality]

    def set_devices(self, devices: Iterable[Device]) -> None:
        self.engine.set_devices(devices)
        for w in self.watches:
            w.reset_selection()

    def process(self, reading: Reading) -> list[AlertTransition]:
        """Every transition one reading causes; a `bad` reading reaches only rules that take it."""
        out = self.engine.process(reading)
        for w in self.watches:
            t = w.seen(reading, self._tags_of)
            if t is not None:
                out.append(t)
        return [_with_kind(t, reading.kind) for t in out] if out else out

    def tick(self, now_ns: int) -> list[AlertTransition]:
        return [_with_kind(t, self._kind_of(t.device_id)) for t in self.engine.tick(now_ns)]

    def warm_up_queries(self, now_ns: int) -> list[str]:
        return warm_up_queries([r for r in self.rules if not r.is_quality], now_ns)

    def restore(self, alerts: Iterable[RestoredAlert]) -> int:
        """Put the store's firing and pending alerts back (see `Engine.restore`); call before `warm_up`."""
        alerts = list(alerts)
        n = self.engine.restore(alerts)
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
        return [_with_kind(t, self._kind_of(t.device_id)) for t in self.engine.warm_up(readings)]

    def state_of(self, rule_id: str, device_id: str) -> RuleState | None:
        return self.engine.state_of(rule_id, device_id)

    def trend_now(self, rule_id: str, device_id: str) -> TrendNow | None:
        """The newest reading of one (rule, device) with its rate and time to target (see `Engine.trend_now`)."""
        return self.engine.trend_now(rule_id, device_id)

    def state_stats(self) -> list[RuleStateStats]:
        """Memory of the rule state by rule (see `Engine.state_stats`)."""
        return self.engine.state_stats()

    @property
    def due_entries(self) -> int:
        """Entries in the engine's due-heap."""
        return self.engine.due_entries

    def _kind_of(self, device_id: str) -> str:
        device = self.engine.device(device_id)
        return device.kind if device is not None else ""

    def _tags_of(self, reading: Reading) -> dict[str, str]:
        """The reading's tags completed from the registry (what a quality rule's selector reads)."""
        return self.engine.tags_of(reading.device_id, reading.tags)


def _with_kind(t: AlertTransition, kind: str) -> AlertTransition:
    """The transition labelled with its device's kind (the `alerts` points' `kind` tag, inhibit rules)."""
    if not kind or ("kind", kind) in t.labels:
        return t
    labels = dict(t.labels)
    labels["kind"] = kind
    return dataclasses.replace(t, labels=tuple(sorted(labels.items())))
