"""The limits drawn on panels, read from the shipped rule presets so a panel and its rule never disagree.

A city that edits a preset's threshold sees the new line on the dashboards at the next
`urbansense grafana export|push`.
"""

from __future__ import annotations

from functools import lru_cache

from rules.loader import load_rules
from rules.model import ANY, Rule


@lru_cache(maxsize=1)
def _presets() -> dict[str, Rule]:
    return {r.id: r for r in load_rules([], include_presets=True)}


def preset(rule_id: str) -> Rule:
    """A shipped preset rule by id (KeyError names the id when a preset was renamed)."""
    try:
        return _presets()[rule_id]
    except KeyError:
        raise KeyError(f"dashboards draw the limits of preset rule {rule_id!r}, which no preset defines") from None


def level_thresholds(rule_id: str) -> list[float]:
    """The constant threshold of each level of a preset, mildest first (e.g. water.depth → [150, 270])."""
    return [lv.threshold.resolve(ANY, ANY) or 0.0 for lv in preset(rule_id).levels]


def zone_limits(rule_id: str, day: str = "day", night: str = "night") -> dict[str, tuple[float, float]]:
    """Zone class → (day limit, night limit) of a scheduled zone-class preset (noise.zone_limit: GB 3096 table 1)."""
    values = preset(rule_id).levels[0].threshold.values
    zones = sorted({z for _, z in values if z != ANY})
    return {z: (values[(day, z)], values[(night, z)]) for z in zones}
