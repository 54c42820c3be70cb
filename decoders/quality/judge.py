"""The `Judge`: every reading gets a `quality` (good / suspect / bad), never dropped.

One call per reading, after decoding and derivation. It writes into the reading's fields:
`quality`, `quality_check` (the failed checks, worst first, comma-separated; only when not
good) and `online_slot` (1 for the device's first report in an expected-interval slot, the
numerator of the online rate). Per device it keeps one small `_State`: the last accepted value
and its time (spike), the last value and when its run began (stuck), the last slot and verdict
(so a redelivered uplink leaves its stored judgement as it was: at-least-once delivery still
gives exactly-once storage).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from decoders.model_info import ModelInfo
from decoders.quality.checks import (
    BAD,
    FLAT_ZERO,
    GOOD,
    INSTALL,
    RANGE,
    SEVERITY,
    SPIKE,
    STUCK,
    SUSPECT,
    install_violation,
    is_flat_zero,
    is_spike,
    is_stuck,
)
from decoders.quality.profiles import Profile, build_profile

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """`quality` and the failed checks (worst first); `online_slot` 1 or 0."""

    quality: str
    checks: tuple[str, ...] = ()
    online_slot: int = 1


class _State:
    __slots__ = ("check_install", "interval_s", "kind", "last_ns", "last_value", "model", "profile", "ref_ns",
                 "ref_value", "run_start_ns", "slot", "slot_ns", "spike_value", "spiked", "verdict")

    def __init__(self, model: ModelInfo, kind: str, profile: Profile) -> None:
        self.model = model
        self.kind = kind
        self.profile = profile
        self.check_install = kind in _INSTALL_KINDS
        self.last_ns = -1
        self.slot = -1
        self.interval_s = 0.0
        self.slot_ns = _NS
        self.ref_value: float | None = None
        self.ref_ns = 0
        self.last_value: object = None
        self.run_start_ns = 0
        self.spiked = False
        self.spike_value = 0.0
        self.verdict = _GOOD[1]


_INSTALL_KINDS = frozenset({"water_level", "bin_fill"})
_GOOD = (Verdict(GOOD, (), 0), Verdict(GOOD, (), 1))
LATE = Verdict("", (), 0)
"""For a reading older than the device's newest judged one: no fields are written (see `Judge.judge`)."""


