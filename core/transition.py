"""The `AlertTransition`: what the rules engine emits and the alerts package acts on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(slots=True, frozen=True)
class AlertTransition:
    """One change of one (rule, device) condition.

    `to_state` FIRING with a higher `severity` than before is an escalation within the
    same alert. `value` is the computed value (e.g. LAeq, depth, slope) and `threshold`
    what it was compared with; `eta_s` is the predicted time to reach the rule's target
    for trend rules. `route` names where it goes (e.g. "case", "emergency", "webhook");
    `labels` carries the reading's tags and the rule's own labels for routing,
    inhibition and case classification.

    What the value measures comes from the rule, not the device kind: `field_name` and
    `aggregate` (last, mean, laeq, max, min, count, rate, slope, eta; `silent` for a no-data
    rule; `failed_for` / `failed_count` for a quality rule: seconds failing / failures counted;
    value in seconds for eta and silent, field units per second × `per_s`
    for slope); `target` is the level an eta counts towards. `current` is the field's latest
    reading and `rate_per_s` its Theil–Sen trend (field units per second) where the rule
    keeps one; `held_s` how long the condition had held when it fired (occupancy time).
    """

    rule_id: str
    device_id: str
    from_state: AlertState
    to_state: AlertState
    severity: Severity
    time_ns: int
    value: float | None
    threshold: float | None
    route: str
    summary: str = ""
    eta_s: float | None = None
    labels: tuple[tuple[str, str], ...] = field(default=())
    field_name: str = ""
    aggregate: str = ""
    target: float | None = None
    current: float | None = None
    rate_per_s: float | None = None
    held_s: float | None = None
