"""Plain data at the alerts package's seams: the fingerprint, a stored alert, a notice to render, a delivery."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.device import Device
from core.transition import AlertState, Severity

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


def fingerprint(rule_id: str, device_id: str) -> str:
    """The alert's identity and idempotency key: 16 hex digits of SHA-256 over (rule id, device id)."""
    return hashlib.sha256(f"{rule_id}\x00{device_id}".encode()).hexdigest()[:16]


class Event(StrEnum):
    """What a notification says happened. Only these notify; a repeat re-sends a firing alert."""

    FIRING = "firing"
    ESCALATED = "escalated"
    REPEAT = "repeat"
    RESOLVED = "resolved"


@dataclass(slots=True)
class AlertRecord:
    """One row of the `alerts` table: the state of one (rule, device) alert.

    `state` is pending, firing, resolved or inactive; "acknowledged" is a firing alert with
    `acked_by` set. `seq` counts notification events over the alert's life (the outbox's
    de-duplication key); `episode` counts firings. `receivers` are those told about the current
    episode, so its resolve reaches exactly them; `notified` says the episode's firing went out
    (it is held back while silenced or inhibited).
    """

    fingerprint: str
    rule_id: str
    device_id: str
    state: AlertState
    severity: Severity
    route: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    value: float | None = None
    threshold: float | None = None
    eta_s: float | None = None
    started_ns: int | None = None
    updated_ns: int = 0
    resolved_ns: int | None = None
    acked_by: str | None = None
    acked_ns: int | None = None
    ack_comment: str | None = None
    seq: int = 0
    episode: int = 0
    notified: bool = False
    receivers: list[str] = field(default_factory=list)
    last_notified_ns: int | None = None
    suppressed_by: str | None = None
    case_key: str | None = None
    case_id: str | None = None
    id: int | None = None

    @property
    def display_state(self) -> str:
        return "acknowledged" if self.state is AlertState.FIRING and self.acked_by else str(self.state)


@dataclass(slots=True, frozen=True)
class Notice:
    """Everything a notifier's pure `render` needs for one event of one alert."""

    fingerprint: str
    seq: int
    event: Event
    rule_id: str
    device_id: str
    severity: Severity
    previous_severity: Severity | None
    route: str
    value: float | None
    threshold: float | None
    eta_s: float | None
    summary: str
    labels: dict[str, str]
    started_ns: int
    time_ns: int
    resolved_ns: int | None
    episode: int
    case_key: str
    device: Device | None
    timezone: str = "Asia/Shanghai"

    @property
    def idempotency_key(self) -> str:
        return f"{self.fingerprint}:{self.seq}"


@dataclass(slots=True, frozen=True)
class Delivery:
    """One outbox row handed to a notifier's `send`. `case_id` is the platform's id of the case
    this message belongs to, when an earlier delivery learned it."""

    id: int
    fingerprint: str
    seq: int
    receiver: str
    body: dict[str, Any]
    attempts: int
    case_key: str | None = None
    case_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.fingerprint}:{self.seq}"
