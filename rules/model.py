"""What a loaded rule is: plain frozen dataclasses, built by `rules.loader`, read by `rules.engine`."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.transition import Severity

ANY = "*"
AGGREGATES = ("last", "mean", "min", "max", "count", "rate", "laeq", "slope", "eta")
TREND_AGGREGATES = ("slope", "eta")
BUCKETED_AGGREGATES = ("last", "mean", "min", "max", "count", "laeq")  # windows of time buckets, not points
DEFAULT_BUCKETS = 24  # resolution = window / 24 unless a rule sets `resolution`
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
OP_SYMBOLS = {">": ">", ">=": "≥", "<": "<", "<=": "≤", "==": "=", "!=": "≠"}


@dataclass(frozen=True, slots=True)
class TrendNow:
    """What a rule's window holds of a device now: its newest reading (`time_ns`, `current` in the field's
    unit), the Theil–Sen rate (field units per second; None without a trend window or below two points)
    and the seconds until the rule's target as of that reading (0: there; None: no target, or not heading
    there). What the desk shows as "depth now" instead of the value frozen at the alert's last transition.
    `clear_since_ns`: a firing alert's value is below its clear level since then (its `keep_firing_for` runs)."""

    time_ns: int
    current: float | None
    rate_per_s: float | None
    eta_s: float | None
    clear_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Threshold:
    """A limit that may depend on the schedule period and the device's zone class.

    `values` maps (period, zone class) to the limit, "*" standing for any; a plain
    number is {("*", "*"): n}. Lookup tries the exact pair, then the period with any zone.
    """

    values: Mapping[tuple[str, str], float]

    @classmethod
    def constant(cls, value: float) -> Threshold:
        return cls({(ANY, ANY): float(value)})

    def resolve(self, period: str, zone: str) -> float | None:
        v = self.values.get((period, zone))
        if v is None:
            v = self.values.get((period, ANY))
        return v

    @property
    def is_constant(self) -> bool:
        return len(self.values) == 1 and (ANY, ANY) in self.values

    def describe(self) -> str:
        """Short text: "150", or "day 50–70, night 40–60 by zone class"."""
        if self.is_constant:
            return f"{self.values[(ANY, ANY)]:g}"
        parts = []
        for period in dict.fromkeys(p for p, _ in self.values):
            vs = [v for (p, _), v in self.values.items() if p == period]
            span = f"{min(vs):g}" if min(vs) == max(vs) else f"{min(vs):g}–{max(vs):g}"
            parts.append(span if period == ANY else f"{period} {span}")
        zoned = any(z != ANY for _, z in self.values)
        return ", ".join(parts) + (" by zone class" if zoned else "")


@dataclass(frozen=True, slots=True)
class Level:
    """One severity of a rule: fires (or escalates) when the value compares true with `threshold`."""

    severity: Severity
    threshold: Threshold
    route: str


@dataclass(frozen=True, slots=True)
class Period:
    """A named time-of-day span in local time, [start, end) in minutes after midnight; may wrap."""

    name: str
    start_min: int
    end_min: int

    def contains(self, minute: int) -> bool:
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min


@dataclass(frozen=True, slots=True)
class Selector:
    """Which readings a rule sees; None means "any". Tag values None mean "any non-empty value"."""

    kinds: frozenset[str] | None = None
    districts: frozenset[str] | None = None
    zone_classes: frozenset[str] | None = None
    devices: frozenset[str] | None = None
    models: frozenset[str] | None = None
    tags: tuple[tuple[str, frozenset[str] | None], ...] = ()

    def matches(self, device_id: str, tags: Mapping[str, str]) -> bool:
        """`tags` are the reading's tags, completed from the registry (district, zone_class, model)."""
        if self.devices is not None and device_id not in self.devices:
            return False
        if self.districts is not None and tags.get("district", "") not in self.districts:
            return False
        if self.zone_classes is not None and tags.get("zone_class", "") not in self.zone_classes:
            return False
        if self.models is not None and tags.get("model", "") not in self.models:
            return False
        for key, allowed in self.tags:
            value = tags.get(key, "")
            if not value or (allowed is not None and value not in allowed):
                return False
        return True

    @property
    def needs_tags(self) -> bool:
        return any(x is not None for x in (self.districts, self.zone_classes, self.models)) or bool(self.tags)


@dataclass(frozen=True, slots=True)
class EtaSpec:
    """Attach to each transition the time to reach `target` at the robust (Theil–Sen) slope over `window_s`."""

    target: float
    window_s: float
    min_samples: int = 3
    min_span_s: float = 0.0
    """The samples must span this long (oldest to newest) before there is a slope: see `Rule.min_span_s`."""


@dataclass(frozen=True, slots=True)
class NoDataSpec:
    """Fire when a device is silent for longer than expected_interval_s × `factor` (None: the engine's)."""

    factor: float | None = None


@dataclass(frozen=True, slots=True)
class QualitySpec:
    """A maintenance rule on reading quality (rules/quality.py): fires when a device's readings fail
    one of `checks` without a break for `for_s`, or (`count` > 0) `count` times within `within_s`."""

    checks: frozenset[str]
    for_s: float = 0.0
    count: int = 0
    within_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule from a TOML file (see rules/README.md for the file format).

    A value rule computes `aggregate` of `field` over `window_s` per device and compares it
    with its `levels` using `op`; a no-data rule (`no_data` set) fires when a device is
    silent for longer than its expected interval × a factor; a quality rule (`quality` set) when
    its data stays suspect. `rising` says which way an ETA counts (toward a higher `target`, or a
    lower one). `ignore_bad`: readings judged `bad` (decoders/quality) do not reach the rule.
    """

    id: str
    select: Selector
    source: str
    field: str = ""
    aggregate: str = "last"
    window_s: float = 0.0
    per_s: float = 1.0
    target: float | None = None
    op: str = ">="
    levels: tuple[Level, ...] = ()
    clear: Threshold | None = None
    for_s: float = 0.0
    for_samples: int = 1
    keep_firing_for_s: float = 0.0
    min_samples: int = 1
    min_span_s: float = 0.0
    """Trends (slope, eta): the window's samples must span this long, oldest to newest, before a slope is taken;
    four samples seconds apart (a cold start, a burst of retransmissions) give a slope of noise."""
    min_coverage_s: float = 0.0
    max_samples: int = 2048
    resolution_s: float = 0.0
    schedule: tuple[Period, ...] = ()
    timezone: str | None = None
    eta: EtaSpec | None = None
    rising: bool = True
    no_data: NoDataSpec | None = None
    quality: QualitySpec | None = None
    ignore_bad: bool = True
    route: str = "webhook"
    labels: tuple[tuple[str, str], ...] = ()
    description: str = ""
    enabled: bool = True

    @property
    def is_no_data(self) -> bool:
        return self.no_data is not None

    @property
    def is_quality(self) -> bool:
        return self.quality is not None

    @property
    def is_trend(self) -> bool:
        return self.aggregate in TREND_AGGREGATES

    def period_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.schedule)
