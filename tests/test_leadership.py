"""Leader election (service/leadership.py) between real processes, on a real PostgreSQL and on a file lock.

Each contender is a separate Python process running `Leadership` and printing "<unix time> LEADER|STANDBY"
on every change, so a SIGKILL is a real crash and the lock really goes with the dead connection.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.daemons import PostgresDaemon, start_postgres, stop_process

ROOT = Path(__file__).resolve().parent.parent

CONTENDER = """
import asyncio, signal, sys, time
from pathlib import Path
from service.leadership import FileLock, Leadership, PostgresLock

async def main() -> None:
    kind, target, takeover = sys.argv[1], sys.argv[2], float(sys.argv[3])
    lock = PostgresLock(target, 0x75726261) if kind == "pg" else FileLock(Path(target))
    async def changed(leader: bool) -> None:
        print(f"{time.time():.3f} {'LEADER' if leader else 'STANDBY'}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await Leadership(lock, takeover_s=takeover, on_change=changed).run(stop)

asyncio.run(main())
"""


class Contender:
    def __init__(self, kind: str, target: str, takeover_s: float, out: Path) -> None:
        self.out = out
        self.handle = open(out, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-c", CONTENDER, kind, target, str(takeover_s)],
                                        cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT)

    def events(self) -> list[tuple[float, str]]:
        got = []
        for line in self.out.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] in ("LEADER", "STANDBY"):
                got.append((float(parts[0]), parts[1]))
        return got

    def leading(self) -> bool:
        ev = self.events()
        return bool(ev) and ev[-1][1] == "LEADER"

    def stop(self) -> None:
        stop_process(self.process, 10)
        self.handle.close()


@pytest.fixture
def contenders(tmp_path: Path) -> Iterator[list[Contender]]:
    made: list[Contender] = []
    yield made
    for c in made:
        c.stop()


def wait_for(cond, timeout: float, what: str) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return time.time()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def intervals(c: Contender, until: float) -> list[tuple[float, float]]:
    """The spans during which `c` said it was leader."""
    spans, start = [], None
    for t, what in c.events():
        if what == "LEADER" and start is None:
            start = t
        elif what == "STANDBY" and start is not None:
            spans.append((start, t))
            start = None
    if start is not None:
        spans.append((start, until))
    return spans


def assert_never_two(cs: list[Contender]) -> None:
    now = time.time()
    spans = sorted((s, e, i) for i, c in enumerate(cs) for s, e in intervals(c, now))
    for (_s1, e1, i1), (s2, _e2, i2) in itertools.pairwise(spans):
        assert s2 >= e1, f"contender {i1} led until {e1:.3f} but contender {i2} led from {s2:.3f}"


def start(contenders: list[Contender], tmp_path: Path, kind: str, target: str, takeover_s: float, n: int = 2) -> None:
    for i in range(n):
        contenders.append(Contender(kind, target, takeover_s, tmp_path / f"c{len(contenders)}-{i}.out"))


def one_leader(cs: list[Contender]) -> Contender:
    leaders = [c for c in cs if c.leading()]
    assert len(leaders) == 1, [c.events() for c in cs]
    return leaders[0]


def kill_leader_and_time_takeover(contenders: list[Contender], takeover_s: float) -> None:
    wait_for(lambda: any(c.leading() for c in contenders), 30, "a first leader")
    time.sleep(takeover_s / 2)  # both have campaigned: the loser stands by
    leader = one_leader(contenders)
    other = next(c for c in contenders if c is not leader)
    assert not other.events(), "the standby never led"
    killed_at = time.time()
    os.kill(leader.process.pid, signal.SIGKILL)
    leader.process.wait(10)
    led_at = wait_for(other.leading, 3 * takeover_s, "the standby to lead")
    led_at = other.events()[-1][0]
    assert led_at - killed_at <= takeover_s, f"took over after {led_at - killed_at:.1f} s (> {takeover_s} s)"


@pytest.mark.slow
def test_two_contenders_one_leads_and_the_standby_takes_over_a_killed_leader(
        pg_dsn: str, contenders: list[Contender], tmp_path: Path) -> None:
    start(contenders, tmp_path, "pg", pg_dsn, takeover_s=5.0)
    kill_leader_and_time_takeover(contenders, 5.0)


@pytest.mark.slow
def test_file_lock_one_leads_and_the_standby_takes_over_a_killed_leader(
        contenders: list[Contender], tmp_path: Path) -> None:
    start(contenders, tmp_path, "file", str(tmp_path / "state" / "leader.lock"), takeover_s=3.0)
    kill_leader_and_time_takeover(contenders, 3.0)


@pytest.mark.slow
def test_postgres_restarted_leadership_comes_back_never_two_at_once(
        contenders: list[Contender], tmp_path: Path) -> None:
    pg: PostgresDaemon = start_postgres(tmp_path / "pg")  # our own: restarting the session's would hurt others
    try:
        start(contenders, tmp_path, "pg", pg.dsn(), takeover_s=3.0)
        wait_for(lambda: any(c.leading() for c in contenders), 30, "a first leader")
        pg.stop()
        wait_for(lambda: not any(c.leading() for c in contenders), 10,
                 "the leader to step down when PostgreSQL went away")
        time.sleep(1.0)
        pg.restart()
        wait_for(lambda: any(c.leading() for c in contenders), 15, "leadership re-established")
        time.sleep(2.0)  # the loser's campaign ran against the new server too
        one_leader(contenders)
        assert_never_two(contenders)
    finally:
        for c in contenders:
            c.stop()
        pg.stop()
