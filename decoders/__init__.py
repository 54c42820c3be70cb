"""Bytes to physical quantities: device codecs, their registry, and the kind-level derivations.

    get_model("milesight-em500-udl").codec.decode(payload, port) -> Decoded
    derive(kind, decoded.fields, install, model) -> Decoded   (adds depth_mm / fill_pct)
    decode_uplink(device, uplink) -> DecodedUplink            (both, plus the health split: the whole chain)
"""

from decoders.codec import Codec, Decoded, DecodeError, FieldValue, HistoryRecord
from decoders.derive import derive
from decoders.errors import EncodeError, EncodeUnsupported
from decoders.fields import canonical_only, health_fields
from decoders.model_info import KINDS, ModelInfo
from decoders.ranges import FieldRange
from decoders.registry import UnknownModel, all_models, get_model
from decoders.uplink import DecodedUplink, decode_uplink

__all__ = [
    "KINDS",
    "Codec",
    "DecodeError",
    "Decoded",
    "DecodedUplink",
    "EncodeError",
    "EncodeUnsupported",
    "FieldRange",
    "FieldValue",
    "HistoryRecord",
    "ModelInfo",
    "UnknownModel",
    "all_models",
    "canonical_only",
    "decode_uplink",
    "derive",
    "get_model",
    "health_fields",
]
