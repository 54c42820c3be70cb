"""The decoders' error tree, beside `DecodeError` (decoders/codec.py).

    ValueError
    ├── DecodeError        payload this codec cannot read: dead-letter it, never retry (codec.py)
    └── EncodeError        fields this codec cannot turn into a payload (simulator / tests)
        └── EncodeUnsupported   the codec has no encoder at all (JavaScript models)
    KeyError
    └── UnknownModel       no model by that id; the message lists close matches (registry.py)
"""

from __future__ import annotations


class EncodeError(ValueError):
    """Fields that cannot become a payload of this model: unknown field, value out of the format's span."""


class EncodeUnsupported(EncodeError):
    """The model decodes only (a JavaScript codec): see `ModelInfo.can_encode`."""
