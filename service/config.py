"""Configuration: `config.toml` read, validated and resolved into typed sections.

An unknown key, a wrong type or a missing value stops start-up with a `ConfigError`
naming the key and what is expected. Secrets may come from the environment instead
of the file (see `SECRET_ENV`).
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, create_model, field_validator

from alerts.config import AlertsConfig
from collectors.lorawan.config import MqttConfig
from collectors.plugin import CollectorPlugin
from collectors.registry import plugins as registered_plugins
from core.config import Section
from core.database import bare_at_problem, is_postgres_url
from core.secrets import SecretStr, SecretUrl, redact_url
from core.timepolicy import TimePolicy
from core.tls import TlsError, client_context
from core.validation import describe_errors
from decoders.config import DecodersConfig
from decoders.quality.config import QualityConfig
from grafana.config import GRAFANA_TOKEN_ENV, GrafanaConfig
from service.cluster import ClusterConfig
from storage.config import INFLUXDB_PASSWORD_ENV, INFLUXDB_TOKEN_ENV, InfluxConfig

DEFAULT_PATH = "config.toml"
CONFIG_ENV = "URBANSENSE_CONFIG"
SECRET_ENV = {
    ("database", "url"): "URBANSENSE_DATABASE_URL",
    ("metrics", "token"): "URBANSENSE_METRICS_TOKEN",
    ("mqtt", "password"): "URBANSENSE_MQTT_PASSWORD",
    ("influxdb", "password"): INFLUXDB_PASSWORD_ENV,
    ("influxdb", "token"): INFLUXDB_TOKEN_ENV,
    ("grafana", "token"): GRAFANA_TOKEN_ENV,
    ("nbiot", "ctwing_token"): "URBANSENSE_CTWING_TOKEN",
    ("nbiot", "onenet_token"): "URBANSENSE_ONENET_TOKEN",
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and key(s)."""


_Section = Section


class DatabaseConfig(_Section):
    url: SecretUrl = Field(
        SecretUrl(""), description=(
            "shared state in PostgreSQL: postgresql://user:password@host:5432/db (or URBANSENSE_DATABASE_URL; "
            "the password never shows). Empty = SQLite files as before (registry.path, alerts.db_path, "
            "pipeline.dead_letter_path), one machine"))
    migrate_on_start: bool = Field(True, description=(
        "apply pending schema migrations at start; false = refuse to start while the schema is behind "
        "(then run `urbansense db migrate`)"))

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, v: SecretUrl) -> SecretUrl:
        url = v.get_secret_value().strip()
        if url and not is_postgres_url(url):
            raise ValueError(f"expected a postgresql://user:password@host:5432/db URL or empty (SQLite files), "
                             f"got {redact_url(url)!r}")
        if url and (problem := bare_at_problem(url)):
            raise ValueError(problem)
        return v

    @property
    def shared(self) -> bool:
        """True when the shared state lives in PostgreSQL."""
        return bool(self.url.get_secret_value().strip())


class RegistryConfig(_Section):
    path: str = Field("var/registry.sqlite", description=("the SQLite device registry shared with `urbansense "
                                                          "device` (unused when [database] url is set)"))
    reload_interval_s: float = Field(2.0, gt=0, description=("how often the service picks up registry changes, "
                                                             "seconds"))


