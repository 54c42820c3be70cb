"""Nwave NPS310 (surface mount) parking sensor: occupancy in bit 0 of status, heartbeat and start-up frames.

Source: TheThingsNetwork/lorawan-devices vendor/nwave/nps310sm.js.
"""

from __future__ import annotations

from collections.abc import Mapping

from decoders.codec import Decoded, DecodeError, FieldValue
from decoders.errors import EncodeError
from decoders.model_info import ModelInfo
from decoders.ranges import FieldRange

_STATUS_BYTE = {1: (1, 0), 2: (1, 0), 3: (5, 4)}
"""fPort → (frame length, index of the status byte)."""


class NwaveNps310Codec:
    model = "nwave-nps310"
    kind = "parking"
    port = 1
    field_types: Mapping[str, type] = {"occupied": bool}
    fields = tuple(field_types)

    def decode(self, payload: bytes, port: int) -> Decoded:
        if port == 6:
            return Decoded({}, ["fPort 6 (debug) carries no readings"])
        layout = _STATUS_BYTE.get(port)
        if layout is None:
            raise DecodeError(f"nwave-nps310: unexpected fPort {port}; readings come on fPorts 1–3")
        length, index = layout
        if len(payload) != length:
            raise DecodeError(f"nwave-nps310: fPort {port} frame has {len(payload)} byte(s), expected {length}")
        return Decoded({"occupied": bool(payload[index] & 0x01)})

    def encode(self, fields: Mapping[str, FieldValue]) -> tuple[bytes, int]:
        occupied = fields.get("occupied")
        if set(fields) != {"occupied"} or not isinstance(occupied, bool):
            raise EncodeError(f"nwave-nps310: only occupied (a bool) can be encoded, got {dict(fields)!r}")
        return bytes([int(occupied)]), 1


MODEL = ModelInfo(
    model="nwave-nps310", kind="parking", vendor="nwave", title="Nwave NPS310 surface-mount parking sensor",
    source="native", codec=NwaveNps310Codec(), ranges={"occupied": FieldRange(0, 1, 1)},
    reference="TheThingsNetwork/lorawan-devices vendor/nwave/nps310sm.js, nps310sm-codec.yaml",
)
