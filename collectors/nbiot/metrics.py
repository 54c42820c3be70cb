"""The NB-IoT collector's metrics, read from its UDP, CoAP and push receivers' stats at scrape time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as MetricsCollector

if TYPE_CHECKING:  # typing only: the collector module (aiohttp, aiocoap) is imported when it is built
    from collectors.nbiot.collector import NbiotCollector


class NbiotMetrics(MetricsCollector):
    """prometheus_client custom collector over `NbiotCollector`'s parts (those enabled)."""

    def __init__(self, collector: NbiotCollector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        udp, coap, push = self.collector.udp, self.collector.coap, self.collector.push
        if udp is not None:
            s = udp.stats
            yield CounterMetricFamily("urbansense_nbiot_datagrams_received", "NB-IoT UDP datagrams received",
                                      value=s.received)
            yield CounterMetricFamily("urbansense_nbiot_datagrams_malformed",
                                      "NB-IoT UDP datagrams that were no valid frame (dead-lettered)",
                                      value=s.malformed)
            yield CounterMetricFamily("urbansense_nbiot_datagrams_dropped",
                                      "NB-IoT datagrams dropped because the collector's buffer was full",
                                      value=s.dropped)
            yield CounterMetricFamily("urbansense_nbiot_acks_sent", "NB-IoT ack datagrams sent after a hand-off",
                                      value=s.acks_sent)
        if coap is not None and coap.resource is not None:
            r = coap.resource
            yield CounterMetricFamily("urbansense_nbiot_coap_received", "CoAP POSTs of frames received",
                                      value=r.received)
            yield CounterMetricFamily("urbansense_nbiot_coap_malformed",
                                      "CoAP POSTs that carried no valid frame (dead-lettered)", value=r.malformed)
        if push is not None:
            accepted = CounterMetricFamily("urbansense_push_accepted", "Readings accepted from platform HTTP pushes",
                                           labels=["platform"])
            for platform, n in sorted(push.stats.accepted.items()):
                accepted.add_metric([platform], n)
            yield accepted
            refused = CounterMetricFamily("urbansense_push_refused",
                                          "Platform HTTP pushes refused, by platform and reason",
                                          labels=["platform", "reason"])
            for (platform, reason), n in sorted(push.stats.refused.items()):
                refused.add_metric([platform, reason], n)
            yield refused
