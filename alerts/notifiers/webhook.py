"""Generic webhook (e.g. the emergency desk): POSTs urbansense's alert JSON."""

from __future__ import annotations

from typing import Any

from alerts.config import WebhookReceiver
from alerts.model import Delivery, Notice
from alerts.notifiers.base import HttpNotifier
from alerts.notifiers.text import alert_json
from core.secrets import reveal


class WebhookNotifier(HttpNotifier):
    def __init__(self, name: str, cfg: WebhookReceiver) -> None:
        super().__init__(name, timeout_s=cfg.timeout_s, headers=cfg.headers)
        self.url = reveal(cfg.url)

    def render(self, notice: Notice) -> dict[str, Any]:
        return alert_json(notice)

    async def send(self, delivery: Delivery) -> str | None:
        await self.post_json(self.url, delivery.body, delivery)
        return None
