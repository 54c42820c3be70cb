"""Bytes to physical quantities: device codecs, their registry, and the kind-level derivations.

    get_model("milesight-em500-udl").codec.decode(payload, port) -> Decoded
    derive(kind, decoded.fields, install, model) -> Decoded   (adds depth_mm / fill_pct)
"""

from decoders.codec import Codec, Decoded, DecodeError, FieldValue, HistoryRecord
from decoders.derive import derive
from decoders.errors import EncodeError, EncodeUnsupported
from decoders.fields import canonical_only, health_fields
from decoders.model_info import KINDS, ModelInfo
from decoders.ranges import FieldRange
from decoders.registry import UnknownModel, all_models, get_model

__all__ = [
    "KINDS",
    "Codec",
    "DecodeError",
    "Decoded",
    "EncodeError",
    "EncodeUnsupported",
    "FieldRange",
    "FieldValue",
    "HistoryRecord",
    "ModelInfo",
    "UnknownModel",
    "all_models",
    "canonical_only",
    "derive",
    "get_model",
    "health_fields",
]
