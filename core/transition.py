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
