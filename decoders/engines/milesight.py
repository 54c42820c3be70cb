"""What all Milesight models share: the channel-0xFF attributes, downlink echoes, battery, history.

Layout source: Milesight-IoT/SensorDecoders (per-model README payload tables) and
TheThingsNetwork/lorawan-devices vendor/milesight-iot/*.js. Values are little-endian.
"""

from __future__ import annotations

from collections.abc import Mapping

from decoders.engines.tlv import EncodeHook, Hook, Item, TlvCodec, Value, item, merge, skip

PORT = 85

ATTRIBUTES: Mapping[int, int] = {0x01: 1, 0x09: 2, 0x0A: 2, 0xFF: 2, 0x16: 8, 0x0F: 1, 0xFE: 1, 0x0B: 1}
"""Channel 0xFF attributes sent on join: protocol, hardware, firmware, TSL version, serial, class…"""

COMMON_RESPONSES: Mapping[int, int] = {0x02: 2, 0x03: 2, 0x06: 9, 0x10: 1}
"""Downlink echoes (channel 0xFE/0xFF) every model here shares: intervals, alarm config, reboot."""

EM500_RESPONSES: Mapping[int, int] = {
    0x11: 4, 0x17: 2, 0x1C: 2, 0x27: 1, 0x28: 1, 0x35: 8, 0x3B: 1, 0x4A: 1, 0x68: 1, 0x69: 1,
    0x6A: 3, 0x84: 1, 0x96: 8, 0xF1: 4, 0xF2: 2, 0xF5: 1,
}

BATTERY = item(0x01, 0x75, 1, Value("battery_pct", "B"), name="battery")
HISTORY_6 = item(0x20, 0xCE, 6, name="history",
                 note="history record (timestamp + value) skipped: only live readings are reported")


def history(size: int, *values: Value) -> Item:
    """Channel 0x20 type 0xCE: a stored record (Unix time, uint32 LE, then the model's values)."""
    return item(0x20, 0xCE, size, Value("_time", "I", 0, kind=int), *values, name="history", history=True)


def responses(sizes: Mapping[int, int]) -> tuple[Item, ...]:
    """Sized downlink echoes on channels 0xFE and 0xFF."""
    return skip(0xFE, sizes, "downlink response") + skip(0xFF, sizes, "downlink response")


def codec(model: str, kind: str, *items: Item, extra_responses: Mapping[int, int] | None = None,
          after_decode: Hook | None = None, before_encode: EncodeHook | None = None,
          extra_fields: Mapping[str, type] | None = None) -> TlvCodec:
    """A Milesight codec: the model's items first (encode prefers the earlier of two), then the shared ones."""
    table = merge(items, (BATTERY,), skip(0xFF, ATTRIBUTES, "attribute"),
                  responses({**COMMON_RESPONSES, **(extra_responses or {})}))
    return TlvCodec(model, kind, table, port=PORT, after_decode=after_decode, before_encode=before_encode,
                    extra_fields=dict(extra_fields or {}))
