"""A bounded hand-off from collector threads (paho's network loop) to the asyncio pipeline.

`put` blocks the producing thread when the inbox is full: that stops it reading from
its socket, and with QoS 1 and a bounded in-flight window the broker keeps the rest.
Nothing is dropped. The consumer takes items in chunks, so the cross-thread wake-up
is paid once per chunk, not once per message.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Inbox(Generic[T]):
    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._loop = loop
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add from any thread; waits while full. False if it timed out or the inbox is closed."""
        with self._not_full:
            if len(self._items) >= self.maxsize and not self._not_full.wait_for(
                    lambda: len(self._items) < self.maxsize or self._closed, timeout):
                return False
            if self._closed:
                return False
            was_empty = not self._items
            self._items.append(item)
        if was_empty:
            self._loop.call_soon_threadsafe(self._ready.set)
        return True

    async def put_async(self, item: T) -> bool:
        """Add from the event loop; waits (without blocking the loop) while full. False once closed."""
        delay = 0.001
        while True:
            with self._not_full:
                if self._closed:
                    return False
                if len(self._items) < self.maxsize:
                    was_empty = not self._items
                    self._items.append(item)
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        if was_empty:
            self._ready.set()
        return True

    async def get_chunk(self, limit: int, timeout: float | None = None) -> list[T]:
        """Up to `limit` items, waiting (up to `timeout`) for at least one."""
        if not self._items:
            self._ready.clear()
            if not self._items:
                try:
                    await asyncio.wait_for(self._ready.wait(), timeout)
                except TimeoutError:
                    return []
        with self._not_full:
            n = min(limit, len(self._items))
            chunk = [self._items.popleft() for _ in range(n)]
            self._not_full.notify_all()
        return chunk

    def close(self) -> None:
        """Release any blocked producer; later puts are refused."""
        with self._not_full:
            self._closed = True
            self._not_full.notify_all()
        self._loop.call_soon_threadsafe(self._ready.set)
