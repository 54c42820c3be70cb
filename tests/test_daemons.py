"""The test servers start on a free port even when a parallel run (pytest -n) takes the chosen one first."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim import daemons


@pytest.fixture
def taken_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A port bound by someone else that `free_port` hands out first (as if taken between its answer and the bind)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    answers = iter([port])
    real = daemons.free_port
    monkeypatch.setattr(daemons, "free_port", lambda: next(answers, None) or real())
    yield port
    holder.close()


@pytest.mark.parametrize("start", [daemons.start_mosquitto, daemons.start_influxd], ids=["mosquitto", "influxd"])
def test_a_server_whose_port_was_taken_meanwhile_starts_on_another(tmp_path: Path, taken_port: int, start) -> None:
    d = start(tmp_path)
    try:
        assert d.alive() and d.port != taken_port
        with socket.create_connection(("127.0.0.1", d.port), timeout=5):
            pass
        assert "in use" in d.log_path.read_text().lower(), "the first try should have met the taken port"
    finally:
        d.stop()


def test_a_server_told_to_use_a_taken_port_says_so(tmp_path: Path, taken_port: int) -> None:
    with pytest.raises(daemons.DaemonError, match=f"127.0.0.1:{taken_port}"):
        daemons.start_mosquitto(tmp_path, port=taken_port)


def test_a_run_of_free_ports_skips_a_start_whose_next_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --workers` listens on the parent's metrics port + k: a test needs k + 1 free ports in a row."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    busy_next = held.getsockname()[1] - 1  # a port whose successor is taken
    draws = iter([busy_next, *(daemons.free_port() for _ in range(50))])
    monkeypatch.setattr(daemons, "free_port", lambda: next(draws))
    try:
        first = daemons.free_port_run(3)
        assert first != busy_next
        for port in range(first, first + 3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
    finally:
        held.close()
