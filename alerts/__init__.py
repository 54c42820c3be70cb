"""What an alert becomes: a persisted state machine, routing, notifiers and an outbox that loses nothing."""

from alerts.config import AlertsConfig
from alerts.manager import AlertManager, Outcome
from alerts.model import Event, fingerprint
from alerts.outbox import OutboxWorker
from alerts.points import transition_point
from alerts.runtime import Alerts
from alerts.store import AlertStore

__all__ = [
           "AlertManager",
           "AlertStore",
           "Alerts",
           "AlertsConfig",
           "Event",
           "OutboxWorker",
           "Outcome",
           "fingerprint",
           "transition_point",
]
