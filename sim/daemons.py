"""Start and stop real Mosquitto and InfluxDB 1.x servers on loopback, for the demo and the tests.

Each server gets a generated config, a free 127.0.0.1 port and its data under a folder
of the caller's; nothing listens on any other address.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg

_D = TypeVar("_D", bound="Daemon")

APT_HINT = "sudo apt-get install -y mosquitto influxdb postgresql"


def stop_process(proc: subprocess.Popen, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Send `sig` (SIGTERM: a clean stop) to a child still running, then SIGKILL if it has not exited in `timeout`
    seconds; returns once it has exited."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class DaemonError(RuntimeError):
    """A server binary is missing or did not become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(n: int, tries: int = 200) -> int:
    """The first of `n` consecutive TCP ports on 127.0.0.1 that nothing listens on right now (`run --workers`
    gives worker k the parent's metrics port + k). A `RuntimeError` if none was found in `tries` draws."""
    for _ in range(tries):
        first = free_port()
        if first + n - 1 > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(first + 1, first + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1 in {tries} tries")


def _on_a_free_port(start: Callable[[int], _D], port: int | None) -> _D:
    """`start(port)`, or `start` on a free port; another free port if someone bound the chosen one first.

    `free_port` only says a port is free now: a parallel test run (pytest -n) or any other program can
    take it before the server binds it. That shows as "address already in use" in the server's log.
    """
    if port is not None:
        return start(port)
    for attempt in range(3):
        try:
            return start(free_port())
        except DaemonError as e:
            if attempt == 2 or "in use" not in str(e).lower():
                raise
    raise AssertionError("unreachable")


def find_binary(name: str, candidates: tuple[str, ...]) -> str:
    """Path of a server binary, or a `DaemonError` that says which apt command installs it."""
    for c in (name, *candidates):
        path = shutil.which(c) or (c if Path(c).is_file() else None)
        if path:
            return path
    raise DaemonError(f"{name} is not installed; install it with: {APT_HINT}")


@dataclass
class Daemon:
    """A running server process and where it listens."""

    name: str
    process: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path
    config_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in `timeout` seconds."""
        stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http_ok(url: str, timeout: float = 60.0, *, proc: subprocess.Popen | None = None,
                 log: Path | None = None) -> None:
    """Wait until GET `url` answers 200 (a service's /healthz or /readyz). `DaemonError`, ending with the last
    3,000 characters of `log`, when `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            problem = f"the process exited ({proc.returncode}) before {url} answered 200"
        elif time.monotonic() > deadline:
            problem = f"{url} did not answer 200 within {timeout:g} s"
        else:
            time.sleep(0.2)
            continue
        tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        raise DaemonError(f"{problem}:\n{tail}" if tail else problem)


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener's files: the CA clients are checked against, the server's certificate and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_certificate: bool = True


def mosquitto_config(port: int, data_dir: Path, *, max_queued_messages: int = 1_000_000,
                     max_inflight_messages: int = 0, autosave_interval: int = 1, tls: BrokerTls | None = None,
                     tcp_nodelay: bool = True) -> str:
    """A Mosquitto 2.0 config sized for a sensor backlog.

    Mosquitto keeps only `max_queued_messages` (default 1,000) per offline client and
    silently drops the rest, and with persistence on saves only every
    `autosave_interval` (default 1,800 s): both are raised/lowered here so that a
    consumer that is away or a broker restart loses nothing. `set_tcp_nodelay`: Nagle's algorithm would
    hold a small PUBLISH until the previous one is acknowledged (alert latency). With `tls` the listener
    speaks TLS 1.2+ only (and asks for a client certificate unless told not to).
    """
    tls_lines = [] if tls is None else [
        f"cafile {tls.ca_file}", f"certfile {tls.cert_file}", f"keyfile {tls.key_file}",
        f"require_certificate {'true' if tls.require_client_certificate else 'false'}"]
    return "\n".join([
        "# generated by urbansense: loopback only",
        f"listener {port} 127.0.0.1",
        *tls_lines,
        "allow_anonymous true",
        f"user {getpass.getuser()}",
        "persistence true",
        f"persistence_location {data_dir}/",
        f"autosave_interval {autosave_interval}",
        f"max_queued_messages {max_queued_messages}",
        "max_queued_bytes 0",
        f"max_inflight_messages {max_inflight_messages}",
        "persistent_client_expiration 7d",
        f"set_tcp_nodelay {'true' if tcp_nodelay else 'false'}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "",
    ])


def start_mosquitto(base: Path, port: int | None = None, *, tls: BrokerTls | None = None, **config: int) -> Daemon:
    """Start Mosquitto with its data in `base/mosquitto`; reuses the folder (and so the persisted queue)."""
    return _on_a_free_port(lambda p: _start_mosquitto(base, p, tls, config), port)


def _start_mosquitto(base: Path, port: int, tls: BrokerTls | None, config: dict[str, int]) -> Daemon:
    binary = find_binary("mosquitto", ("/usr/sbin/mosquitto",))
    data_dir = base / "mosquitto"
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "mosquitto.conf"
    conf.write_text(mosquitto_config(port, data_dir, tls=tls, **config))
    log = data_dir / "mosquitto.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    d = Daemon("mosquitto", proc, port, data_dir, log, conf)
    if not _wait_port(port, proc, 10):
        d.stop()
        raise DaemonError(f"mosquitto did not start on 127.0.0.1:{port}:\n{d.log_tail()}")
    return d


def influxd_config(http_port: int, rpc_port: int, data_dir: Path) -> str:
    """An InfluxDB 1.x config: loopback only, no usage reporting, no self-monitoring writes."""
    return f"""# generated by urbansense: loopback only
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{data_dir}/meta"
[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
"""


def start_influxd(base: Path, port: int | None = None) -> Daemon:
    """Start influxd with its data in `base/influxdb`; waits until `/ping` answers."""
    return _on_a_free_port(lambda p: _start_influxd(base, p), port)


def _start_influxd(base: Path, port: int) -> Daemon:
    binary = find_binary("influxd", ("/usr/bin/influxd",))
    data_dir = base / "influxdb"
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "influxdb.conf"
    conf.write_text(influxd_config(port, free_port(), data_dir))
    log = data_dir / "influxd.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([binary, "-config", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    d = Daemon("influxd", proc, port, data_dir, log, conf)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{d.url}/ping", timeout=0.5).status_code == 204:
                return d
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    d.stop()
    raise DaemonError(f"influxd did not start on 127.0.0.1:{port}:\n{d.log_tail()}")


PG_BIN_DIRS = tuple(sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True))
"""Debian keeps PostgreSQL's server binaries off PATH, one folder per major version (newest first)."""

PG_USER = "urbansense"
PG_DATABASE = "urbansense"


@dataclass
class PostgresDaemon(Daemon):
    """A PostgreSQL server on loopback with a password-protected role `urbansense` and database `urbansense`.

    `dsn` is a libpq URL (postgresql://urbansense:<password>@127.0.0.1:<port>/urbansense); `stop` is a
    fast shutdown (SIGINT: open sessions are ended, committed work is checkpointed), `kill` a crash.
    """

    password: str = ""

    @property
    def url(self) -> str:
        return self.dsn()

    def dsn(self, database: str = PG_DATABASE) -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.process, timeout, signal.SIGINT)

    def restart(self) -> None:
        """Start the server again on the same port and data (after `stop` or `kill`)."""
        self.stop()
        self.process = _spawn_postgres(self.data_dir, self.port, self.log_path)
        if not _wait_port(self.port, self.process, 30):
            raise DaemonError(f"postgres did not restart on 127.0.0.1:{self.port}:\n{self.log_tail()}")

    def wait_accepting(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts sessions (after `restart` its port opens while it is still starting
        up); raises psycopg's `OperationalError` when it does not within `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _pg_user() -> str | None:
    """The OS user to run PostgreSQL as: `postgres` when we are root (initdb refuses root), else ourselves."""
    return "postgres" if os.geteuid() == 0 else None


def _spawn_postgres(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    binary = find_binary("postgres", tuple(f"{d}/postgres" for d in PG_BIN_DIRS))
    with open(log, "ab") as out:
        return subprocess.Popen([binary, "-D", str(data_dir), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                                 "-c", f"unix_socket_directories={data_dir}"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, user=_pg_user())


def start_postgres(base: Path, port: int | None = None, *, durable: bool = False) -> PostgresDaemon:
    """initdb a fresh cluster and start `postgres` on 127.0.0.1 (password auth, scram-sha-256).

    The cluster lives in `base/postgres`, or, when we run as root, in a fresh folder under the system's
    temp dir owned by `postgres` (which must be able to reach it). `durable=False` (tests) turns fsync
    off: a killed server loses nothing, a killed machine might. Waits until it accepts connections.
    """
    initdb = find_binary("initdb", tuple(f"{d}/initdb" for d in PG_BIN_DIRS))
    psql = find_binary("psql", tuple(f"{d}/psql" for d in PG_BIN_DIRS))
    user = _pg_user()
    if user is None:
        data_dir = base / "postgres"
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="urbansense-pg-"))
        shutil.chown(data_dir, user, user)
    password = secrets.token_urlsafe(18)
    pwfile = data_dir / ".pw"
    pwfile.write_text(password + "\n")
    if user is not None:
        shutil.chown(pwfile, user, user)
    pgdata = data_dir / "data"
    subprocess.run([initdb, "-D", str(pgdata), "-U", PG_USER, f"--pwfile={pwfile}", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                   check=True, capture_output=True, user=user)
    pwfile.unlink()
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write(f"fsync = {'on' if durable else 'off'}\nmax_connections = 200\n"
                   "log_min_messages = warning\n")
    log = data_dir / "postgres.log"
    return _on_a_free_port(lambda p: _start_postgres(pgdata, p, log, password, psql, user), port)


def _start_postgres(pgdata: Path, port: int, log: Path, password: str, psql: str, user: str | None) -> PostgresDaemon:
    """Start the initdb'ed cluster on `port`; wait until it accepts connections and has its database."""
    proc = _spawn_postgres(pgdata, port, log)
    d = PostgresDaemon("postgres", proc, port, pgdata, log, pgdata / "postgresql.conf", password=password)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        r = subprocess.run([psql, "-h", str(pgdata), "-p", str(port), "-U", PG_USER,
                            "-d", "postgres", "-qAtc", f"CREATE DATABASE {PG_DATABASE}"],
                           capture_output=True, user=user)
        if r.returncode == 0:
            return d
        time.sleep(0.1)
    d.stop()
    raise DaemonError(f"postgres did not start on 127.0.0.1:{port}:\n{d.log_tail()}")
