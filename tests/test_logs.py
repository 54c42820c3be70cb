"""Repeated tracebacks of one cause are rate-limited in the log; the message lines stay."""

from __future__ import annotations

import io
import logging

from loguru import logger

from service.logs import setup_logging


def _fail(n: int) -> None:
    raise ConnectionResetError(f"client went away ({n})")


def test_a_flood_of_the_same_traceback_prints_it_once_and_keeps_every_line() -> None:
    out = io.StringIO()
    setup_logging("INFO", sink=out)
    try:
        for n in range(50):  # e.g. client disconnects, as aiohttp logs them through the logging module
            try:
                _fail(n)
            except ConnectionResetError:
                logging.getLogger("aiohttp.server").exception("Error handling request")
        for n in range(50):  # and our own code's logger.exception
            try:
                _fail(n)
            except ConnectionResetError:
                logger.exception("push handler failed")
        try:
            raise ValueError("another cause")
        except ValueError:
            logger.exception("push handler failed")
    finally:
        logger.remove()
        logging.basicConfig(handlers=[], force=True)
    text = out.getvalue()
    assert text.count("Traceback (most recent call last)") == 3, text[:3000]
    assert text.count("aiohttp.server: Error handling request") == 50
    assert text.count("push handler failed") == 51
    assert "traceback shown at most once per 60 s" in text
