"""Alert transitions as points of InfluxDB's `alerts` measurement (Grafana annotations read them)."""

from __future__ import annotations

import math

from alerts.model import fingerprint
from core.reading import FieldValue, Point
from core.transition import AlertTransition

MEASUREMENT = "alerts"


def transition_point(t: AlertTransition) -> Point:
    """Tags rule_id, device_id, severity, to_state, district and kind (when labelled); fields value, threshold,
    eta_s (floats, when known), from_state, summary and fingerprint (strings)."""
    labels = dict(t.labels)
    tags = {"rule_id": t.rule_id, "device_id": t.device_id, "severity": str(t.severity),
            "to_state": str(t.to_state), "district": labels.get("district", ""), "kind": labels.get("kind", "")}
    fields: dict[str, FieldValue] = {"from_state": str(t.from_state), "summary": t.summary,
                                     "fingerprint": fingerprint(t.rule_id, t.device_id)}
    for name, v in (("value", t.value), ("threshold", t.threshold), ("eta_s", t.eta_s)):
        if v is not None and math.isfinite(v):
            fields[name] = float(v)
    return Point(MEASUREMENT, tuple(sorted((k, v) for k, v in tags.items() if v)), fields, t.time_ns)
