"""Fault injection for tests of the real `urbansense run` process; off unless a test turns it on.

The issue-13 guarantees (a poison message is a dead letter, never a crash loop; a dead task is a
503 and a non-zero exit, never a stall) must be shown on the real process, but no real input
makes per-message processing raise any more. So a test may set, in the process's environment,

    URBANSENSE_FAULT_INJECT=message:<device key>   processing a message of that device raises
                                                   `InjectedFault` (the pipeline dead-letters it)
    URBANSENSE_FAULT_INJECT=task:<device key>      the pipeline task itself raises `InjectedFault`
                                                   after a chunk holding a message of that device

The variable is read once, when the service builds its pipeline (`from_env`); unset or empty means
no hook at all. A set hook is logged at WARNING so that it cannot be on unnoticed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from loguru import logger

ENV = "URBANSENSE_FAULT_INJECT"
MODES = ("message", "task")


class InjectedFault(RuntimeError):
    """The exception the hook raises: something nobody foresaw, as far as the service can tell."""


@dataclass
class FaultHook:
    """Raises for one device key, in one of `MODES` (see the module)."""

    mode: str
    device_key: str
    _armed: bool = False

    def on_message(self, device_key: str) -> None:
        """Called per message once its device key is known; raises in `message` mode."""
        if device_key != self.device_key:
            return
        if self.mode == "message":
            raise InjectedFault(f"fault injected for device {device_key} ({ENV})")
        self._armed = True

    def after_chunk(self) -> None:
        """Called by the pipeline task after each chunk; raises in `task` mode once the device was seen."""
        if self._armed:
            raise InjectedFault(f"fault injected into the pipeline task after device {self.device_key} ({ENV})")


def from_env(environ: Mapping[str, str] = os.environ) -> FaultHook | None:
    """The hook `environ[ENV]` asks for, or None; raises ValueError on a value of any other shape."""
    value = environ.get(ENV, "").strip()
    if not value:
        return None
    mode, _, key = value.partition(":")
    if mode not in MODES or not key:
        raise ValueError(f"{ENV}={value!r}: expected 'message:<device key>' or 'task:<device key>'")
    logger.warning("fault injection is ON ({}={}): for tests only", ENV, value)
    return FaultHook(mode, key)
