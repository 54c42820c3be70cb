"""DingTalk (钉钉) custom robot: markdown message, signed with `timestamp` + `sign` when a secret is set.

sign = urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))), timestamp in ms;
DingTalk refuses a timestamp more than an hour off, so signing happens at send time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from alerts.config import DingtalkReceiver
from alerts.model import Delivery, Event, Notice
from alerts.notifiers.base import HttpNotifier, robot_errcode
from alerts.notifiers.text import EVENT_ZH, SEVERITY_ZH, markdown_lines, what
from core.secrets import reveal

# -1 system busy, 130101 sending too fast
RETRYABLE_CODES = frozenset({-1, 130101})


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query value (base64, before URL encoding, which httpx does)."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def render_markdown(n: Notice, *, at_mobiles: list[str], at_all: bool) -> dict[str, Any]:
    state = "已恢复" if n.event is Event.RESOLVED else f"{SEVERITY_ZH.get(n.severity, n.severity)}·{EVENT_ZH[n.event]}"
    heading = f"【{state}】{what(n)}"
    lines = [f"### {heading}", *markdown_lines(n)]
    if at_mobiles:
        lines.append(" ".join(f"@{m}" for m in at_mobiles))
    return {
        "msgtype": "markdown",
        "markdown": {"title": f"{heading} {n.device_id}", "text": "\n\n".join(lines)},
        "at": {"atMobiles": list(at_mobiles), "isAtAll": at_all},
    }


class DingtalkNotifier(HttpNotifier):
    def __init__(self, name: str, cfg: DingtalkReceiver) -> None:
        super().__init__(name, timeout_s=cfg.timeout_s)
        self.url = reveal(cfg.url)
        self.access_token = reveal(cfg.access_token)
        self.secret = reveal(cfg.secret)
        self.at_mobiles = list(cfg.at_mobiles)
        self.at_all = cfg.at_all

    def render(self, notice: Notice) -> dict[str, Any]:
        return render_markdown(notice, at_mobiles=self.at_mobiles, at_all=self.at_all)

    async def send(self, delivery: Delivery) -> str | None:
        params = {"access_token": self.access_token}
        if self.secret:
            ts = int(time.time() * 1000)
            params.update(timestamp=str(ts), sign=sign(self.secret, ts))
        response = await self.post_json(self.url, delivery.body, delivery, params=params)
        robot_errcode(response, self.url, RETRYABLE_CODES)
        return None
