"""Alertmanager-compatible webhook: the documented payload of `webhook_config`, version "4"."""

from __future__ import annotations

from typing import Any

from alerts.config import AlertmanagerReceiver
from alerts.model import Delivery, Event, Notice
from alerts.notifiers.base import HttpNotifier
from alerts.notifiers.text import ZERO_TIME, description, fmt_number, rfc3339, title
from core.secrets import reveal


def _labels(n: Notice) -> dict[str, str]:
    labels = {k: str(v) for k, v in n.labels.items()}
    labels.update(alertname=n.rule_id, severity=n.severity, device_id=n.device_id)
    return dict(sorted(labels.items()))


def render_v4(n: Notice, *, receiver: str, external_url: str = "") -> dict[str, Any]:
    """One group holding this one alert; `groupKey` is stable per (rule, device)."""
    status = "resolved" if n.event is Event.RESOLVED else "firing"
    labels = _labels(n)
    annotations = {"summary": n.summary or title(n), "description": description(n), "title": title(n),
                   "value": fmt_number(n.value), "threshold": fmt_number(n.threshold)}
    if n.eta_s is not None:
        annotations["eta_s"] = f"{n.eta_s:.0f}"
    group_labels = {"alertname": n.rule_id, "device_id": n.device_id}
    base = external_url.rstrip("/")
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{n.rule_id}", device_id="{n.device_id}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": base,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(n.started_ns, "UTC"),
            "endsAt": rfc3339(n.resolved_ns, "UTC") if status == "resolved" else ZERO_TIME,
            "generatorURL": f"{base}/alerts/{n.fingerprint}" if base else "",
            "fingerprint": n.fingerprint,
        }],
    }


class AlertmanagerNotifier(HttpNotifier):
    def __init__(self, name: str, cfg: AlertmanagerReceiver) -> None:
        super().__init__(name, timeout_s=cfg.timeout_s, headers=cfg.headers)
        self.url = reveal(cfg.url)
        self.external_url = cfg.external_url

    def render(self, notice: Notice) -> dict[str, Any]:
        return render_v4(notice, receiver=self.name, external_url=self.external_url)

    async def send(self, delivery: Delivery) -> str | None:
        await self.post_json(self.url, delivery.body, delivery)
        return None
