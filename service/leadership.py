"""Leader election: exactly one instance runs the stateful work (rules, alert state, outbox, no-data ticks).

Two lock backends, one campaign (`Leadership`):

- `PostgresLock`: `pg_try_advisory_lock(key)` on a dedicated autocommit psycopg connection. The lock
  lives as long as the session, so a dead leader's lock goes with its connection (kill -9 included:
  the kernel closes the socket). TCP keepalives (1 s idle, 1 s interval, 3 probes, both ends) and
  `tcp_user_timeout` bound how long a silent network hides a dead peer; the leader watches the
  socket and runs `SELECT 1` every check interval, so a lost connection (PostgreSQL restarted,
  network gone) makes it step down at once.
- `FileLock`: `fcntl.flock` on a file, for the embedded SQLite set-up on one machine.

A contender tries the lock every `takeover_s / 5`; on success it keeps watching the lock for one more
interval before it acts, so that a former leader whose connection broke (it notices within one
interval) has stepped down: leadership is never held by two at once, and a standby leads within
about 2/5 of `takeover_s` after the leader's death (plus its connect time).

Visible: `is_leader`, `describe()` (the `/readyz` note), INFO log lines "leadership acquired" and
"leadership lost", and `on_change` (the service sets the `urbansense_leader` gauge there).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
from loguru import logger


class LockBackend(Protocol):
    """A lock that at most one process holds. All methods block; `Leadership` calls them on its own thread."""

    description: str

    def try_acquire(self) -> bool:
        """Take the lock if free: True when held now. Raises when the lock service cannot be reached."""
        ...

    def holds(self, wait_s: float) -> bool:
        """Watch the held lock for up to `wait_s` (less when woken): False as soon as it is lost."""
        ...

    def wake(self) -> None:
        """Make a running `holds` return now (thread-safe)."""
        ...

    def release(self) -> None:
        """Give the lock up (and close what holds it); safe when not held."""
        ...


class _Waker:
    """A self-pipe that ends a `select` early from another thread."""

    def __init__(self) -> None:
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self.w.send(b"x")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.r.recv(64):
                pass

    def wait(self, fds: list[int], wait_s: float) -> list[int]:
        """Wait up to `wait_s` for `fds` or a wake; the readable ones among `fds`."""
        readable, _, _ = select.select([*fds, self.r.fileno()], [], [], max(0.0, wait_s))
        if self.r.fileno() in readable:
            self.drain()
        return [fd for fd in readable if fd != self.r.fileno()]

    def close(self) -> None:
        self.r.close()
        self.w.close()


def libpq_url(url: str) -> str:
    """A SQLAlchemy-style URL (`postgresql+psycopg://…`) as libpq reads it (`postgresql://…`)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL (scheme {parts.scheme!r})")
    return urlunsplit((scheme, *parts[1:]))


def _where(url: str) -> str:
    """host:port/db of a URL, never its credentials (for the log)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path}"


class PostgresLock:
    """A PostgreSQL session-level advisory lock on a connection of its own (see the module)."""

    def __init__(self, url: str, key: int, *, timeout_s: float = 3.0) -> None:
        self._url = libpq_url(url)
        self.key = key
        self.timeout_s = timeout_s
        self.description = f"PostgreSQL advisory lock {key} at {_where(self._url)}"
        self._conn: psycopg.Connection[Any] | None = None
        self._waker = _Waker()

    def _connect(self) -> psycopg.Connection[Any]:
        ms = max(1000, int(self.timeout_s * 1000))
        server_side = ("-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3 "
                       f"-c tcp_user_timeout={ms}")
        return psycopg.connect(self._url, autocommit=True, connect_timeout=max(1, round(self.timeout_s)),
                               tcp_user_timeout=ms, options=server_side,
                               application_name="urbansense-leadership",
                               keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=3)

    def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        try:
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error:
            self._close()
            raise
        return bool(row and row[0])

    def holds(self, wait_s: float) -> bool:
        conn = self._conn
        if conn is None or conn.closed:
            return False
        try:
            self._waker.wait([conn.fileno()], wait_s)  # readable: the server spoke (termination) or hung up
            conn.execute("SELECT 1")
        except (psycopg.Error, OSError, ValueError) as exc:
            logger.debug("leadership: lock connection check failed: {}", exc)
            self._close()
            return False
        return True

    def wake(self) -> None:
        self._waker.wake()

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


class FileLock:
    """`fcntl.flock` on a file: one leader among the processes of one machine (the SQLite set-up)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file lock {path}"
        self._fd: int | None = None
        self._waker = _Waker()

    def try_acquire(self) -> bool:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        return True

    def holds(self, wait_s: float) -> bool:
        self._waker.wait([], wait_s)
        return self._fd is not None

    def wake(self) -> None:
        self._waker.wake()

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


