"""Log set-up shared by the service, the demo and the commands: loguru to stderr at one level.

Libraries that log through the standard `logging` module (aiohttp, aiocoap, asyncio) are
routed into the same sink. A traceback of the same cause (same place, same exception type)
is printed once per `TRACEBACK_INTERVAL_S`; repeats in between keep their one-line message
and say how many tracebacks were left out, so a flood of client disconnects or CoAP garbage
cannot fill the disk with stack traces.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from loguru import logger

TRACEBACK_INTERVAL_S = 60.0
_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"


class TracebackLimiter:
    """A loguru filter: at most one traceback per cause per `interval_s` (the message line always stays)."""

    def __init__(self, interval_s: float = TRACEBACK_INTERVAL_S, *, max_causes: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.max_causes = max_causes
        self.clock = clock
        self._last: dict[tuple, list[float]] = {}

    def __call__(self, record: dict[str, Any]) -> bool:
        exc = record["exception"]
        if exc is None or exc.type is None:
            return True
        key = (record["name"], record["function"], record["line"], record["extra"].get("stdlib"), exc.type)
        now = self.clock()
        seen = self._last.get(key)
        if seen is None or now - seen[0] >= self.interval_s:
            if seen is not None and seen[1]:
                record["message"] += f" (the same traceback {int(seen[1])} more time(s) before, not shown)"
            if seen is None and len(self._last) >= self.max_causes:
                self._last.pop(next(iter(self._last)))
            self._last[key] = [now, 0]
            return True
        seen[1] += 1
        record["exception"] = None  # this sink only: the line without its repeated traceback
        record["message"] += f" ({exc.type.__name__}; traceback shown at most once per {self.interval_s:g} s)"
        return True


class _ToLoguru(logging.Handler):
    """Standard `logging` records (aiohttp, aiocoap, asyncio) into loguru, tracebacks included."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.bind(stdlib=record.name).opt(exception=record.exc_info).log(
            level, "{}: {}", record.name, record.getMessage())


def setup_logging(level: str, sink: TextIO = sys.stderr, *, process: str = "") -> None:
    """Send loguru's (and the standard library's) records at `level` and above to `sink`, one line each.
    `process` (letters, digits, `-`, `_`; e.g. an ingest worker's id) prefixes every message, so that the
    interleaved lines of `urbansense run --workers` say whose they are."""
    logger.remove()
    fmt = _FORMAT
    if process:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", process):
            raise ValueError(f"process name {process!r}: letters, digits, '-' and '_' only")
        fmt = _FORMAT.replace("{message}", f"[{process}] {{message}}")
    # diagnose=False: a traceback must not print local variables, which may hold secrets
    logger.add(sink, level=level, diagnose=False, format=fmt, filter=TracebackLimiter())
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.WARNING, force=True)
