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
    ACKNOWLEDGED = "acknowledged"  # an operator's ack or silence: an update to the open case only


@dataclass(slots=True, frozen=True)
class Measured:
    """What the rule measured, as the transition said: `field` and `aggregate` name the value's
    quantity (see `alerts.describe`); `target` is an ETA's level; `current` the field's latest
    reading and `rate_per_s` its trend in field units per second; `held_s` how long the condition
    had held when it fired."""

    field: str = ""
    aggregate: str = ""
    target: float | None = None
    current: float | None = None
    rate_per_s: float | None = None
    held_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) not in (None, "")}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Measured:
        data = data or {}
        return cls(**{k: data[k] for k in cls.__slots__ if k in data})


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
    measured: Measured = field(default_factory=Measured)
    id: int | None = None

    @property
    def display_state(self) -> str:
        return "acknowledged" if self.state is AlertState.FIRING and self.acked_by else str(self.state)


@dataclass(slots=True, frozen=True)
class Notice:
    """Everything a notifier's pure `render` needs for one event of one alert. `operator` and
    `comment` are set on an ACKNOWLEDGED event (an ack or a silence from the desk)."""

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
    measured: Measured = field(default_factory=Measured)
    case_event: Event | None = None
    operator: str | None = None
    comment: str | None = None
    case_severity: Severity | None = None
    """The highest level among the spot's firing alerts (one case per spot): what the case's title and severity
    show, so that a lower rule's update (the rising-water warning) never downgrades a 27 cm case. None: `severity`."""

    @property
    def case_action(self) -> Event:
        """The event from the case's side: one case per spot, so a second rule's firing is an update
        and a resolve is a close only when no other alert of the spot still fires."""
        return self.case_event or self.event

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

    @property
    def queue_key(self) -> tuple[str, str]:
        """Rows of one queue go out in order: one case (shared by the alerts of a spot) per receiver."""
        return (self.case_key or self.fingerprint, self.receiver)
