"""City-management case platform: opens a case when an alert fires, updates it while firing, closes it on resolve.

A case record carries what domain.md asks for: idempotency key, category names and codes
(edition selectable, full code prefixed with the district's 6-digit division code), title,
description with value, threshold and rule, device id, WGS-84 and GCJ-02 coordinates,
address, district, street, observation time, severity and source.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

import orjson
from loguru import logger

from alerts.categories import CaseCategory, CategoryTable
from alerts.config import CasePlatformReceiver
from alerts.errors import AlertsError
from alerts.model import Delivery, Event, Notice
from alerts.notifiers.base import HttpNotifier
from alerts.notifiers.text import description, kind, location, quantity, rfc3339, title
from core.secrets import reveal

ACTIONS = {Event.FIRING: "open", Event.ESCALATED: "update", Event.REPEAT: "update", Event.RESOLVED: "close",
           Event.ACKNOWLEDGED: "update"}


def category_json(cat: CaseCategory | None, district_code: str | None) -> dict[str, Any] | None:
    if cat is None:
        return None
    full = f"{district_code}{cat.code}" if district_code and cat.code else None
    return {"key": cat.key, "name": cat.name, "group": cat.group, "class": cat.cls, "code": cat.code,
            "full_code": full, "edition": cat.edition, "standard": cat.standard}


def render_case(n: Notice, *, table: CategoryTable, edition: str, district_codes: dict[str, str],
                source: str, update_on_repeat: bool = True) -> dict[str, Any] | None:
    """The case platform body for one event; None for a repeat when repeats do not update cases."""
    if n.event is Event.REPEAT and not update_on_repeat:
        return None
    action = ACTIONS[n.case_action]
    try:
        cat = table.for_alert(n.labels, kind(n), edition)
        category_error = None
    except AlertsError as exc:
        cat, category_error = None, str(exc)
    loc = location(n) or {"address": "", "district": n.labels.get("district", ""), "street": ""}
    district_code = n.labels.get("district_code") or district_codes.get(loc.get("district", ""))
    loc["district_code"] = district_code
    severity = n.case_severity or n.severity  # the spot's highest firing level: an update never lowers the case
    head = replace(n, severity=severity, event=Event.ESCALATED) if (
        n.event is Event.RESOLVED and n.case_action is not Event.RESOLVED) else replace(n, severity=severity)
    body: dict[str, Any] = {
        "idempotency_key": n.idempotency_key,
        "action": action,
        "event": str(n.event),
        "case_key": n.case_key,
        "case_id": None,
        "category": category_json(cat, district_code),
        "title": title(head),
        "description": description(n),
        "rule_id": n.rule_id,
        "device_id": n.device_id,
        "severity": severity,
        "rule_severity": n.severity,
        "status": "resolved" if action == "close" else "firing",
        "rule_status": "resolved" if n.event is Event.RESOLVED else "firing",
        "value": n.value,
        "threshold": n.threshold,
        "unit": quantity(n)[1],
        "location": loc,
        "observed_at": rfc3339(n.time_ns, n.timezone),
        "started_at": rfc3339(n.started_ns, n.timezone),
        "resolved_at": rfc3339(n.resolved_ns, n.timezone),
        "source": source,
        "alert_fingerprint": n.fingerprint,
    }
    if category_error:
        body["category_error"] = category_error
    if n.event is Event.ACKNOWLEDGED:
        body["operator"] = n.operator
        body["comment"] = n.comment
        body["description"] = f"{n.comment}。" + body["description"]
    return body


class CasePlatformNotifier(HttpNotifier):
    operator_updates = True  # an ack or a silence from the desk is an update to the open case

    def __init__(self, name: str, cfg: CasePlatformReceiver, table: CategoryTable) -> None:
        super().__init__(name, timeout_s=cfg.timeout_s, headers=cfg.headers)
        self.cfg = cfg
        self.table = table
        self.base = reveal(cfg.url).rstrip("/")
        if cfg.edition not in table.editions:
            raise AlertsError(f"receiver {name}: the category table has no edition {cfg.edition!r}")

    def render(self, notice: Notice) -> dict[str, Any] | None:
        c = self.cfg
        return render_case(notice, table=self.table, edition=c.edition, district_codes=c.district_codes,
                           source=c.source, update_on_repeat=c.update_on_repeat)

    def _url(self, path: str, d: Delivery) -> str:
        case_ref = d.case_id or d.case_key or d.fingerprint
        return self.base + path.format(case_id=quote(case_ref, safe=""), case_key=quote(d.case_key or "", safe=""),
                                       fingerprint=d.fingerprint)

    async def send(self, delivery: Delivery) -> str | None:
        body = dict(delivery.body)
        action = body.get("action")
        if action == "open":
            response = await self.post_json(self._url(self.cfg.open_path, delivery), body, delivery)
            return self._case_id(response.content)
        body["case_id"] = delivery.case_id
        path = self.cfg.close_path if action == "close" else self.cfg.update_path
        await self.post_json(self._url(path, delivery), body, delivery)
        return None

    def _case_id(self, content: bytes) -> str | None:
        try:
            data = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            data = None
        value = data.get(self.cfg.case_id_field) if isinstance(data, dict) else None
        if value is None:
            logger.warning("case platform {}: open reply has no {!r}; later updates use our case key",
                           self.name, self.cfg.case_id_field)
            return None
        return str(value)
