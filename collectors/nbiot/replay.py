"""Replay protection for platform pushes: a time window on the message's own time, and OneNET nonces.

A signed OneNET push carries a random `nonce`; the same nonce and signature seen again within
`window_s` is a replay and refused, even when the message has no `at` time of its own (then
the point's time would be the time of arrival, so every replay would add a point). A push
whose own time (`at`, CTWing `timestamp`, in ms) is further than `window_s` from now is
refused as stale, so a push captured earlier cannot be replayed after its nonce was forgotten.
Nonces are remembered in memory (bounded), only once the push was accepted: a push that
failed may be retried by the platform.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import orjson


def message_times_ms(doc: Any, key: str) -> list[int]:
    """The `key` times (ms) of one message or a list of messages; non-numbers are ignored."""
    items = doc if isinstance(doc, list) else [doc]
    return [int(v) for d in items if isinstance(d, dict)
            for v in [d.get(key)] if isinstance(v, int | float) and not isinstance(v, bool)]


def onenet_times_ms(msg: str) -> list[int]:
    try:
        return message_times_ms(orjson.loads(msg), "at")
    except orjson.JSONDecodeError:
        return []


class ReplayGuard:
    """Refuses nonces seen within `window_s` and message times outside now ± `window_s`."""

    def __init__(self, window_s: float, *, max_nonces: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.max_nonces = max_nonces
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def stale(self, times_ms: Iterable[int]) -> str | None:
        """Why one of the message times is outside the window, or None."""
        now_ms = self.clock() * 1000
        for t in times_ms:
            if abs(now_ms - t) > self.window_s * 1000:
                return f"message time {t} ms is {abs(now_ms - t) / 1000:.0f} s from now (window {self.window_s:g} s)"
        return None

    def claim(self, nonce: str) -> bool:
        """Take `nonce` for one push; False when it was seen (or is being handled) within the window."""
        now = self.clock()
        seen = self._seen
        while seen:
            oldest, at = next(iter(seen.items()))
            if now - at <= self.window_s and len(seen) < self.max_nonces:
                break
            del seen[oldest]
        if nonce in seen:
            return False
        seen[nonce] = now
        return True

    def release(self, nonce: str) -> None:
        """The push was not accepted (it may come again): forget its nonce."""
        self._seen.pop(nonce, None)
