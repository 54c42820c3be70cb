"""What the desk page shows, as one JSON snapshot: active alerts (flood first, by severity and ETA),
the gauges with their state for the map, and the recent notifications with their delivery state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from alerts.describe import describe
from alerts.matchers import all_match
from alerts.model import SEVERITY_RANK, AlertRecord
from alerts.store import AlertStore, OutboxRow
from core.device import Device
from rules.model import TrendNow

FLOOD_KIND = "water_level"


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
        "eta_at_ms": _ms(a.updated_ns + int(a.eta_s * 1e9)) if a.eta_s is not None and a.eta_s > 0 else None,
        "untold": a.state == "firing" and a.notified and not a.receivers,  # routed to no receiver (qa3 F1)
        "since_ms": _ms(a.started_ns), "updated_ms": _ms(a.updated_ns),
        "acked_by": a.acked_by, "ack_comment": a.ack_comment, "held_back_by": a.suppressed_by,
        "case_id": a.case_id, "case_key": a.case_key, "depth_field": a.measured.field == "depth_mm",
        "place": " ".join(x for x in (device.district, device.street, device.address) if x) if device
        else " ".join(a.labels.get(k, "") for k in ("district", "street")).strip(),
        "lat": device.latitude if device else None, "lon": device.longitude if device else None,
    }


def live_view(now: TrendNow, view: dict[str, Any], *, now_ns: int, stale_after_s: float) -> dict[str, Any]:
    """A flood alert's gauge as the rules engine has it now: the newest depth (mm), the rise rate (cm/h), the
    seconds until 27 cm as of that reading and the clock time that is (ms), and when the reading was taken.
    What the row shows instead of the values frozen at the alert's last transition. `stale`: that reading is
    older than `stale_after_s` (the gauge's expected interval × silent_factor): no live depth or ETA to show;
    `clearing_ms`: below the clear level since then (the alert's keep_firing_for runs)."""
    reading_ms = now.time_ns // 1_000_000
    eta = now.eta_s
    return {"reading_ms": reading_ms, "stale": now_ns - now.time_ns > stale_after_s * 1e9,
            "stale_after_ms": int(stale_after_s * 1000),
            "clearing_ms": _ms(now.clear_since_ns),
            "depth_mm": now.current if view["depth_field"] else None,
            "rise_cm_h": None if now.rate_per_s is None or not view["depth_field"] else now.rate_per_s * 360,
            "eta_s": eta, "eta_at_ms": reading_ms + int(eta * 1000) if eta is not None and eta > 0 else None}


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
                 recent: int, trend: Callable[[str, str], TrendNow | None] | None = None,
                 watch: Callable[[frozenset[str]], None] | None = None, silent_factor: float = 3.0) -> None:
        """`trend(rule_id, device_id)`: the rules engine's newest reading of a flood alert's gauge (its `live`
        entry); `watch(device_ids)`: told which gauges those are, so that their readings push a fresh snapshot.
        A gauge with no reading within its expected interval × `silent_factor` (or none since start: an alert
        restored from the store) is `stale` in its `live` entry, never shown as live (qa3 F2)."""
        self.silent_factor = silent_factor
        self.store = store
        self.trend = trend
        self.watch = watch
        self.watched: frozenset[str] = frozenset()
        self.devices = devices
        self.tz = tz
        self.recent = recent
        self._views: dict[str, tuple[tuple[Any, ...], dict[str, Any], bytes]] = {}
        self._labels: dict[str, dict[str, str]] = {}

    def snapshot_json(self) -> bytes:
        devices = self.devices()
        versions = self.store.firing_versions()
        stale = [fp for fp, v in versions.items() if fp not in self._views or self._views[fp][0] != v]
        for a in self.store.get_committed(stale):
            view = alert_view(a, devices.get(a.device_id), self.tz)
            self._views[a.fingerprint] = (versions.get(a.fingerprint, ()), view, orjson.dumps(view))
            self._labels[a.fingerprint] = dict(a.labels)
        for fp in [fp for fp in self._views if fp not in versions]:
            del self._views[fp]
            self._labels.pop(fp, None)
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
        live = self._live(cached)
        return b"".join((b'{"now_ms":', str(time.time_ns() // 1_000_000).encode(), b',"alerts":[',
                         b",".join(c[2] for c in cached), b'],"gauges":', orjson.dumps(gauges),
                         b',"notifications":', orjson.dumps(notes), b',"live":', orjson.dumps(live),
                         b',"silences":', orjson.dumps(self._silences()), b"}"))

    def _silences(self) -> dict[str, dict[str, Any]]:
        """fingerprint → the active silence that holds an active alert back: until when (ms), by whom, why."""
        active = self.store.silences(active_at_ns=time.time_ns())
        out: dict[str, dict[str, Any]] = {}
        if not active:
            return out
        for fp, labels in self._labels.items():
            s = next((s for s in active if all_match(s.matchers, labels)), None)
            if s is not None:
                out[fp] = {"id": s.id, "until_ms": _ms(s.ends_ns), "by": s.created_by, "comment": s.comment}
        return out

    def _live(self, cached: list[tuple[tuple[Any, ...], dict[str, Any], bytes]]) -> dict[str, dict[str, Any]]:
        """fingerprint → `live_view` of every active flood alert whose gauge the rules engine has a reading of."""
        live: dict[str, dict[str, Any]] = {}
        flood = [view for _, view, _ in cached if view["flood"]]
        if self.trend is not None:
            devices, now_ns = self.devices(), time.time_ns()
            for view in flood:
                device = devices.get(view["device_id"])
                stale_after_s = (device.expected_interval_s if device is not None else 300.0) * self.silent_factor
                now = self.trend(view["rule_id"], view["device_id"])
                live[view["fingerprint"]] = live_view(now, view, now_ns=now_ns, stale_after_s=stale_after_s) \
                    if now is not None else {"reading_ms": None, "stale": True,
                                             "stale_after_ms": int(stale_after_s * 1000)}
        watched = frozenset(view["device_id"] for view in flood)
        if watched != self.watched:
            self.watched = watched
            if self.watch is not None:
                self.watch(watched)
        return live


def snapshot(store: AlertStore, devices: dict[str, Device], *, tz: str, recent: int) -> dict[str, Any]:
    """Everything the page draws, in one JSON-able dict."""
    return orjson.loads(DeskState(store, lambda: devices, tz=tz, recent=recent).snapshot_json())
