"""`DecodersConfig`: the `[decoders]` section of config.toml (the city's own model definition folders)."""

from __future__ import annotations

from pydantic import Field

from core.config import Section


class DecodersConfig(Section):
    paths: list[str] = Field(default_factory=list, description=("folders of the city's own device models (TOML + "
                                                                "optional TS013 .js), see decoders/README.md"))
    reload_interval_s: float = Field(2.0, gt=0, description=("how often the running service looks for changed model "
                                                             "files, seconds"))
