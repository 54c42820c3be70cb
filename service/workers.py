"""`urbansense run --workers N`: this process campaigns to lead, N child processes ingest (issue 19).

A second `run --workers` of the same config on this machine is refused before it starts anything
(`service.ingest_lock`: the parent's and the children's ingest ids are taken).

Each child is `urbansense run --role ingest --ingest-id <base>-w<k>` with the same config: it
shares the broker subscriptions with its siblings (MQTT 5 `$share/...`), resumes its own
persistent session (its id is stable across restarts) and publishes what it stored to the
leader. A child that exits while the pool runs is restarted after a capped backoff (reset
once it has run `stable_s`), logged and counted; stopping the pool sends SIGTERM to every
child (each flushes and acknowledges what it has), then SIGKILL after `stop_timeout_s`.
Children also get SIGTERM from the kernel when this process dies (PR_SET_PDEATHSIG), so a
killed parent leaves no orphan consuming beside its replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from core.timing import backoff_s
from service.app import Service, default_ingest_id
from service.collectors import unshared_collectors
from service.ingest_lock import check_free

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def ingest_command(config_path: str | None, ingest_id: str, metrics_port: int) -> list[str]:
    """The command line of one ingest child: this Python, the same config, role ingest, its own id and port."""
    argv = [sys.executable, "-m", "cli"]
    if config_path:
        argv += ["--config", config_path]
    return [*argv, "run", "--role", "ingest", "--ingest-id", ingest_id, "--metrics-port", str(metrics_port)]


@dataclass
class Worker:
    """One ingest child: its id, command line, and what happened to it."""

    ingest_id: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    restarts: int = 0
    last_exit: int | None = None
    failures: int = 0
    """Exits in a row, each before the worker had run `stable_s` (1 after a single crash)."""
    started_at: float = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.returncode is None else None

    def trouble(self, stable_s: float) -> str | None:
        """Why this worker is not ingesting (not running, or dying again and again), or None."""
        if self.pid is None:
            return f"{self.ingest_id} is not running (exit code {self.last_exit}; restart {self.restarts})"
        if self.failures >= 2 and time.monotonic() - self.started_at < stable_s:
            return (f"{self.ingest_id} keeps exiting ({self.failures} times in a row, last exit code "
                    f"{self.last_exit}); see its log")
        return None


@dataclass(kw_only=True)
class WorkerPool:
    """Runs `workers` as child processes until `run`'s stopping event is set; restarts those that die."""

    workers: list[Worker]
    restart_min_s: float = 0.5
    restart_max_s: float = 30.0
    stable_s: float = 30.0
    stop_timeout_s: float = 45.0
    """SIGTERM → SIGKILL; above the child's own 30 s bound on flushing InfluxDB."""
    env: dict[str, str] | None = None
    on_exit: Callable[[Worker, int], None] | None = field(default=None, repr=False)

    async def run(self, stopping: asyncio.Event) -> None:
        """Start every worker, keep them running, and stop them all once `stopping` is set."""
        tasks = [asyncio.create_task(self._keep(w, stopping), name=f"worker-{w.ingest_id}") for w in self.workers]
        try:
            await stopping.wait()
        finally:
            await asyncio.gather(*(self._terminate(w) for w in self.workers))
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def trouble(self) -> str | None:
        """`/readyz` check of the leading parent: every worker that is not running or keeps dying, or None."""
        found = [t for w in self.workers if (t := w.trouble(self.stable_s))]
        if not found:
            return None
        return f"{len(self.workers) - len(found)} of {len(self.workers)} up; " + "; ".join(found)

    async def _keep(self, w: Worker, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            started = w.started_at = time.monotonic()
            w.process = await asyncio.create_subprocess_exec(*w.argv, env=self.env, preexec_fn=_die_with_parent)
            w.starts += 1
            logger.info("ingest worker {} started (pid {})", w.ingest_id, w.process.pid)
            code = await w.process.wait()
            w.last_exit = code
            if stopping.is_set():
                return
            if self.on_exit is not None:
                self.on_exit(w, code)
            w.failures = 1 if time.monotonic() - started >= self.stable_s else w.failures + 1
            delay = backoff_s(w.failures, self.restart_min_s, self.restart_max_s)
            w.restarts += 1
            logger.error("ingest worker {} (pid {}) exited with code {}; restarting it in {:.1f} s (restart {})",
                         w.ingest_id, w.process.pid, code, delay, w.restarts)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)

    async def _terminate(self, w: Worker) -> None:
        proc = w.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
        except TimeoutError:
            logger.error("ingest worker {} (pid {}) did not stop within {:.0f} s; killing it", w.ingest_id, proc.pid,
                         self.stop_timeout_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        w.last_exit = proc.returncode
        logger.info("ingest worker {} stopped (exit code {})", w.ingest_id, proc.returncode)


class WorkerMetrics:
    """prometheus_client custom collector: `urbansense_workers_running`, `urbansense_worker_restarts_total{worker}`."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("urbansense_workers_running",
                                "ingest worker processes running (one dying again and again is not counted)",
                                value=sum(1 for w in self.pool.workers if w.trouble(self.pool.stable_s) is None))
        restarts = CounterMetricFamily("urbansense_worker_restarts", "ingest worker restarts after an exit",
                                       labels=["worker"])
        for w in self.pool.workers:
            restarts.add_metric([w.ingest_id], w.restarts)
        yield restarts


class WorkersRefused(ValueError):
    """The configuration cannot be split over ingest processes; the text says why and what to do."""


def workers_config(cfg: Any) -> Any:
    """`cfg` for the leading parent of `--workers`: cluster on, role "leader"; `WorkersRefused` when an enabled
    transport cannot run in several processes of one machine, or there is no MQTT transport to share."""
    problems = unshared_collectors(cfg)
    if problems:
        raise WorkersRefused("--workers runs several ingest processes on this machine, but:\n  "
                             + "\n  ".join(problems))
    return cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"enabled": True, "role": "leader"})})


async def run_with_workers(cfg: Any, n: int, *, config_path: str | None, ingest_base: str = "",
                           pool_options: dict[str, Any] | None = None) -> int:
    """This process as the leader (`cfg` from `workers_config`) plus `n` ingest children; SIGINT/SIGTERM stop all.
    Exit code: the leader's (0 on a signal, 1 when one of its tasks died)."""
    base = ingest_base or default_ingest_id()
    port = cfg.metrics.port
    workers = [Worker(f"{base}-w{k}", ingest_command(config_path, f"{base}-w{k}", port + k if port else 0))
               for k in range(1, n + 1)]
    pool = WorkerPool(workers=workers, **(pool_options or {}))
    svc = Service(cfg, ingest_id=base, extra_metrics=[WorkerMetrics(pool)])
    svc.hold_ingest_id()  # IngestIdHeld: this config already runs here (with its workers); nothing is started
    try:
        check_free(cfg.path(cfg.spool.path), [w.ingest_id for w in workers])
        svc.readiness.add_check("workers", pool.trouble)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, svc.stop)
        # leading is the leadership lock's to say ("leadership acquired"); until then this process stands by
        logger.info("--workers {}: pid {} campaigns for leadership; ingest workers {}", n, os.getpid(),
                    ", ".join(w.ingest_id for w in workers))
        pool_task = asyncio.create_task(pool.run(svc.stopping), name="workers")
        try:
            await svc.run()
        finally:
            svc.stop()
            await pool_task
    finally:
        svc.release_ingest_id()
    return svc.exit_code
