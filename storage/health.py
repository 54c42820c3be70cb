"""What the storage side tells operators: readiness reasons, the spool opened or refused, truthful shutdown figures.

Kept in one place so that the service's `/readyz` (and a later generic readiness mechanism)
asks one function why storage is not ready.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from storage.spool import DiskSpool, SpoolError
from storage.writer import BatchWriter


def open_spool(path: Path, *, max_bytes: int, segment_bytes: int) -> DiskSpool | None:
    """The disk spool, or None (with a clear ERROR) when its folder cannot be used (EROFS, EACCES, EIO, locked).

    Without a spool the service still runs: while InfluxDB is down acknowledgements are held
    and the broker keeps the data.
    """
    try:
        return DiskSpool(path, max_bytes=max_bytes, segment_bytes=segment_bytes)
    except (OSError, SpoolError) as exc:
        logger.error("spool {} cannot be used ({}); running without it: while InfluxDB is down no message is "
                     "acknowledged and the broker keeps them. Make the folder writable (or free its disk) "
                     "and restart to spool again", path, exc)
        return None


def storage_not_ready(writer: BatchWriter, has_spool: bool) -> str | None:
    """Why the storage side cannot take data now (the `/readyz` reason), or None when it can."""
    if writer.influx_reachable:
        return None
    if not has_spool:
        return "InfluxDB unreachable (no spool: acknowledgements held)"
    problem = writer.spool_problem
    if problem is not None:
        what = "full" if problem == "full" else f"cannot be written: {problem}"
        return f"InfluxDB unreachable and the spool {what} (acknowledgements held)"
    return None


def shutdown_summary(received: int, writer: BatchWriter, spool: DiskSpool | None) -> str:
    """The stop line: what reached InfluxDB, what waits in the spool, what stays with the broker."""
    s = writer.stats
    waiting = max(0, spool.pending_bytes) if spool is not None else 0
    held = writer.unfinished_lines
    return (f"stopped: {received} received; {s.points_written} points written to InfluxDB "
            f"({s.points_drained} of them from the spool), {s.points_spooled} spooled, "
            f"{waiting} bytes still in the spool, {held} lines not stored (left unacknowledged with the broker), "
            f"{s.points_rejected} refused by InfluxDB (dead-lettered)")
