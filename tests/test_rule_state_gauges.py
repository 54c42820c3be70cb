"""The rule-state gauges of `/metrics` keep being refreshed while the service is behind its readings.

Found in the 1-hour soak: a service more than a minute behind the stream (a broker backlog) pauses its
rule ticks, and the gauges were refreshed only by the ticks, so `urbansense_rule_state_*` read nothing
for the whole hour, just when an operator wants to see what memory the rules hold."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.reading import Reading
from provisioning.registry import Registry
from provisioning.view import RegistryView
from rules.footprint import RuleStateStats
from service import alerting
from service.alerting import RulesAndAlerts
from service.config import parse_config
from tests.test_keep_firing_restart import GAUGE, T0, TAGS


@pytest.mark.asyncio
async def test_rule_state_gauges_are_refreshed_while_a_backlog_replays(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerting, "_STATE_EVERY_S", 0.0)
    cfg = parse_config({"alerts": {"db_path": str(tmp_path / "alerts.sqlite")},
                        "registry": {"path": str(tmp_path / "registry.sqlite")},
                        "rules": {"warm_up": False, "tick_interval_s": 0.05}}, environ={})
    with Registry(cfg.registry_database()) as reg:
        reg.add(GAUGE, by="test")
    seen: list[list[RuleStateStats]] = []
    ra = RulesAndAlerts(cfg, RegistryView(cfg.registry_database()), on_state=lambda stats, _due: seen.append(stats))
    try:
        ra.on_reading(Reading("WL-1", "water_level", T0, {"depth_mm": 40.0}, TAGS))
        stop = asyncio.Event()
        ticks = asyncio.create_task(ra.run(None, stop, catching_up=lambda: True))  # type: ignore[arg-type]
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await ticks
        assert seen, "no rule-state report while catching up"
        assert any(st.rule_id == "water.depth" and st.states >= 1 for st in seen[-1])
    finally:
        ra.alerts.close()
