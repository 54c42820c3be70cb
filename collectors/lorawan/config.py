"""The `[mqtt]` broker connection and the `[lorawan]` network-server subscriptions of config.toml."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from core.config import Section
from core.secrets import SecretStr
from core.tls import client_context


class MqttConfig(Section):
    """The broker the network servers publish to (also what `simulate`, `device watch` and `deadletter replay` use)."""


    host: str = Field("127.0.0.1", description="broker host (the network server's integration broker)")
    port: int = Field(1883, ge=1, le=65535, description="broker TCP port")
    client_id: str = Field("urbansense-ingest", min_length=1,
                           description="fixed id: the broker keeps this session's queue while the service is away")
    username: str = Field("", description="broker user, empty for anonymous")
    password: SecretStr = Field(SecretStr(""), description="broker password (prefer URBANSENSE_MQTT_PASSWORD)")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive, seconds")
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0,
                                  description="MQTT 5 session expiry: the broker keeps our queue this long (7 days)")
    receive_maximum: int = Field(10_000, ge=1, le=65535,
                                 description=("MQTT 5 Receive Maximum: unacknowledged messages the broker may send "
                                              "at once"))
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay after a lost connection, seconds")
    reconnect_max_s: float = Field(30.0, gt=0, description="reconnect delay cap, seconds (doubles up to this)")
    tls: bool = Field(False, description=("MQTT over TLS 1.2+; the broker's certificate and host name are always "
                                          "verified"))
    ca_file: str = Field("", description=("PEM CA certificate(s) the broker's certificate must chain to; \"\" = the "
                                          "system's CAs"))
    cert_file: str = Field("", description="PEM client certificate for mutual TLS; \"\" = none")
    key_file: str = Field("", description="PEM private key of cert_file")

    def tls_context(self, resolve: Callable[[str], Path]) -> ssl.SSLContext | None:
        """The TLS context for the broker (None without TLS); `resolve` makes config-relative paths absolute.
        `TlsError` names the setting when a file is missing or not PEM."""
        if not self.tls:
            return None
        return client_context(ca_file=resolve(self.ca_file) if self.ca_file else None,
                              cert_file=resolve(self.cert_file) if self.cert_file else None,
                              key_file=resolve(self.key_file) if self.key_file else None, setting="mqtt")


class LorawanConfig(Section):
    """Which network servers' uplink topics the LoRaWAN collector subscribes to."""


    chirpstack: bool = Field(True, description="subscribe to ChirpStack v4 uplink events (JSON marshaler)")
    chirpstack_topic: str = Field("application/+/device/+/event/up", description="ChirpStack v4 uplink topic filter")
    tts: bool = Field(False, description="subscribe to The Things Stack v3 uplinks")
    tts_topic: str = Field("v3/+/devices/+/up", description="The Things Stack v3 uplink topic filter")
    chirpstack_v3: bool = Field(False, description=("older ChirpStack v3 releases publish uplinks on .../rx; later "
                                                    "v3 ones use the topic above"))
    chirpstack_v3_topic: str = Field("application/+/device/+/rx", description=("ChirpStack v3 /rx uplink topic "
                                                                               "filter (json or json_v3 marshaler)"))
