"""The LoRaWAN collector: network-server uplinks over MQTT (ChirpStack v4, The Things Stack v3)."""

from __future__ import annotations

import asyncio

from collectors.mqtt import MqttConsumer, MqttDelivery
from core.uplink import Incoming, Sink

SOURCE = "lorawan"
"""`Incoming.source` of LoRaWAN uplinks: their envelopes are parsed in the pipeline (`collectors.lorawan.parse`)."""


class LorawanCollector:
    """Subscribes with a persistent QoS 1 session; each message is acknowledged only by the pipeline."""

    name = "lorawan"

    def __init__(self, *, topics: list[str], **mqtt: object) -> None:
        self.topics = topics
        self._mqtt = mqtt
        self.consumer: MqttConsumer | None = None

    async def start(self, sink: Sink) -> None:
        def on_message(msg: MqttDelivery) -> None:
            consumer = self.consumer
            assert consumer is not None
            sink.put(Incoming(SOURCE, msg.topic, msg.payload, msg.received_ns, ack=lambda: consumer.ack(msg)))

        self.consumer = MqttConsumer(topics=self.topics, on_message=on_message, **self._mqtt)  # type: ignore[arg-type]
        self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await asyncio.to_thread(self.consumer.stop)

    def ready(self) -> tuple[bool, str]:
        if self.consumer is None or not self.consumer.connected:
            return False, "MQTT broker not connected"
        return True, "MQTT broker connected"
