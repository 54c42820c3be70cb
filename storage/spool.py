"""`DiskSpool`: an append-only, fsync'd queue on disk for batches InfluxDB cannot take now.

Records are framed as `magic, length, CRC-32, append time, body` in numbered segment files;
`append` returns only after the record is on disk, so the caller may acknowledge the
messages it holds. Records are read back oldest first and `commit`ted once written; a
fully read segment is deleted. On open, a torn last record (a crash mid-append) is found
by its length or CRC, logged and cut off; the records before it are kept. Replaying a
record twice is harmless: InfluxDB keys a point by series and time.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

_MAGIC = b"USP1"
_HEADER = struct.Struct("<4sIIQ")  # magic, body length, crc32(length, time, body), append time (ns)
_SUFFIX = ".spool"
_CURSOR = "cursor"


class SpoolError(RuntimeError):
    """The spool folder cannot be used (locked by another process, unreadable)."""


class SpoolWriteError(SpoolError):
    """An append failed (ENOSPC, EROFS, EIO, ...); nothing of it stays in the spool. The message says what to do."""


RETRY_AFTER_WRITE_ERROR_S = 5.0
"""After a failed append the spool refuses bodies this long (or until a drained segment frees space)."""


@dataclass(frozen=True, slots=True)
class SpoolChunk:
    """Consecutive records read from one segment: their bodies joined, and where they end."""

    body: bytes
    records: int
    segment: int
    start: int
    end: int


def _crc(length: int, time_ns: int, body: bytes) -> int:
    return zlib.crc32(body, zlib.crc32(struct.pack("<IQ", length, time_ns)))


def frame(body: bytes, time_ns: int) -> bytes:
    """One record as it is stored."""
    return _HEADER.pack(_MAGIC, len(body), _crc(len(body), time_ns, body), time_ns) + body


def _read_record(f, limit: int) -> tuple[bytes, int] | str:  # type: ignore[no-untyped-def]
    """The next record at `f`'s position (body, append time), or why it is not a whole, intact record."""
    pos = f.tell()
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return f"header cut short ({len(head)} of {_HEADER.size} bytes)"
    magic, length, crc, time_ns = _HEADER.unpack(head)
    if magic != _MAGIC:
        return "no record marker"
    if pos + _HEADER.size + length > limit:
        return f"body cut short (record says {length} bytes, {limit - pos - _HEADER.size} present)"
    body = f.read(length)
    if _crc(length, time_ns, body) != crc:
        return "CRC mismatch"
    return body, time_ns