Change = Callable[[bool], Awaitable[None]]
"""Called with True when leadership is gained, False when lost; awaited before the campaign goes on."""


class Leadership:
    """The campaign: try the lock every `takeover_s / 5`, lead while it holds, step down when it is lost."""

    def __init__(self, lock: LockBackend, *, takeover_s: float = 10.0, on_change: Change | None = None) -> None:
        self.lock = lock
        self.interval_s = takeover_s / 5
        self.on_change = on_change
        self.is_leader = False
        self.since = time.time()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadership")
        self._last_error = ""
        self._resigning = False

    def resign(self) -> None:
        """Step down now and campaign again after one interval (the leader part could not start)."""
        self._resigning = True
        self.lock.wake()

    def describe(self) -> str:
        """"leader" or "standby" with how long, for `/readyz` (a standby is ready: it stands by)."""
        role = "leader" if self.is_leader else "standby"
        return f"{role} for {time.time() - self.since:.0f} s ({self.lock.description})"

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _set(self, leader: bool, why: str) -> None:
        self.is_leader = leader
        self.since = time.time()
        logger.info("leadership {} ({}; {})", "acquired" if leader else "lost", self.lock.description, why)
        if self.on_change is not None:
            await self.on_change(leader)

    async def _campaign(self, stop: asyncio.Event) -> bool:
        """Until the lock is taken (True) or `stop` (False); errors reaching the lock are logged once each."""
        while not stop.is_set():
            try:
                if await self._call(self.lock.try_acquire):
                    self._last_error = ""
                    return True
            except Exception as exc:  # the database is down or unreachable: keep campaigning
                text = f"{type(exc).__name__}: {exc}".strip()
                if text != self._last_error:
                    logger.warning("leadership: cannot reach the lock ({}); trying again every {:.1f} s",
                                   text, self.interval_s)
                    self._last_error = text
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        return False

    async def _watch(self, stop: asyncio.Event, seconds: float) -> bool:
        """Watch the held lock for `seconds` (or until `stop`): False when it was lost."""
        end = time.monotonic() + seconds
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return True
            if not await self._call(self.lock.holds, min(left, self.interval_s)):
                return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and lead until `stop`; then step down (the leader part is stopped first) and release."""
        waking = asyncio.create_task(self._wake_on(stop))
        try:
            while not stop.is_set():
                if not await self._campaign(stop):
                    break
                # a former leader whose connection broke notices within one interval: let it step down first
                if not await self._watch(stop, self.interval_s * 1.5) or stop.is_set():
                    continue
                self._resigning = False
                await self._set(True, "lock taken")
                while (not stop.is_set() and not self._resigning
                       and await self._call(self.lock.holds, self.interval_s)):
                    pass
                why = "stopping" if stop.is_set() else "resigned" if self._resigning else "lock connection lost"
                await self._set(False, why)
                if self._resigning and not stop.is_set():
                    await self._call(self.lock.release)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.interval_s)
                self._resigning = False
        finally:
            waking.cancel()
            await self._call(self.lock.release)
            self._executor.shutdown(wait=False)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.lock.wake()
