"""The `[mqtt]` broker connection and the `[lorawan]` network-server subscriptions of config.toml."""

from __future__ import annotations

from pydantic import Field

from core.config import Section


class MqttConfig(Section):
    """The broker the network servers publish to (also what `simulate`, `device watch` and `deadletter replay` use)."""


    host: str = Field("127.0.0.1", description="broker host (the network server's integration broker)")
    port: int = Field(1883, ge=1, le=65535, description="broker TCP port")
    client_id: str = Field("urbansense-ingest", min_length=1,
                           description="fixed id: the broker keeps this session's queue while the service is away")
    username: str = Field("", description="broker user, empty for anonymous")
    password: str = Field("", description="broker password (prefer URBANSENSE_MQTT_PASSWORD)")
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive, seconds")
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0,
                                  description="MQTT 5 session expiry: the broker keeps our queue this long (7 days)")
    receive_maximum: int = Field(10_000, ge=1, le=65535,
                                 description=("MQTT 5 Receive Maximum: unacknowledged messages the broker may send "
                                              "at once"))
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay after a lost connection, seconds")
    reconnect_max_s: float = Field(30.0, gt=0, description="reconnect delay cap, seconds (doubles up to this)")


class LorawanConfig(Section):
    """Which network servers' uplink topics the LoRaWAN collector subscribes to."""


    chirpstack: bool = Field(True, description="subscribe to ChirpStack v4 uplink events (JSON marshaler)")
    chirpstack_topic: str = Field("application/+/device/+/event/up", description="ChirpStack v4 uplink topic filter")
    tts: bool = Field(False, description="subscribe to The Things Stack v3 uplinks")
    tts_topic: str = Field("v3/+/devices/+/up", description="The Things Stack v3 uplink topic filter")
