"""The LoRaWAN plug-in: `[mqtt]` + `[lorawan]`, a persistent MQTT 5 subscription, envelopes parsed in the pipeline."""

from __future__ import annotations

from collectors.lorawan import parse
from collectors.lorawan.collector import SOURCE, LorawanCollector
from collectors.lorawan.config import LorawanConfig, MqttConfig
from collectors.lorawan.metrics import LorawanMetrics
from collectors.mqtt import shared_filter
from collectors.plugin import CollectorContext, CollectorPlugin
from core.secrets import reveal


def build(ctx: CollectorContext) -> LorawanCollector | None:
    """The collector for the enabled network servers' topics; None when none is enabled."""
    lw, mc = ctx.section("lorawan", LorawanConfig), ctx.section("mqtt", MqttConfig)
    topics = [t for on, t in ((lw.chirpstack, lw.chirpstack_topic), (lw.chirpstack_v3, lw.chirpstack_v3_topic),
                              (lw.tts, lw.tts_topic)) if on]
    if not topics:
        return None
    if ctx.share_group:  # a cluster's ingest processes share each subscription (MQTT 5), each on its own session
        topics = [shared_filter(ctx.share_group, t) for t in topics]
    client_id = f"{mc.client_id}-{ctx.ingest_id}" if ctx.ingest_id else mc.client_id
    return LorawanCollector(topics=topics, host=mc.host, port=mc.port, client_id=client_id,
                            username=mc.username or None, password=reveal(mc.password) or None,
                            receive_maximum=mc.receive_maximum, session_expiry_s=mc.session_expiry_s,
                            keepalive=mc.keepalive_s, reconnect_min_s=mc.reconnect_min_s,
                            reconnect_max_s=mc.reconnect_max_s, tls=mc.tls_context(ctx.path), retiring=ctx.retiring)


PLUGIN = CollectorPlugin(name="lorawan", sections={"mqtt": MqttConfig, "lorawan": LorawanConfig}, build=build,
                         parsers={SOURCE: parse}, metrics=LorawanMetrics)
