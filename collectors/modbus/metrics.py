"""The Modbus collector's metrics, read from its poll state at scrape time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as MetricsCollector

if TYPE_CHECKING:  # typing only: pymodbus is imported when the collector is built
    from collectors.modbus.collector import ModbusCollector


class ModbusMetrics(MetricsCollector):
    """prometheus_client custom collector: polls, failures by reason, devices unreachable now."""

    def __init__(self, collector: ModbusCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        c = self.collector
        yield CounterMetricFamily("urbansense_modbus_polls", "Modbus polls that read their registers", value=c.polls)
        failures = CounterMetricFamily("urbansense_modbus_poll_failures",
                                       "Modbus polls that failed (timeout, connection, Modbus exception)",
                                       labels=["reason"])
        for reason, n in sorted(c.failures_by_reason.items()):
            failures.add_metric([reason], n)
        yield failures
        yield GaugeMetricFamily("urbansense_modbus_unreachable", "Modbus devices not answering now",
                                value=c.unreachable)