class PipelineConfig(_Section):
    queue_size: int = Field(20_000, ge=1, description=("uplinks buffered in memory before the collectors stop "
                                                       "reading (backpressure)"))
    chunk_size: int = Field(200, ge=1, le=10_000, description=(
        "uplinks the pipeline takes at once; under a backlog each chunk is one turn of the event loop, "
        "which alert delivery and the desk console share"))
    dead_letter_path: str = Field("var/deadletter.sqlite", description=("refused messages (bad envelope, unknown "
                                                                        "device, bad payload); unused when "
                                                                        "[database] url is set"))
    log_every_s: float = Field(60.0, ge=0, description="log one device's failure at most once per this many seconds")
    dead_letter_max_bytes: int = Field(256 << 20, ge=0, description=("bound of the dead-letter store on disk "
                                                                      "(PostgreSQL: of its rows; oldest pruned "
                                                                      "first, counted); 0 = none"))
    dead_letter_max_age_days: float = Field(30.0, ge=0, description=("dead letters older than this are pruned "
                                                                      "(counted); 0 = kept forever"))
    time_max_future_s: float = Field(120.0, ge=0, description=("a gateway, network-server or device time more than "
                                                               "this ahead of the receive time is not trusted"))
    time_max_past_s: float = Field(7 * 86400.0, ge=0, description=("a live source time more than this (7 days) "
                                                                   "before the receive time is not trusted"))
    history_max_past_s: float = Field(90 * 86400.0, ge=0, description=("history records (stored by the device, "
                                                                       "sent later) older than this are dropped"))
    duplicate_window_s: float = Field(600.0, ge=0, description=("same device + fCnt + payload (or same "
                                                                "deduplication id) within this is one frame; 0 = off"))

    def time_policy(self) -> TimePolicy:
        """The configured `core.timepolicy.TimePolicy`."""
        return TimePolicy(self.time_max_future_s, self.time_max_past_s, self.history_max_past_s)


class MetricsConfig(_Section):
    enabled: bool = Field(True, description="serve /metrics, /healthz and /readyz")
    host: Literal["127.0.0.1", "localhost", "::1"] = Field("127.0.0.1", description=("loopback only: 127.0.0.1, "
                                                                                     "localhost or ::1"))
    port: int = Field(9464, ge=0, le=65535, description="metrics HTTP port (0 = any free port)")
    token: SecretStr = Field(SecretStr(""), description=("bearer token /metrics requires (prefer "
                                                         "URBANSENSE_METRICS_TOKEN); \"\" = open"))


class LoggingConfig(_Section):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = Field(
        "INFO", description="TRACE, DEBUG, INFO, SUCCESS, WARNING or ERROR")


class RulesConfig(_Section):
    presets: bool = Field(True, description=("load the shipped presets (rules/presets/: GB 3096 noise, GB 3095 "
                                             "dust, waterlogging...)"))
    files: list[str] = Field(default_factory=list, description=("the city's own rule files, applied after the "
                                                                "presets (same id replaces)"))
    timezone: str = Field("Asia/Shanghai", description=("local time for day/night schedules (GB 3096: day "
                                                        "06:00-22:00)"))
    silent_factor: float = Field(3.0, gt=1, description=("a device is silent after its expected report interval x "
                                                         "this factor"))
    tick_interval_s: float = Field(5.0, gt=0, description=("how often time-based transitions (for, keep_firing_for, "
                                                           "no data) are checked"))
    warm_up: bool = Field(True, description="on start, replay recent history from InfluxDB into the rule windows")


class SpoolConfig(_Section):
    enabled: bool = Field(True, description=("while InfluxDB is down, slow or overloaded, batches go to an fsync'd "
                                             "disk spool"))
    path: str = Field("var/spool", description="spool folder (append-only segment files, replayed on start)")
    max_bytes: int = Field(1 << 30, ge=1, description=("spool bound (1 GiB); when full, messages are no longer "
                                                       "acknowledged and wait at the broker"))
    segment_bytes: int = Field(64 << 20, ge=1, description=("a new segment file starts at this size (64 MiB); "
                                                            "drained segments are deleted"))
    after_failures: int = Field(1, ge=1, description="failed write attempts before a batch goes to the spool")
    probe_max_s: float = Field(5.0, gt=0, description=("longest pause between InfluxDB probes while the spool holds "
                                                       "data, seconds"))
    drain_bytes: int = Field(1 << 20, ge=1, description=("line protocol per drain write, bytes (drain writes "
                                                         "alternate with live ones)"))


class ProvisioningConfig(_Section):
    bbox: list[float] = Field(default_factory=list,
                              description=("city bounding box [min_lon, min_lat, max_lon, max_lat] devices must lie "
                                           "in; [] = none"))

    @field_validator("bbox")
    @classmethod
    def _bbox_shape(cls, v: list[float]) -> list[float]:
        if not v:
            return v
        if len(v) != 4:
            raise ValueError("expected [] or [min_lon, min_lat, max_lon, max_lat]")
        min_lon, min_lat, max_lon, max_lat = v
        if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
            raise ValueError("expected -180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90")
        return v


