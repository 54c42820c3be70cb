"""Prometheus view of the alerts package, read at scrape time: alerts by rule, severity and state,
notifications sent and failed by receiver, the outbox's depth and the age of its oldest entry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from alerts.outbox import OutboxStats
from alerts.store import AlertStore

STATES = ("pending", "firing", "acknowledged", "resolved", "inactive")


class AlertsCollector(Collector):
    """Register with `registry.register(AlertsCollector(store, lambda: worker.stats))`."""

    def __init__(self, store: AlertStore, stats: Callable[[], OutboxStats],
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.store = store
        self.stats = stats
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:  # read first: an unreachable database (PostgreSQL restarting) leaves out the store's gauges,
            counts = self.store.alert_counts()  # not the whole scrape
            backlog: tuple[int, int | None] | None = self.store.outbox_backlog()
        except SQLAlchemyError:
            counts, backlog = [], None
        alerts = GaugeMetricFamily("urbansense_alerts", "Alerts by rule, severity and state (acknowledged = "
                                   "firing and acknowledged)", labels=["rule_id", "severity", "state"])
        for rule_id, severity, state, n in counts:
            alerts.add_metric([rule_id, severity, state], n)
        yield alerts
        sent = CounterMetricFamily("urbansense_notifications_sent", "Notifications a receiver accepted",
                                   labels=["receiver"])
        failed = CounterMetricFamily("urbansense_notifications_failed",
                                     "Notification attempts that failed, by receiver and outcome (retried or "
                                     "given_up)", labels=["receiver", "outcome"])
        for (receiver, outcome), n in sorted(self.stats().by_receiver.items()):
            if outcome == "delivered":
                sent.add_metric([receiver], n)
            else:
                failed.add_metric([receiver, "given_up" if outcome == "failed" else outcome], n)
        yield sent
        yield failed
        if backlog is None:
            return
        depth, oldest_ns = backlog
        yield GaugeMetricFamily("urbansense_outbox_depth", "Notifications waiting for delivery", value=depth)
        age = 0.0 if oldest_ns is None else max(0.0, (self.clock() - oldest_ns) / 1e9)
        yield GaugeMetricFamily("urbansense_outbox_oldest_age_seconds",
                                "Age of the oldest notification waiting for delivery (0 when none)", value=age)
