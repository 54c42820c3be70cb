"""`[quality]` in config.toml: the judge on or off, and its settings per kind and per model."""

from __future__ import annotations

from pydantic import Field, field_validator

from core.config import Section
from core.kinds import KIND_NAMES
from decoders.registry import all_models


class QualityChecks(Section):
    """Overrides of one kind's or model's quality checks (decoders/quality/profiles.py has the defaults)."""

    field: str | None = Field(None, description="the value spike and stuck watch")
    max_rate_per_min: float | None = Field(None, ge=0, description="spike: faster change per minute (0: off)")
    min_jump: float | None = Field(None, ge=0, description="spike: smallest change that can be one")
    stuck_after_s: float | None = Field(None, ge=0, description="stuck: same value for longer (0: off)")
    zero_fields: list[str] | None = Field(None, description="fields for which exactly 0 is suspect")


class QualityConfig(Section):
    enabled: bool = Field(True, description=("judge every reading (quality good/suspect/bad, quality_check, "
                                             "online_slot); never drops one"))
    kinds: dict[str, QualityChecks] = Field(default_factory=dict, description=(
        "overrides per kind (defaults: decoders/quality/profiles.py), e.g. noise = { stuck_after_s = 7200 }"))
    models: dict[str, QualityChecks] = Field(default_factory=dict, description=(
        'overrides per model, e.g. "dragino-ldds75" = { max_rate_per_min = 100, min_jump = 300 }'))

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, v: dict[str, QualityChecks]) -> dict[str, QualityChecks]:
        unknown = sorted(set(v) - set(KIND_NAMES))
        if unknown:
            raise ValueError(f"unknown kind {unknown[0]!r}; expected one of {', '.join(KIND_NAMES)}")
        return v

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: dict[str, QualityChecks]) -> dict[str, QualityChecks]:
        known = {m.model for m in all_models()}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown model {unknown[0]!r}; see `urbansense decoders list`")
        return v

    def overrides(self, which: str) -> dict[str, dict[str, object]]:
        """`kinds` or `models` as the plain dicts `decoders.quality.Judge` takes."""
        return {k: c.model_dump(exclude_none=True) for k, c in getattr(self, which).items()}
