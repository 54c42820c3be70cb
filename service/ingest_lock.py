"""One process per ingest id on this machine: an flock'd file per id, holding the pid of its process.

Two processes with one ingest id have one MQTT client id: the broker hands the session to
whichever connected last, so they take it from each other for ever (each take-over redelivers
the unacknowledged messages) — what a second `urbansense run --workers N` on the same config did
(qa3 F8). The lock files live beside the spool folders (`<spool.path>/ingest-<id>.lock`); the
kernel releases a lock when its process dies, so a killed process never leaves one behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterable
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class IngestIdHeld(RuntimeError):
    """Ingest ids another running process holds; the text names them, the pid, and what to do."""


def lock_path(directory: Path, ingest_id: str) -> Path:
    return directory / f"ingest-{_SAFE.sub('_', ingest_id)}.lock"


class IngestIdLock:
    """Holds the lock of one ingest id until `release` (or the process ends)."""

    def __init__(self, directory: Path, ingest_id: str) -> None:
        """Raises `IngestIdHeld` when another process holds it; OSError when the folder cannot be used."""
        self.ingest_id = ingest_id
        directory.mkdir(parents=True, exist_ok=True)
        self.path = lock_path(directory, ingest_id)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise IngestIdHeld(_held_text([ingest_id], {holder} if holder else set())) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the only descriptor drops the flock


def check_free(directory: Path, ingest_ids: Iterable[str]) -> None:
    """Raise `IngestIdHeld` naming every id of `ingest_ids` a running process holds (none is kept locked)."""
    held: list[str] = []
    pids: set[int] = set()
    for ingest_id in ingest_ids:
        path = lock_path(directory, ingest_id)
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(ingest_id)
            if pid := _read_pid(fd):
                pids.add(pid)
        finally:
            os.close(fd)
    if held:
        raise IngestIdHeld(_held_text(held, pids))


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None


def _held_text(ids: list[str], pids: set[int]) -> str:
    who = f"pid {', '.join(str(p) for p in sorted(pids))}" if pids else "another process"
    return (f"ingest id {', '.join(ids)} is already running on this machine ({who}): a second process with "
            "the same id would take its MQTT session away again and again. Stop that process, or give this "
            "one another id (--ingest-id)")