class DeskConfig(_Section):
    enabled: bool = Field(False, description="serve the emergency desk console (a web page) from the service")
    host: Literal["127.0.0.1", "localhost", "::1"] = Field(
        "127.0.0.1", description="loopback address; put a TLS reverse proxy in front to reach it from elsewhere")
    port: int = Field(8090, ge=0, le=65535, description="console port (0 = any free port)")
    cert_file: str = Field("", description="PEM certificate (chain): serve the console over HTTPS (TLS 1.2+); "
                           "empty = plain HTTP on loopback")
    key_file: str = Field("", description="PEM private key of cert_file (empty: the key is in cert_file)")
    users: dict[str, str] = Field(
        default_factory=dict,
        description="user name → argon2 password hash (`urbansense desk hash-password` prints one)")
    session_ttl_s: float = Field(8 * 3600.0, gt=0, description="a login lasts this long, then the user logs in again")
    tile_url: str = Field("", description="map tile URL template ({z}/{x}/{y}; {s}. may start the host) of the "
                          "city's map service, the one image source the page allows besides itself; "
                          "empty = gauges on a plain background (works offline)")
    tile_attribution: str = Field("", description="attribution shown under the tiles")
    recent_notifications: int = Field(30, ge=1, le=500, description="notifications listed on the page")
    login_max_failures: int = Field(
        5, ge=1, description="failed logins for one user name within login_window_s before that name is locked")
    login_max_failures_per_address: int = Field(
        20, ge=1, description="failed logins from one address (any user names) within login_window_s before that "
        "address is locked; behind a reverse proxy every user shares its address, so keep this above "
        "login_max_failures")
    trust_forwarded_for: bool = Field(
        False, description="the console sits behind a reverse proxy on this machine: take a client's address "
        "(login limits, audit) from the last X-Forwarded-For entry, which the proxy adds, on requests from "
        "loopback; off = the connection's address")
    login_window_s: float = Field(300.0, gt=0, description="seconds over which failed logins are counted")
    login_lockout_s: float = Field(
        900.0, gt=0, description="seconds a locked user name or address is refused (HTTP 429 with Retry-After) "
        "without its password being checked")

    @field_validator("users")
    @classmethod
    def _hashes(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [name for name, h in v.items() if not h.startswith("$argon2")]
        if bad:
            raise ValueError(f"users {', '.join(bad)}: expected an argon2 hash ($argon2id$…) from "
                             "`urbansense desk hash-password`, never a plain password")
        return v

    @field_validator("tile_url")
    @classmethod
    def _tile_url(cls, v: str) -> str:
        if v:
            tile_origin(v)
        return v

    def tile_source(self) -> str:
        """The tile server's origin for the page's Content-Security-Policy `img-src` ("" without tiles)."""
        return tile_origin(self.tile_url) if self.tile_url else ""


def tile_origin(url: str) -> str:
    """`https://{s}.tile.example.org/{z}/{x}/{y}.png` → `https://*.tile.example.org`: the origin the map's
    tiles come from, as a CSP source. ValueError for anything but an http(s) URL whose host is plain
    (a `{s}.` subdomain placeholder at its start is the one allowed)."""
    parts = urlsplit(url)
    host = parts.netloc
    if host.startswith("{s}."):
        host = "*." + host[4:]
    if parts.scheme not in ("http", "https") or not host or any(c in host for c in "{}@ ;,'\""):
        raise ValueError("expected an http(s) URL template with a plain host, e.g. "
                         "https://tiles.city.gov.cn/{z}/{x}/{y}.png ({s}. may start the host)")
    return f"{parts.scheme}://{host}"


class BaseConfig(_Section):
    """The sections of the service itself; `Config` adds those of the collector plug-ins."""

    database: DatabaseConfig = DatabaseConfig()
    decoders: DecodersConfig = DecodersConfig()
    influxdb: InfluxConfig = InfluxConfig()
    spool: SpoolConfig = SpoolConfig()
    registry: RegistryConfig = RegistryConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()
    pipeline: PipelineConfig = PipelineConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    rules: RulesConfig = RulesConfig()
    quality: QualityConfig = QualityConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    alerts: AlertsConfig = AlertsConfig()
    desk: DeskConfig = DeskConfig()
    cluster: ClusterConfig = ClusterConfig()

    base_dir: Path = Field(Path("."), exclude=True, description="folder relative paths resolve against")

    def path(self, value: str) -> Path:
        """A configured path, resolved against the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    def alerts_database(self) -> str | Path:
        """Where the alert store lives: the [database] PostgreSQL URL, else the SQLite file `alerts.db_path`."""
        return self.database.url.get_secret_value().strip() or self.path(self.alerts.db_path)

    def registry_database(self) -> str | Path:
        """Where the device registry lives: the [database] PostgreSQL URL, else the SQLite file `registry.path`."""
        return self.database.url.get_secret_value().strip() or self.path(self.registry.path)

    def dead_letter_database(self) -> str | Path:
        """Where the dead letters live: the [database] PostgreSQL URL, else the SQLite file
        `pipeline.dead_letter_path`."""
        return self.database.url.get_secret_value().strip() or self.path(self.pipeline.dead_letter_path)

    def leader_database(self) -> str | Path:
        """Where a cluster leader keeps its warm-up watermark (`service.progress`): the [database] PostgreSQL
        URL, else the SQLite file `leader.sqlite` beside the alert store."""
        return self.database.url.get_secret_value().strip() or self.path(self.alerts.db_path).parent / "leader.sqlite"

    def mqtt_tls(self) -> ssl.SSLContext | None:
        """The broker connection's TLS context (collector, `device watch`, simulator, replay), None without TLS."""
        mqtt: MqttConfig = getattr(self, "mqtt")  # noqa: B009 - a section of the LoRaWAN plug-in
        return mqtt.tls_context(self.path)

    def influx_verify(self) -> ssl.SSLContext | bool:
        """What httpx verifies InfluxDB's certificate with: the configured CA file, else the system's CAs."""
        ca = self.influxdb.ca_file
        return client_context(ca_file=self.path(ca), setting="influxdb") if ca else True


def config_model(plugins: Sequence[CollectorPlugin] | None = None) -> type[BaseConfig]:
    """`BaseConfig` plus one section per section a collector plug-in declares (`collectors/registry.py`)."""
    sections: dict[str, Any] = {}
    for plugin in registered_plugins() if plugins is None else plugins:
        for name, model in plugin.sections.items():
            if name in BaseConfig.model_fields or name in sections:
                raise TypeError(f"collector plug-in {plugin.name}: section [{name}] is already taken")
            sections[name] = (model, model())
    return create_model("Config", __base__=BaseConfig, **sections)


Config: Any = config_model()
"""The whole configuration: the service's sections and those of the registered collectors."""

def parse_config(data: dict[str, Any], *, source: str = "config", base_dir: Path = Path("."),
                 environ: dict[str, str] | None = None) -> Any:
    """Validate a parsed TOML document; secrets from `environ` override the file's."""
    env = os.environ if environ is None else environ
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, key), var in SECRET_ENV.items():
        if env.get(var):
            sect = merged.setdefault(section, {})
            if isinstance(sect, dict):
                sect[key] = env[var]
    if "base_dir" in merged:
        raise ConfigError(f"{source}: base_dir: unknown key (check its spelling; see config.toml for the keys)")
    model = config_model()
    try:
        cfg = model.model_validate({**merged, "base_dir": base_dir})
    except ValidationError as exc:
        problems = "\n  ".join(describe_errors(exc, model=model))
        raise ConfigError(f"{source}: invalid configuration:\n  {problems}") from None
    try:  # TLS files are checked at load, so that check-config reports them
        cfg.mqtt_tls()
        cfg.influx_verify()
    except TlsError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def load_config(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> Any:
    """Read and validate the config from `path`, else $URBANSENSE_CONFIG, else ./config.toml."""
    env = os.environ if environ is None else environ
    p = Path(path or env.get(CONFIG_ENV) or DEFAULT_PATH)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found (use --config or {CONFIG_ENV})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(p), base_dir=p.resolve().parent, environ=env)
