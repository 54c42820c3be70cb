"""Supervision of the service's long-running tasks, and the one list of reasons `/readyz` answers with.

Every task that should live as long as the service (each collector's, the pipeline, the writer
and its spool drain, rule ticks, the outbox, the registry reload) is started or adopted by the
`Supervisor`. If one ends while the service is not stopping, or raises at any time, that is a
failure: logged at ERROR with its traceback, counted in `urbansense_task_failures_total{task}`,
latched in `Readiness` (so `/readyz` answers 503 naming the task) and handed to `on_failure`,
which stops the service so that it flushes what it can and exits non-zero for its own
supervisor (systemd `Restart=on-failure`, a container runtime) to restart it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from loguru import logger
from prometheus_client import Counter

ReadyCheck = Callable[[], str | None]
"""Asked on every `/readyz`: None when fine, else the reason the service is not ready."""


class Readiness:
    """Why the service is not ready, from two kinds of source, in registration order.

    `add_check(name, check)` registers a function asked on every `/readyz` (a collector's
    connection, InfluxDB and the spool); `latch(name, reason)` records a reason that holds until
    `clear(name)` (a dead task). Calling the object gives `(ok, text)` for the HTTP endpoint:
    text is "ok" or every reason, "; "-separated, each prefixed with its name.
    """

    def __init__(self) -> None:
        self._checks: dict[str, ReadyCheck] = {}
        self._notes: dict[str, Callable[[], str]] = {}
        self._latched: dict[str, str] = {}
        self._lock = threading.Lock()

    def add_check(self, name: str, check: ReadyCheck) -> None:
        with self._lock:
            self._checks[name] = check

    def add_note(self, name: str, note: Callable[[], str]) -> None:
        """Information shown after the verdict (`ok; leadership: standby …`) that never makes it not ready."""
        with self._lock:
            self._notes[name] = note

    def latch(self, name: str, reason: str) -> None:
        with self._lock:
            self._latched[name] = reason

    def clear(self, name: str) -> None:
        with self._lock:
            self._latched.pop(name, None)

    def reasons(self) -> list[str]:
        """Every current reason as `name: reason` (latched first: they are the gravest)."""
        with self._lock:
            latched = list(self._latched.items())
            checks = list(self._checks.items())
        out = [f"{name}: {reason}" for name, reason in latched]
        for name, check in checks:
            try:
                reason = check()
            except Exception as exc:  # a broken check is itself a reason, never a 500
                reason = f"readiness check failed: {type(exc).__name__}: {exc}"
            if reason:
                out.append(f"{name}: {reason}")
        return out

    def __call__(self) -> tuple[bool, str]:
        reasons = self.reasons()
        with self._lock:
            notes = list(self._notes.items())
        shown = [f"{name}: {note()}" for name, note in notes]
        return (not reasons, "; ".join(reasons or ["ok"]) + "".join(f"; {n}" for n in shown))


class Supervisor:
    """Starts or adopts named tasks and turns an unexpected end of any of them into a failure (see module)."""

    def __init__(self, readiness: Readiness, failures: Counter,
                 on_failure: Callable[[str], None]) -> None:
        self.readiness = readiness
        self.failures = failures
        self.on_failure = on_failure
        self.failed: list[str] = []
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopping = False

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start `coro` as the task `name`, supervised."""
        return self.adopt(name, asyncio.get_running_loop().create_task(coro, name=name))

    def adopt(self, name: str, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Supervise a task started elsewhere (a collector's, the writer's)."""
        self.tasks[name] = task
        task.add_done_callback(lambda t: self._ended(name, t))
        return task

    def forget(self, name: str, task: asyncio.Task[Any] | None = None) -> None:
        """Stop supervising `name` (only if it is still `task`, when given): it is about to end on purpose
        (the leader part on losing leadership); an exception it raises is still logged."""
        if task is None or self.tasks.get(name) is task:
            self.tasks.pop(name, None)

    def stopping(self) -> None:
        """From now on a task that returns or is cancelled is ending as asked; only an exception is a failure."""
        self._stopping = True

    def task_failed(self, name: str, exc: BaseException | None) -> None:
        """Report a failure seen by a component that runs its own tasks (e.g. the writer's timer)."""
        self.failed.append(name)
        self.failures.labels(name).inc()
        if exc is not None:
            logger.opt(exception=exc).error("task {} died: {}: {}; stopping so that the service is restarted",
                                            name, type(exc).__name__, exc)
            reason = f"task {name} died: {type(exc).__name__}: {exc}"
        else:
            logger.error("task {} ended unexpectedly; stopping so that the service is restarted", name)
            reason = f"task {name} ended unexpectedly"
        self.readiness.latch(f"task {name}", reason)
        self.on_failure(name)

    def _ended(self, name: str, task: asyncio.Task[Any]) -> None:
        if self.tasks.get(name) is not task:  # forgotten, or replaced by a newer task of that name
            if not task.cancelled() and task.exception() is not None:
                logger.opt(exception=task.exception()).warning("task {} (no longer supervised) ended with {}",
                                                               name, type(task.exception()).__name__)
            return
        if task.cancelled():
            if not self._stopping:
                self.task_failed(name, None)
            return
        exc = task.exception()
        if exc is not None or not self._stopping:
            self.task_failed(name, exc)
