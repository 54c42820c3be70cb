"""Duplicate uplinks: the same frame seen twice is one reading.

A frame is the same when the network server says so (same deduplication id) or when the device
key, frame counter and payload are equal within `window_s` (LoRaWAN L2 1.0.4 §4.3.1.5: a device
reuses an FCntUp only to retransmit that frame). A counter that restarts after a rejoin carries
other payloads or comes later than the window, so it is not a duplicate. Memory is bounded per
device (its last `per_device` frames), not per message.
"""

from __future__ import annotations

import hashlib
from collections import deque

from core.uplink import Uplink

_NS = 1_000_000_000


class Deduplicator:
    """`seen(up)` is True when `up` repeats a frame already taken; the clock is the uplinks' receive time."""

    def __init__(self, window_s: float = 600.0, per_device: int = 8) -> None:
        self.window_ns = int(window_s * _NS)
        self.per_device = per_device
        self._recent: dict[str, deque[tuple[int, int | None, bytes, str | None]]] = {}

    def seen(self, up: Uplink, received_ns: int) -> str | None:
        """Why `up` is a duplicate (`same deduplication id …`, `same fCnt …`), or None and remember it."""
        if self.window_ns <= 0:
            return None
        digest = hashlib.blake2b(up.payload, digest_size=8).digest()
        recent = self._recent.get(up.device_key)
        if recent is None:
            recent = self._recent[up.device_key] = deque(maxlen=self.per_device)
        oldest = received_ns - self.window_ns
        for at, fcnt, payload, dedup_id in recent:
            if at < oldest:
                continue
            if up.dedup_id is not None and dedup_id == up.dedup_id:
                return f"same deduplication id {up.dedup_id} as {(received_ns - at) / _NS:.1f} s before"
            if up.fcnt is not None and fcnt == up.fcnt and payload == digest:
                return f"same fCnt {up.fcnt} and payload as {(received_ns - at) / _NS:.1f} s before"
        recent.append((received_ns, up.fcnt, digest, up.dedup_id))
        return None
