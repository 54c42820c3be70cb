"""Waiting for the pipeline's durable hand-off of messages put into the sink."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def ack_future(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future[None], Callable[[], None]]:
    """A future and the `Incoming.ack` that completes it (safe from any thread)."""
    fut: asyncio.Future[None] = loop.create_future()

    def ack() -> None:
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))

    return fut, ack
