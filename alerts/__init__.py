"""What an alert becomes: a persisted state machine, routing, notifiers and an outbox that loses nothing."""

from alerts.config import AlertsConfig
from alerts.manager import AlertLifecycle, Outcome
from alerts.model import Event, fingerprint
from alerts.outbox import OutboxWorker
from alerts.points import transition_point
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore

__all__ = [
           "AlertLifecycle",
           "AlertStore",
           "AlertsConfig",
           "AlertsRuntime",
           "Event",
           "OutboxWorker",
           "Outcome",
           "fingerprint",
           "transition_point",
]
