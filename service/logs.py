"""Log set-up shared by the service, the demo and the commands: loguru to stderr at one level."""

from __future__ import annotations

import sys

from loguru import logger


def setup_logging(level: str) -> None:
    """Send loguru's records at `level` and above to stderr, one timestamped line each."""
    logger.remove()
    # diagnose=False: a traceback must not print local variables, which may hold secrets
    logger.add(sys.stderr, level=level, diagnose=False,
               format="<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}")