class DiskSpool:
    """A bounded on-disk FIFO of line-protocol bodies in `directory`; one process at a time.

    `max_bytes` bounds what is waiting (headers included); `has_room` tells the writer
    whether another body fits. A body larger than the bound is still taken when the spool
    is empty, so no batch can wedge. Blocking file work runs in a thread; the methods are
    safe to call from several tasks.
    """

    def __init__(self, directory: str | Path, *, max_bytes: int = 1 << 30, segment_bytes: int = 64 << 20,
                 fsync: bool = True) -> None:
        if max_bytes < 1 or segment_bytes < 1:
            raise ValueError("max_bytes and segment_bytes must be >= 1")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.torn_records = 0
        self.corrupt_bytes = 0
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        self._read_seq = 0
        self._read_off = 0
        self._next_seq = 1
        self._out = None
        self._out_seq = 0
        self._oldest_ns: int | None = None
        self.problem: str | None = None
        """Why the last append failed (None once one succeeds): the reason `has_room` says no."""
        self._retry_at = 0.0
        self._cursor_problem: str | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lockfile = open(self.directory / "lock", "a+b")  # noqa: SIM115 - held for the spool's life
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolError(f"spool {self.directory} is in use by another process") from None
        self._open()

    # ---- state ----

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting to be drained, record headers included."""
        return sum(self._sizes.values()) - self._read_off

    @property
    def empty(self) -> bool:
        return self.pending_bytes <= 0

    @property
    def full(self) -> bool:
        return self.pending_bytes >= self.max_bytes

    def has_room(self, n: int) -> bool:
        """Whether a body of `n` bytes may be appended now: within the bound, and no recent write error."""
        if self.problem is not None and time.monotonic() < self._retry_at:
            return False
        pending = self.pending_bytes
        return pending <= 0 or pending + _HEADER.size + n <= self.max_bytes

    def oldest_age_s(self, now_ns: int | None = None) -> float:
        """Age of the oldest waiting record in seconds; 0 when empty."""
        oldest = self._oldest_ns
        if oldest is None or self.empty:
            return 0.0
        return max(0.0, ((now_ns or time.time_ns()) - oldest) / 1e9)

    # ---- async API ----

    async def append(self, body: bytes) -> None:
        """Store `body` as one record; on disk (fsync'd) when this returns."""
        await asyncio.to_thread(self.append_sync, body)

    async def read(self, max_bytes: int) -> SpoolChunk | None:
        """The oldest waiting records, up to about `max_bytes` of bodies (at least one); None when empty."""
        return await asyncio.to_thread(self.read_sync, max_bytes)

    async def commit(self, chunk: SpoolChunk) -> None:
        """Forget `chunk`'s records: they are in InfluxDB (or dead-lettered)."""
        await asyncio.to_thread(self.commit_sync, chunk)

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None
            if self.empty:  # all drained: the last segment read to its end need not outlive the process
                for seq in list(self._sizes):
                    try:
                        self._path(seq).unlink(missing_ok=True)
                    except OSError:  # a failing disk: the cursor already marks it drained
                        continue
                    del self._sizes[seq]
            self._lockfile.close()

    # ---- blocking work ----

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def _open(self) -> None:
        seqs = sorted(int(p.name[:-len(_SUFFIX)]) for p in self.directory.glob(f"*{_SUFFIX}")
                      if p.name[:-len(_SUFFIX)].isdigit())
        cursor_seq, cursor_off = self._load_cursor()
        for seq in [s for s in seqs if s < cursor_seq]:
            self._path(seq).unlink(missing_ok=True)
        seqs = [s for s in seqs if s >= cursor_seq]
        self._sizes = {s: self._path(s).stat().st_size for s in seqs}
        self._next_seq = max([*seqs, cursor_seq]) + 1
        if not seqs:
            return
        self._read_seq = seqs[0]
        if cursor_seq == seqs[0]:
            self._read_off = min(cursor_off, self._sizes[seqs[0]])
        self._repair_tail(seqs[-1])
        self._oldest_ns = self._peek_time()
        if not self.empty:
            logger.warning("spool {}: {} bytes from an earlier run wait to be written to InfluxDB",
                           self.directory, self.pending_bytes)

    def _load_cursor(self) -> tuple[int, int]:
        try:
            seq, off = (self.directory / _CURSOR).read_text().split()
            return int(seq), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _save_cursor(self) -> None:
        """Record the read position; a failure (full or read-only disk) only means a replay after a restart."""
        tmp = self.directory / (_CURSOR + ".tmp")
        try:
            tmp.write_text(f"{self._read_seq} {self._read_off}\n")
            os.replace(tmp, self.directory / _CURSOR)
        except OSError as exc:
            if self._cursor_problem is None:
                logger.warning("spool {}: cannot save the read position ({}); after a restart the records "
                               "since the last saved position are written again (harmless)", self.directory, exc)
            self._cursor_problem = str(exc)
            return
        self._cursor_problem = None

    def _repair_tail(self, seq: int) -> None:
        """Cut a torn or corrupt tail off the last segment, the only one a crash can leave half-written."""
        path = self._path(seq)
        size = self._sizes[seq]
        with open(path, "rb") as f:
            f.seek(self._read_off if seq == self._read_seq else 0)
            while f.tell() < size:
                pos = f.tell()
                got = _read_record(f, size)
                if isinstance(got, str):
                    logger.warning("spool {}: torn record at offset {} ({}); skipping the last {} bytes",
                                   path, pos, got, size - pos)
                    self.torn_records += 1
                    break
            else:
                return
        with open(path, "r+b") as f:
            f.truncate(pos)
            os.fsync(f.fileno())
        self._sizes[seq] = pos

    def _peek_time(self) -> int | None:
        if self.empty:
            return None
        with open(self._path(self._read_seq), "rb") as f:
            f.seek(self._read_off)
            head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            return None
        return _HEADER.unpack(head)[3]

    def append_sync(self, body: bytes) -> None:
        """Append one record, fsync'd; on any OS error cut the partial record off and raise `SpoolWriteError`."""
        now = time.time_ns()
        record = frame(body, now)
        with self._lock:
            try:
                if self._out is None or self._sizes.get(self._out_seq, 0) >= self.segment_bytes:
                    self._rotate()
                assert self._out is not None
                view = memoryview(record)
                while view:
                    written = self._out.write(view)
                    if not written:
                        raise OSError(errno.EIO, "short write")
                    view = view[written:]
                if self.fsync:
                    os.fsync(self._out.fileno())
            except OSError as exc:
                self._undo_partial()
                self.problem = f"{exc.strerror or exc} ({errno.errorcode.get(exc.errno or 0, 'error')})"
                self._retry_at = time.monotonic() + RETRY_AFTER_WRITE_ERROR_S
                raise SpoolWriteError(f"spool {self.directory}: cannot write: {self.problem}; free space on its "
                                      f"filesystem (df {self.directory}) or make it writable") from exc
            self.problem = None
            was_empty = self.empty
            self._sizes[self._out_seq] += len(record)
            if was_empty:
                self._oldest_ns = now

    def _undo_partial(self) -> None:
        """After a failed append: cut the open segment back to its last whole record (or drop the handle)."""
        if self._out is None:
            return
        try:
            self._out.truncate(self._sizes.get(self._out_seq, 0))
        except OSError:
            self._out.close()  # unusable: the next append rotates to a new segment; read stops at the known size
            self._out = None

    def _rotate(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        seq = self._next_seq
        self._next_seq += 1
        self._out = open(self._path(seq), "ab", buffering=0)  # noqa: SIM115 - kept open for appends
        self._out_seq = seq
        self._sizes[seq] = 0
        if len(self._sizes) == 1:
            self._read_seq, self._read_off = seq, 0
        if self.fsync:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def read_sync(self, max_bytes: int) -> SpoolChunk | None:
        with self._lock:
            while not self.empty:
                seq, start = self._read_seq, self._read_off
                size = self._sizes[seq]
                if start >= size:
                    self._next_segment()
                    continue
                bodies: list[bytes] = []
                total = 0
                with open(self._path(seq), "rb") as f:
                    f.seek(start)
                    while f.tell() < size and (not bodies or total < max_bytes):
                        pos = f.tell()
                        got = _read_record(f, size)
                        if isinstance(got, str):
                            logger.error("spool {}: corrupt record at offset {} ({}); {} bytes skipped",
                                         self._path(seq), pos, got, size - pos)
                            self.corrupt_bytes += size - pos
                            end = pos
                            break
                        bodies.append(got[0] if got[0].endswith(b"\n") or not got[0] else got[0] + b"\n")
                        total += len(got[0])
                        end = f.tell()
                    else:
                        end = f.tell()
                    if bodies:
                        return SpoolChunk(b"".join(bodies), len(bodies), seq, start, end)
                    self._read_off = size  # only corrupt bytes from here: skip to the segment's end
            return None

    def _next_segment(self) -> None:
        seq = self._read_seq
        if seq == self._out_seq and self._out is not None:
            self._out.close()
            self._out = None
        try:
            self._path(seq).unlink(missing_ok=True)
        except OSError as exc:  # read-only or failing disk: the file stays, its records are replayed after a restart
            logger.warning("spool {}: cannot delete drained segment {} ({})", self.directory, seq, exc)
        self._retry_at = 0.0  # space may have been freed: the next append may try again
        del self._sizes[seq]
        self._read_seq = min(self._sizes) if self._sizes else self._next_seq
        self._read_off = 0

    def commit_sync(self, chunk: SpoolChunk) -> None:
        with self._lock:
            if chunk.segment != self._read_seq or chunk.start != self._read_off:
                raise ValueError("spool chunks must be committed in the order they were read")
            self._read_off = chunk.end
            if self._read_off >= self._sizes[chunk.segment]:
                self._next_segment()
            self._save_cursor()
            self._oldest_ns = self._peek_time()
