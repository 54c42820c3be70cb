"""WeCom (企业微信) group robot: `{"msgtype": "markdown", "markdown": {"content": ...}}`, at most 4096 bytes."""

from __future__ import annotations

from typing import Any

from alerts.config import WecomReceiver
from alerts.model import Delivery, Event, Notice
from alerts.notifiers.base import HttpNotifier, robot_errcode
from alerts.notifiers.text import EVENT_ZH, SEVERITY_ZH, markdown_lines, truncate_utf8, what
from core.secrets import reveal

MAX_BYTES = 4096
# -1 system busy, 45009 API frequency limit, 45033 concurrency limit
RETRYABLE_CODES = frozenset({-1, 45009, 45033})
COLOR = {"critical": "warning", "warning": "warning", "info": "info"}


def render_markdown(n: Notice) -> dict[str, Any]:
    if n.event is Event.RESOLVED:
        head = f'### <font color="info">【已恢复】{what(n)}</font>'
    else:
        color = COLOR.get(n.severity, "comment")
        head = (f'### <font color="{color}">【{SEVERITY_ZH.get(n.severity, n.severity)}·'
                f'{EVENT_ZH[n.event]}】{what(n)}</font>')
    lines = markdown_lines(n)
    body = "\n".join([head, *(f"> {line}" for line in lines[:-1]), lines[-1]])
    return {"msgtype": "markdown", "markdown": {"content": truncate_utf8(body, MAX_BYTES)}}


class WecomNotifier(HttpNotifier):
    def __init__(self, name: str, cfg: WecomReceiver) -> None:
        super().__init__(name, timeout_s=cfg.timeout_s)
        self.url = reveal(cfg.url)
        self.key = reveal(cfg.key)

    def render(self, notice: Notice) -> dict[str, Any]:
        return render_markdown(notice)

    async def send(self, delivery: Delivery) -> str | None:
        response = await self.post_json(self.url, delivery.body, delivery, params={"key": self.key})
        robot_errcode(response, self.url, RETRYABLE_CODES)
        return None