class Judge:
    """Judges readings with per-kind/per-model `Profile`s; `overrides` is config's `[quality]` kinds/models.

    `kinds` / `models` map a kind or model name to setting overrides (see `build_profile`).
    """

    def __init__(self, kinds: Mapping[str, Mapping[str, object]] | None = None,
                 models: Mapping[str, Mapping[str, object]] | None = None) -> None:
        self._kinds = dict(kinds or {})
        self._models = dict(models or {})
        self._profiles: dict[tuple[str, str], tuple[ModelInfo, Profile]] = {}
        self._states: dict[str, _State] = {}

    def profile(self, model: ModelInfo, kind: str) -> Profile:
        """The checks for `model` as a `kind`; rebuilt when the registry of models hands out a new
        `ModelInfo` under the same name (a city's model folder reloaded)."""
        key = (model.model, kind)
        cached = self._profiles.get(key)
        if cached is None or cached[0] is not model:
            overrides = {**self._kinds.get(kind, {}), **self._models.get(model.model, {})}
            cached = self._profiles[key] = (model, build_profile(model, kind, overrides))
        return cached[1]

    def forget(self, device_id: str) -> None:
        """Drop a device's history (re-installed, retired)."""
        self._states.pop(device_id, None)

    def judge(self, device_id: str, kind: str, model: ModelInfo, time_ns: int, fields: dict[str, object],
              raw: Mapping[str, object], install: Mapping[str, float], interval_s: float) -> Verdict:
        """Judge one reading and write `quality`, `quality_check`, `online_slot` into `fields`.

        `fields` are the derived fields as stored; `raw` the decoded ones (a value derivation
        refused to store is still range-checked); `interval_s` the device's expected interval.

        A reading older than the device's newest judged one is almost always a redelivery (a
        broker replaying after a restart): it gets `LATE` and no fields, so its point, which
        InfluxDB merges field by field, keeps the judgement stored the first time. A redelivery
        of the newest reading gets the same verdict again.
        """
        verdict = self._verdict(device_id, kind, model, time_ns, fields, raw, install, interval_s)
        if verdict is LATE:
            return verdict
        fields["quality"] = verdict.quality
        if verdict.checks:
            fields["quality_check"] = ",".join(verdict.checks)
        fields["online_slot"] = verdict.online_slot
        return verdict

    def _verdict(self, device_id: str, kind: str, model: ModelInfo, time_ns: int, fields: dict[str, object],
                 raw: Mapping[str, object], install: Mapping[str, float], interval_s: float) -> Verdict:
        st = self._states.get(device_id)
        if st is None or st.kind != kind or st.model.model != model.model:  # new, or now another model
            st = self._states[device_id] = _State(model, kind, self.profile(model, kind))
        elif st.model is not model:  # the same model reloaded: its ranges may have changed, history stays
            st.model, st.profile = model, self.profile(model, kind)
        if time_ns <= st.last_ns:  # a redelivery of the newest reading: the same judgement; older: none
            return st.verdict if time_ns == st.last_ns else LATE
        p = st.profile
        failed: list[str] | None = None
        for name, lo, hi in p.limits:
            v = fields.get(name)
            if v is None:
                v = raw.get(name)
                if v is None:
                    continue
            if (type(v) is float or type(v) is int) and not lo <= v <= hi:  # type: ignore[operator]
                failed = [RANGE]
                break
        if failed is None and install and st.check_install and \
                install_violation(kind, fields, install, p.mounting) is not None:  # type: ignore[arg-type]
            failed = [INSTALL]
        for name in p.zero_fields:
            if fields.get(name) == 0 and is_flat_zero(fields[name]):  # type: ignore[arg-type]
                failed = [*(failed or ()), FLAT_ZERO]
                break
        if interval_s != st.interval_s:
            st.interval_s, st.slot_ns = interval_s, int(max(interval_s, 1) * _NS)
        slot = time_ns // st.slot_ns
        online = 1 if slot != st.slot else 0
        st.slot = slot
        if p.field:
            value = fields.get(p.field)
            if value is not None and not isinstance(value, str):
                failed = self._history(p, st, time_ns, value, failed)
        st.last_ns = time_ns
        st.verdict = _GOOD[online] if failed is None else _verdict(failed, online)
        return st.verdict

    @staticmethod
    def _history(p: Profile, st: _State, time_ns: int, value: object, failed: list[str] | None) -> list[str] | None:
        """Spike and stuck, from the last accepted value and the current run of equal values."""
        if p.stuck_after_s is not None:
            if value != st.last_value:
                st.last_value = value
                st.run_start_ns = time_ns
            elif is_stuck(st.run_start_ns, time_ns, p.stuck_after_s):
                failed = [*(failed or ()), STUCK]
        if p.max_rate_per_min is None or isinstance(value, bool) or (
                failed is not None and (RANGE in failed or INSTALL in failed)):
            return failed  # a value already known wrong is neither a spike nor the reference for the next one
        v = float(value)  # type: ignore[arg-type]
        # A second reading near the first jump's level confirms it: the change is real.
        if (st.ref_value is not None and is_spike(v, st.ref_value, st.ref_ns, time_ns, p.max_rate_per_min, p.min_jump)
                and not (st.spiked and abs(v - st.spike_value) < p.min_jump)):
            st.spiked = True
            st.spike_value = v
            return [*(failed or ()), SPIKE]
        st.spiked = False
        st.ref_value = v
        st.ref_ns = time_ns
        return failed


def _verdict(failed: list[str] | None, online: int) -> Verdict:
    if not failed:
        return _GOOD[online]
    checks = tuple(sorted(failed, key=lambda c: SEVERITY[c] != BAD))
    return Verdict(BAD if SEVERITY[checks[0]] == BAD else SUSPECT, checks, online)
