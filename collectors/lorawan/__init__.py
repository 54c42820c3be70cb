"""LoRaWAN network-server envelopes over MQTT: a registry of formats and a dispatcher by topic.

ChirpStack v4 and v3 share the `application/` prefix; `decoded.parse_chirpstack_any` tells
them apart. Both ChirpStack and TTS parsers attach the network server's decoded object.

Each format is `bytes → Uplink` with no network in it; `collectors.mqtt` only moves bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from collectors.lorawan import chirpstack, tts
from collectors.lorawan.chirpstack import build_chirpstack_event, parse_chirpstack
from collectors.lorawan.chirpstack_v3 import build_chirpstack_v3_uplink, parse_chirpstack_v3
from collectors.lorawan.decoded import parse_chirpstack_any, parse_tts_decoded
from collectors.lorawan.tts import build_tts_uplink, parse_tts
from core.uplink import EnvelopeError, Uplink

Parser = Callable[[str, bytes, int], Uplink]


class EnvelopeFormat(NamedTuple):
    """One network server's MQTT integration: the topic filter to subscribe and its parser."""

    default_topic: str
    parse: Parser
    topic_prefix: str


FORMATS: dict[str, EnvelopeFormat] = {
    "chirpstack": EnvelopeFormat(chirpstack.DEFAULT_TOPIC, parse_chirpstack_any, "application/"),
    "tts": EnvelopeFormat(tts.DEFAULT_TOPIC, parse_tts_decoded, "v3/"),
}


def parser_for_topic(topic: str) -> Parser:
    """The parser whose topic prefix the topic starts with; `EnvelopeError("unknown_topic")` otherwise."""
    for fmt in FORMATS.values():
        if topic.startswith(fmt.topic_prefix):
            return fmt.parse
    raise EnvelopeError("unknown_topic", f"no LoRaWAN envelope format for topic {topic[:120]!r}")


def parse(topic: str, payload: bytes, received_ns: int) -> Uplink:
    """Parse a message from any registered network server, chosen by its topic's prefix."""
    return parser_for_topic(topic)(topic, payload, received_ns)


__all__ = ["FORMATS", "EnvelopeFormat", "build_chirpstack_event", "build_chirpstack_v3_uplink", "build_tts_uplink",
           "parse", "parse_chirpstack", "parse_chirpstack_v3", "parse_tts", "parser_for_topic"]
