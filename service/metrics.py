"""Prometheus metrics of the service, in a registry of its own (one per running service)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as MetricsCollector

from alerts.outbox import OutboxStats
from rules.footprint import RuleStateStats
from storage.writer import WriterStats


class Metrics:
    """The service's own metrics (each collector plug-in adds its own); names follow Prometheus conventions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.uplinks_received = Counter("urbansense_uplinks_received", "Uplinks received", ["source"], registry=r)
        self.readings_written = Counter("urbansense_readings_written", "Readings durably handed to storage",
                                        ["kind"], registry=r)
        self.rejected = Counter("urbansense_uplinks_rejected",
                                "Messages refused and dead-lettered, by reason", ["reason"], registry=r)
        self.readings_judged = Counter("urbansense_readings_judged",
                                       "Readings by the quality judge's verdict (good, suspect, bad)",
                                       ["kind", "quality"], registry=r)
        self.skipped = Counter("urbansense_uplinks_skipped",
                               "Messages acknowledged without a reading and without a dead letter, by reason "
                               "(duplicate: a frame already taken; mac_only: LoRaWAN fPort 0)",
                               ["reason"], registry=r)
        self.time_refused = Counter("urbansense_time_refused",
                                    "Source times the time policy did not trust, by source and reason "
                                    "(future, past, zero, unparsable, out_of_range)",
                                    ["source", "reason"], registry=r)
        self.time_source = Counter("urbansense_time_source", "Readings by the time they were given",
                                   ["source"], registry=r)
        self.history_readings = Counter("urbansense_history_readings",
                                        "Readings from records a device stored and sent later", registry=r)
        self.task_failures = Counter("urbansense_task_failures",
                                     "Long-running service tasks that ended unexpectedly", ["task"], registry=r)
        self.decode_warnings = Counter("urbansense_decode_warnings", "Non-fatal decoder warnings",
                                       ["model"], registry=r)
        self.queue_depth = Gauge("urbansense_queue_depth", "Messages waiting in the pipeline inbox", registry=r)
        self.write_seconds = Histogram("urbansense_write_seconds", "Latency of one InfluxDB write",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                       registry=r)
        self.dead_letters_pruned = Counter("urbansense_dead_letters_pruned",
                                           "Dead letters deleted by retention, by bound (size, age)", ["why"],
                                           registry=r)
        self.dead_letters_fallback = Counter(
            "urbansense_dead_letters_fallback",
            "Dead letters written to the local fallback file while the shared database was unreachable", registry=r)
        self.points_written = Counter("urbansense_points_written", "Points accepted by InfluxDB", registry=r)
        self.points_rejected = Counter("urbansense_points_rejected", "Points InfluxDB refused (dead-lettered)",
                                       registry=r)
        self.model_problems = Gauge("urbansense_model_definition_problems",
                                    "Problems in the city's model definition folders (refused files), now",
                                    registry=r)
        self.rule_state_states = Gauge("urbansense_rule_state_states",
                                       "(rule, device) rows the rules engine holds (rule \"(devices)\": devices it "
                                       "keeps a slot for; a no-data rule: devices queued or firing)", ["rule"],
                                       registry=r)
        self.rule_state_entries = Gauge("urbansense_rule_state_entries",
                                        "Window entries the rules engine holds (time buckets or trend points; rules "
                                        "sharing buckets each count them; a no-data rule: its queue)",
                                        ["rule"], registry=r)
        self.rule_state_bytes = Gauge("urbansense_rule_state_bytes",
                                      "Bytes of rule state (columns, window entry arrays, pending and firing "
                                      "machines; shared buckets split evenly between their rules), entry "
                                      "arrays sampled above 1,000 rows", ["rule"], registry=r)
        self.rule_state_active = Gauge("urbansense_rule_state_active",
                                       "Pending or firing (rule, device) alert machines: the only per-state objects",
                                       ["rule"], registry=r)
        self.rule_due_entries = Gauge("urbansense_rule_due_entries",
                                      "Entries in the rules engine's due-heap (for, keep_firing_for)", registry=r)
        self.spool_bytes = Gauge("urbansense_spool_bytes", "Bytes in the disk spool waiting for InfluxDB",
                                 registry=r)
        self.spool_oldest_age = Gauge("urbansense_spool_oldest_age_seconds",
                                      "Age of the oldest spooled batch (0 when the spool is empty)", registry=r)
        self.desk_logins = Counter("urbansense_desk_logins",
                                   "Desk console login attempts by outcome (ok; failed: wrong user name or password; "
                                   "refused: the name or address is locked after too many failures)",
                                   ["outcome"], registry=r)
        self.desk_lockouts = Counter("urbansense_desk_lockouts",
                                     "Desk console lockouts begun, by what was locked (user, address)", ["scope"],
                                     registry=r)
        for outcome in ("ok", "failed", "refused"):
            self.desk_logins.labels(outcome=outcome)  # exported from 0, so a rate can be alerted on at once
        for scope in ("user", "address"):
            self.desk_lockouts.labels(scope=scope)
        self.leader = Gauge("urbansense_leader", "1 while this instance runs the stateful work (rules, alert "
                            "state, outbox); 0 on a cluster's standby or ingest-only process", registry=r)

    def observe_rule_state(self, stats: Iterable[RuleStateStats], due_entries: int) -> None:
        """Set the rule-state gauges from `Engine.state_stats()` and `Engine.due_entries`."""
        for st in stats:
            self.rule_state_states.labels(rule=st.rule_id).set(st.states)
            self.rule_state_entries.labels(rule=st.rule_id).set(st.entries)
            self.rule_state_bytes.labels(rule=st.rule_id).set(st.bytes)
            self.rule_state_active.labels(rule=st.rule_id).set(st.active)
        self.rule_due_entries.set(due_entries)

class KeptStats(MetricsCollector):
    """prometheus_client custom collector over counters the batch writer and the alert outbox keep
    themselves (spooled and drained points, batches, failed writes; deliveries, retries, refusals)."""

    def __init__(self, writer: Callable[[], WriterStats | None], outbox: Callable[[], OutboxStats | None]) -> None:
        self.writer = writer
        self.outbox = outbox

    def collect(self) -> Iterable[Metric]:
        w = self.writer()
        if w is not None:
            yield CounterMetricFamily("urbansense_points_spooled", "Points written to the disk spool while "
                                      "InfluxDB could not take them", value=w.points_spooled)
            yield CounterMetricFamily("urbansense_points_drained", "Spooled points later written to InfluxDB",
                                      value=w.points_drained)
            yield CounterMetricFamily("urbansense_batches_written", "Batches InfluxDB accepted",
                                      value=w.batches_written)
            yield CounterMetricFamily("urbansense_write_failures", "InfluxDB write attempts that failed",
                                      value=w.write_failures)
        o = self.outbox()
        if o is not None:
            yield CounterMetricFamily("urbansense_notifications_delivered", "Alert notifications a receiver accepted",
                                      value=o.delivered)
            yield CounterMetricFamily("urbansense_notifications_retried",
                                      "Alert notification attempts rescheduled after a retryable failure",
                                      value=o.retried)
            yield CounterMetricFamily("urbansense_notifications_refused",
                                      "Alert notifications a receiver refused for good", value=o.failed_permanently)
