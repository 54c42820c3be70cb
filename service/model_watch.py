"""The city's model folders in the running service: loaded at start, reloaded when a file changes."""

from __future__ import annotations

import asyncio

from loguru import logger
from prometheus_client import Gauge

from decoders.folders import ModelFolders


def report(folders: ModelFolders, problems_gauge: Gauge) -> None:
    """Log what loaded and every refused file's `file: key: reason`; the gauge counts the problems."""
    problems_gauge.set(len(folders.problems))
    logger.info("device model folders: {} model(s) loaded from {}", len(folders.models),
                [str(p) for p in folders.paths])
    for problem in folders.problems:
        logger.warning("model definition refused: {}", problem)


async def watch_models(folders: ModelFolders, interval_s: float, problems_gauge: Gauge) -> None:
    """Every `interval_s`, reload the folders if a `.toml` or `.js` in them changed; runs until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            changed = await asyncio.to_thread(folders.refresh)
        except Exception as exc:  # an unreadable folder must not stop ingest; the last models stay in use
            logger.warning("model folder reload failed: {}", exc)
            continue
        if changed:
            report(folders, problems_gauge)
