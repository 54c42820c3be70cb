"""Prometheus metrics of the service, in a registry of its own (one per running service)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every counter the service exposes; names follow Prometheus conventions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.uplinks_received = Counter("urbansense_uplinks_received", "Uplinks received", ["source"], registry=r)
        self.readings_written = Counter("urbansense_readings_written", "Readings durably handed to storage",
                                        ["kind"], registry=r)
        self.rejected = Counter("urbansense_uplinks_rejected",
                                "Messages refused and dead-lettered, by reason", ["reason"], registry=r)
        self.decode_warnings = Counter("urbansense_decode_warnings", "Non-fatal decoder warnings",
                                       ["model"], registry=r)
        self.queue_depth = Gauge("urbansense_queue_depth", "Messages waiting in the pipeline inbox", registry=r)
        self.write_seconds = Histogram("urbansense_write_seconds", "Latency of one InfluxDB write",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                       registry=r)
        self.points_written = Counter("urbansense_points_written", "Points accepted by InfluxDB", registry=r)
        self.points_rejected = Counter("urbansense_points_rejected", "Points InfluxDB refused (dead-lettered)",
                                       registry=r)
        self.mqtt_connected = Gauge("urbansense_mqtt_connected", "1 while the broker connection is up",
                                    registry=r)
        self.nbiot_dropped = Counter("urbansense_nbiot_datagrams_dropped",
                                     "NB-IoT datagrams dropped because the collector's buffer was full",
                                     registry=r)
        self.push_refused = Counter("urbansense_push_refused", "Platform HTTP pushes refused, by platform and reason",
                                    ["platform", "reason"], registry=r)
        self.modbus_poll_failures = Counter("urbansense_modbus_poll_failures",
                                            "Modbus polls that failed (timeout, connection, Modbus exception)",
                                            ["reason"], registry=r)
        self.modbus_unreachable = Gauge("urbansense_modbus_unreachable", "Modbus devices not answering now",
                                        registry=r)
        self.model_problems = Gauge("urbansense_model_definition_problems",
                                    "Problems in the city's model definition folders (refused files), now",
                                    registry=r)
        self.spool_bytes = Gauge("urbansense_spool_bytes", "Bytes in the disk spool waiting for InfluxDB",
                                 registry=r)
        self.spool_oldest_age = Gauge("urbansense_spool_oldest_age_seconds",
                                      "Age of the oldest spooled batch (0 when the spool is empty)", registry=r)
