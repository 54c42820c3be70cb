"""`ModelInfo`: everything the service, simulator and CLI need to know about one device model."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from core.kinds import KIND_NAMES
from decoders.codec import Codec, FieldValue
from decoders.fields import canonical_type
from decoders.ranges import FieldRange

KINDS: tuple[str, ...] = KIND_NAMES
"""The reading kinds a model may have (the table is `core.kinds`)."""


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """One device model: its codec, what it measures and what its kind derivation needs.

    `ranges` are the fields `encode` needs, each with the grid on which the round trip is
    exact (the sensor's rated span). `dead_zone_mm` is the blind zone in front of a distance
    sensor; `mounting` says whether a bin sensor looks down at the contents ("top", the usual)
    or up through the container floor ("bottom", so its distance is the fill height).
    Models compare and hash by identity: the registry holds one of each.
    """

    model: str
    kind: str
    vendor: str
    title: str
    source: Literal["native", "js", "defined"]
    codec: Codec
    ranges: Mapping[str, FieldRange]
    install_params: tuple[str, ...] = ()
    dead_zone_mm: float = 0.0
    reference: str = ""
    can_encode: bool = True
    mounting: Literal["top", "bottom"] = "top"
    origin: str = ""
    """Where the model comes from: empty for the package's own, else its definition file."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ranges", MappingProxyType(dict(self.ranges)))
        object.__setattr__(self, "install_params", tuple(self.install_params))

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field `decode` may report (the codec's own list when it has one)."""
        return tuple(getattr(self.codec, "fields", ()) or self.ranges)

    def sample(self, rng: random.Random) -> dict[str, FieldValue]:
        """Random fields on the `ranges` grid, typed as the schema wants: input for `encode`."""
        out: dict[str, FieldValue] = {}
        for name, r in self.ranges.items():
            value = r.value(rng.randrange(r.count))
            typ = canonical_type(name) or getattr(self.codec, "field_types", {}).get(name, float)
            out[name] = bool(value) if typ is bool else int(value) if typ is int else value
        return out
