"""What the desk page shows, as one JSON snapshot: active alerts (flood first, by severity and ETA),
the gauges with their state for the map, and the recent notifications with their delivery state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from alerts.describe import describe
from alerts.model import SEVERITY_RANK, AlertRecord
from alerts.store import AlertStore, OutboxRow
from core.device import Device

FLOOD_KIND = "water_level"
Live = Callable[[str, str, int], "dict[str, Any] | None"]
"""(rule id, device id, now ns) → the rules' view of an active alert now (see `DeskState.live`)."""


def _ms(ns: int | None) -> int | None:
    return None if ns is None else ns // 1_000_000


def alert_view(a: AlertRecord, device: Device | None, tz: str) -> dict[str, Any]:
    """One active alert as the page shows it, rendered from the same description as every notifier."""
    kind = a.labels.get("kind") or (device.kind if device else "")
    d = describe(a.measured, value=a.value, threshold=a.threshold, eta_s=a.eta_s, time_ns=a.updated_ns,
                 labels=a.labels, kind=kind, tz=tz)
    facts = {f.key: f for f in d.facts}
    depth = a.measured.current if a.measured.field == "depth_mm" else None
    if depth is None and a.measured.field == "depth_mm" and a.measured.aggregate == "last":
        depth = a.value
    rate = facts.get("rate")
    eta_at = facts.get("eta_at")
    return {
        "fingerprint": a.fingerprint, "id": a.id, "rule_id": a.rule_id, "device_id": a.device_id,
        "severity": a.severity, "state": a.display_state, "flood": kind == FLOOD_KIND, "kind": kind,
        "quantity": d.name, "value_text": d.value_text, "threshold_text": d.threshold_text,
        "facts": [f.to_json() for f in d.facts],
        "depth_mm": depth, "rise_cm_h": rate.value if rate and rate.unit == "cm/h" else None,
        "eta_s": a.eta_s, "eta_at": eta_at.text if eta_at else None,
        "eta_due_ms": None if a.eta_s is None else _ms(a.updated_ns + int(a.eta_s * 1e9)),
        "eta_rule": a.measured.aggregate == "eta", "depth_rule": a.measured.field == "depth_mm"
        and a.measured.aggregate == "last",
        "untold": a.state == "firing" and a.notified and not a.receivers,
        "since_ms": _ms(a.started_ns), "updated_ms": _ms(a.updated_ns),
        "acked_by": a.acked_by, "ack_comment": a.ack_comment, "held_back_by": a.suppressed_by,
        "case_id": a.case_id, "case_key": a.case_key,
        "place": " ".join(x for x in (device.district, device.street, device.address) if x) if device
        else " ".join(a.labels.get(k, "") for k in ("district", "street")).strip(),
        "lat": device.latitude if device else None, "lon": device.longitude if device else None,
    }


def _order(v: dict[str, Any]) -> tuple:
    eta = v["eta_s"] if v["eta_s"] is not None else (0.0 if v["severity"] == "critical" else float("inf"))
    return (not v["flood"], -SEVERITY_RANK.get(v["severity"], 0), eta, -(v["since_ms"] or 0))


def gauge_state(alerts: Iterable[dict[str, Any]]) -> str:
    """A gauge's colour: its worst active alert (acknowledged when every one is acknowledged)."""
    alerts = list(alerts)
    if not alerts:
        return "normal"
    worst = max(alerts, key=lambda v: SEVERITY_RANK.get(v["severity"], 0))["severity"]
    return "acknowledged" if all(v["acked_by"] for v in alerts) else worst


def notification_view(o: OutboxRow, alert: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": o.id, "created_ms": _ms(o.created_ns), "receiver": o.receiver, "event": o.event,
            "status": o.status, "attempts": o.attempts, "delivered_ms": _ms(o.delivered_ns),
            "error": (o.last_error or "")[:200], "rule_id": alert["rule_id"] if alert else "",
            "device_id": alert["device_id"] if alert else ""}


class DeskState:
    """The page's snapshot as JSON bytes, rebuilt on every change but re-rendering only the alerts that
    changed: with a storm's hundreds of firing alerts, a full re-render would hold the event loop (and
    with it alert delivery) for tens of milliseconds per change."""

    def __init__(self, store: AlertStore, devices: Callable[[], dict[str, Device]], *, tz: str,
                 recent: int) -> None:
        self.live: Live | None = None
        """What the rules hold now behind each active alert (`RulesAndAlerts.live`): newest reading, value now,
        stale. The snapshot carries it per alert under "live", so that an alert the store restored at start is
        shown against the gauge's current readings, not as the previous run left it (qa3 F2)."""
        self.store = store
        self.devices = devices
        self.tz = tz
        self.recent = recent
        self._views: dict[str, tuple[tuple[Any, ...], dict[str, Any], bytes]] = {}

    def snapshot_json(self) -> bytes:
        devices = self.devices()
        versions = self.store.firing_versions()
        stale = [fp for fp, v in versions.items() if fp not in self._views or self._views[fp][0] != v]
        for a in self.store.get_committed(stale):
            view = alert_view(a, devices.get(a.device_id), self.tz)
            self._views[a.fingerprint] = (versions.get(a.fingerprint, ()), view, orjson.dumps(view))
        for fp in [fp for fp in self._views if fp not in versions]:
            del self._views[fp]
        cached = sorted(self._views.values(), key=lambda c: _order(c[1]))
        by_device: dict[str, list[dict[str, Any]]] = {}
        for _, view, _ in cached:
            by_device.setdefault(view["device_id"], []).append(view)
        gauges = [{"device_id": d.id, "lat": d.latitude, "lon": d.longitude, "place": d.address or d.street,
                   "state": gauge_state(by_device.get(d.id, ()))}
                  for d in devices.values()
                  if d.kind == FLOOD_KIND and d.latitude is not None and d.longitude is not None]
        rows = self.store.recent_outbox(self.recent)
        known = {fp: c[1] for fp, c in self._views.items()}
        missing = {o.fingerprint for o in rows} - set(known)
        for a in self.store.get_committed(missing):
            known[a.fingerprint] = {"rule_id": a.rule_id, "device_id": a.device_id}
        notes = [notification_view(o, known.get(o.fingerprint)) for o in rows]
        now_ns = time.time_ns()
        live = {}
        if self.live is not None:
            for fp, (_, view, _) in self._views.items():
                if (got := self.live(view["rule_id"], view["device_id"], now_ns)) is not None:
                    live[fp] = got
        return b"".join((b'{"now_ms":', str(now_ns // 1_000_000).encode(), b',"alerts":[',
                         b",".join(c[2] for c in cached), b'],"gauges":', orjson.dumps(gauges),
                         b',"notifications":', orjson.dumps(notes), b',"live":', orjson.dumps(live), b"}"))


def snapshot(store: AlertStore, devices: dict[str, Device], *, tz: str, recent: int) -> dict[str, Any]:
    """Everything the page draws, in one JSON-able dict."""
    return orjson.loads(DeskState(store, lambda: devices, tz=tz, recent=recent).snapshot_json())
