"""Counting the quality judge's verdicts for Prometheus (`urbansense_readings_judged`), per chunk.

A pipeline hook: `on_reading` tallies in a dict (no Prometheus call per reading), `on_chunk_end`
adds the chunk's tallies to the counter, so the live accuracy rate can be graphed and alerted on
between `urbansense report` runs.
"""

from __future__ import annotations

from core.reading import Reading
from service.metrics import Metrics


class QualityCount:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._tally: dict[tuple[str, str], int] = {}

    def on_reading(self, reading: Reading) -> bytes:
        quality = reading.fields.get("quality")
        if isinstance(quality, str):
            key = (reading.kind, quality)
            self._tally[key] = self._tally.get(key, 0) + 1
        return b""

    def on_chunk_end(self) -> None:
        tally, self._tally = self._tally, {}
        for (kind, quality), n in tally.items():
            self.metrics.readings_judged.labels(kind, quality).inc(n)
