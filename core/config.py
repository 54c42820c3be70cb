"""The base of every config section: unknown keys refused, types strict, values frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One `[section]` of config.toml; each package that is configured owns its section's model."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
