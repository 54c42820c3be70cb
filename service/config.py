"""Configuration: `config.toml` read, validated and resolved into typed sections.

An unknown key, a wrong type or a missing value stops start-up with a `ConfigError`
naming the key and what is expected. Secrets may come from the environment instead
of the file (see `SECRET_ENV`).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from alerts.config import AlertsConfig
from core.config import Section
from core.secrets import SecretStr
from core.tls import TlsError, client_context
from core.validation import describe_error
from decoders.config import DecodersConfig
from grafana.config import GRAFANA_TOKEN_ENV, GrafanaConfig
from storage.config import INFLUXDB_PASSWORD_ENV, INFLUXDB_TOKEN_ENV, InfluxConfig

DEFAULT_PATH = "config.toml"
CONFIG_ENV = "URBANSENSE_CONFIG"
SECRET_ENV = {
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


class MqttConfig(_Section):
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker TCP port")
    client_id: str = Field("urbansense-ingest", min_length=1,
                           description="fixed client id: the broker keeps this session's queue")
    username: str = Field("", description="broker user name, empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="broker password (or env URBANSENSE_MQTT_PASSWORD)")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive in seconds")
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0,
                                  description="MQTT 5 session expiry: how long the broker keeps our queue")
    receive_maximum: int = Field(10_000, ge=1, le=65535,
                                 description="MQTT 5 Receive Maximum: unacknowledged messages in flight")
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay")
    reconnect_max_s: float = Field(30.0, gt=0, description="reconnect delay cap")
    tls: bool = Field(False, description="connect over TLS 1.2+ (certificate and host name always verified)")
    ca_file: str = Field("", description="PEM CA certificate(s) the broker's certificate must chain to; "
                                         "empty = the system's CAs")
    cert_file: str = Field("", description="PEM client certificate for mutual TLS; empty = none")
    key_file: str = Field("", description="PEM private key of cert_file")


class LorawanConfig(_Section):
    chirpstack: bool = Field(True, description="subscribe to ChirpStack v4 uplink events")
    chirpstack_topic: str = Field("application/+/device/+/event/up", description="ChirpStack topic filter")
    tts: bool = Field(False, description="subscribe to The Things Stack v3 uplinks")
    tts_topic: str = Field("v3/+/devices/+/up", description="The Things Stack topic filter")
    chirpstack_v3: bool = Field(False, description="also subscribe to ChirpStack v3's older /rx uplink topic")
    chirpstack_v3_topic: str = Field("application/+/device/+/rx", description="ChirpStack v3 /rx topic filter")


class RegistryConfig(_Section):
    path: str = Field("var/registry.sqlite", description="SQLite device registry")
    reload_interval_s: float = Field(2.0, gt=0, description="how often the service looks for registry changes")


class PipelineConfig(_Section):
    queue_size: int = Field(20_000, ge=1, description="uplinks buffered before backpressure")
    dead_letter_path: str = Field("var/deadletter.sqlite", description="store of refused messages")
    log_every_s: float = Field(60.0, ge=0, description="log a failure at most once per device per interval")


class MetricsConfig(_Section):
    enabled: bool = Field(True, description="serve Prometheus metrics")
    host: Literal["127.0.0.1", "localhost", "::1"] = Field("127.0.0.1", description="loopback address")
    port: int = Field(9464, ge=0, le=65535, description="metrics port (0 = any free port)")
    token: SecretStr = Field(SecretStr(""), description="bearer token /metrics requires (or env "
                             "URBANSENSE_METRICS_TOKEN); empty = open. /healthz and /readyz stay open")


class LoggingConfig(_Section):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = Field(
        "INFO", description="loguru level")


class RulesConfig(_Section):
    presets: bool = Field(True, description="load the shipped presets in rules/presets/")
    files: list[str] = Field(default_factory=list, description="the city's own rule files, applied after the presets")
    timezone: str = Field("Asia/Shanghai", description="local time of day/night schedules")
    silent_factor: float = Field(3.0, gt=1, description="a device is silent after expected interval x this")
    tick_interval_s: float = Field(5.0, gt=0, description="how often time-based transitions are checked")
    warm_up: bool = Field(True, description="replay recent history from InfluxDB into rule windows on start")


class SpoolConfig(_Section):
    enabled: bool = Field(True, description="spool batches to disk while InfluxDB cannot take them")
    path: str = Field("var/spool", description="spool folder (segment files)")
    max_bytes: int = Field(1 << 30, ge=1, description="spool bound; when full, messages are no longer acknowledged")
    segment_bytes: int = Field(64 << 20, ge=1, description="size at which a new segment file is started")
    after_failures: int = Field(1, ge=1, description="failed attempts before a batch goes to the spool")
    probe_max_s: float = Field(5.0, gt=0, description="longest pause between InfluxDB probes while spooling")
    drain_bytes: int = Field(1 << 20, ge=1, description="bytes of spooled line protocol per drain write")


# Sections added by collectors of other transports go here, one line each in `Config`.


class NbiotConfig(_Section):
    udp: bool = Field(False, description="listen for NB-IoT frames on UDP")
    udp_host: str = Field("127.0.0.1", description="UDP listen address (0.0.0.0 to take devices' datagrams)")
    udp_port: int = Field(8600, ge=0, le=65535, description="UDP listen port (0 = any free port)")
    udp_buffer: int = Field(50_000, ge=1, description="datagrams waiting for the pipeline before new ones are dropped")
    coap: bool = Field(False, description="serve a CoAP endpoint for LwM2M-style POSTs of frames")
    coap_host: str = Field("127.0.0.1", description="CoAP listen address")
    coap_port: int = Field(5683, ge=1, le=65535, description="CoAP UDP port")
    coap_path: str = Field("up", min_length=1, description="CoAP resource path frames are POSTed to")
    push: bool = Field(False, description="serve the HTTP receiver for CTWing/AEP and OneNET pushes")
    push_host: str = Field("127.0.0.1", description="HTTP listen address (put a TLS reverse proxy in front)")
    push_port: int = Field(8087, ge=0, le=65535, description="HTTP port (0 = any free port)")
    ctwing_token: SecretStr = Field(SecretStr(""),
                                    description="path token of /push/ctwing/<token> (or env URBANSENSE_CTWING_TOKEN)")
    onenet_token: SecretStr = Field(SecretStr(""),
                                    description="OneNET push token for signatures (or env URBANSENSE_ONENET_TOKEN)")
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="largest push request body accepted")
    nonce_window_s: float = Field(86400.0, gt=0, description="a OneNET nonce seen again within this is a replay")
    max_push_age_s: float = Field(0.0, ge=0, description="refuse pushes whose own time (OneNET at, CTWing "
                                  "timestamp) is further than this from now; 0 = off (devices may send late)")
    ctwing_sources: list[str] = Field(default_factory=list, description="addresses or networks CTWing pushes "
                                      "may come from (e.g. [\"1.2.3.0/24\"]); [] = any")

    @field_validator("ctwing_sources")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network (e.g. 1.2.3.4 or 1.2.3.0/24)") from None
        return v


class ModbusConfig(_Section):
    enabled: bool = Field(False, description="poll the registry's Modbus devices")
    min_interval_s: float = Field(1.0, gt=0, description="shortest poll interval; each device is polled every "
                                  "expected_interval_s (registry)")
    timeout_s: float = Field(3.0, gt=0, description="time allowed for one read")
    backoff_max_s: float = Field(300.0, gt=0, description="longest pause between polls of an unreachable device")
    rtu_ports: list[int] = Field(default_factory=list,
                                 description="TCP ports of serial gateways that pass RTU frames through")


class ProvisioningConfig(_Section):
    bbox: list[float] = Field(default_factory=list,
                              description="city bounding box [min_lon, min_lat, max_lon, max_lat]; [] for none")

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


class Config(_Section):
    mqtt: MqttConfig = MqttConfig()
    lorawan: LorawanConfig = LorawanConfig()
    decoders: DecodersConfig = DecodersConfig()
    influxdb: InfluxConfig = InfluxConfig()
    registry: RegistryConfig = RegistryConfig()
    pipeline: PipelineConfig = PipelineConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    rules: RulesConfig = RulesConfig()
    nbiot: NbiotConfig = NbiotConfig()
    modbus: ModbusConfig = ModbusConfig()
    alerts: AlertsConfig = AlertsConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    spool: SpoolConfig = SpoolConfig()
    provisioning: ProvisioningConfig = ProvisioningConfig()

    base_dir: Path = Field(Path("."), exclude=True, description="folder relative paths resolve against")

    def path(self, value: str) -> Path:
        """A configured path, resolved against the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p

    def mqtt_tls(self) -> ssl.SSLContext | None:
        """The broker connection's TLS context (collector, `device watch`, simulator, replay), None without TLS."""
        m = self.mqtt
        if not m.tls:
            return None
        return client_context(ca_file=self.path(m.ca_file) if m.ca_file else None,
                              cert_file=self.path(m.cert_file) if m.cert_file else None,
                              key_file=self.path(m.key_file) if m.key_file else None, setting="mqtt")

    def influx_verify(self) -> ssl.SSLContext | bool:
        """What httpx verifies InfluxDB's certificate with: the configured CA file, else the system's CAs."""
        ca = self.influxdb.ca_file
        return client_context(ca_file=self.path(ca), setting="influxdb") if ca else True


def parse_config(data: dict[str, Any], *, source: str = "config", base_dir: Path = Path("."),
                 environ: dict[str, str] | None = None) -> Config:
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
    try:
        cfg = Config.model_validate({**merged, "base_dir": base_dir})
    except ValidationError as exc:
        problems = "\n  ".join(describe_error(e) for e in exc.errors())
        raise ConfigError(f"{source}: invalid configuration:\n  {problems}") from None
    try:  # TLS files are checked at load, so that check-config reports them
        cfg.mqtt_tls()
        cfg.influx_verify()
    except TlsError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def load_config(path: str | Path | None = None, *, environ: dict[str, str] | None = None) -> Config:
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
