"""The LoRaWAN collector's metrics, read from its MQTT consumer at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as MetricsCollector

from collectors.lorawan.collector import LorawanCollector

_COUNTERS = (
    ("received", "urbansense_mqtt_messages_received", "MQTT messages received from the broker"),
    ("acked", "urbansense_mqtt_messages_acked", "MQTT messages acknowledged after their hand-off"),
    ("stale_acks", "urbansense_mqtt_stale_acks",
     "acknowledgements dropped because their connection had gone (the broker redelivers)"),
    ("connects", "urbansense_mqtt_connects", "successful connections to the broker"),
    ("reconnects", "urbansense_mqtt_reconnects", "reconnection attempts after a lost or failed connection"),
    ("connect_failures", "urbansense_mqtt_connect_failures", "connection attempts that failed"),
    ("callback_errors", "urbansense_mqtt_callback_errors", "messages whose hand-off raised (left unacknowledged)"),
)


class LorawanMetrics(MetricsCollector):
    """prometheus_client custom collector: `urbansense_mqtt_connected` and the consumer's counters."""

    def __init__(self, collector: LorawanCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        consumer = self.collector.consumer
        yield GaugeMetricFamily("urbansense_mqtt_connected", "1 while connected and subscribed to the broker",
                                value=1.0 if consumer is not None and consumer.connected else 0.0)
        if consumer is None:
            return
        for attr, name, doc in _COUNTERS:
            yield CounterMetricFamily(name, doc, value=getattr(consumer.stats, attr))
