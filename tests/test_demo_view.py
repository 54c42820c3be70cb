"""The demo's live alert table states each value in its own unit (QA3 F13: a water.rising ETA printed as
`556.4`, a bare number of seconds, next to millimetres of depth)."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from core.transition import AlertState, AlertTransition, Severity
from sim.demo import _alerts_table

T0 = 1_784_600_000_000_000_000


def test_the_demo_alert_table_gives_units() -> None:
    flood = (("kind", "water_level"),)
    recent = [
        AlertTransition("water.rising", "WL-003", AlertState.PENDING, AlertState.FIRING, Severity.WARNING, T0, 556.4,
                        900.0, "emergency", eta_s=556.4, labels=flood, field_name="depth_mm", aggregate="eta",
                        target=270.0, current=180.0, rate_per_s=0.16),
        AlertTransition("water.depth", "WL-003", AlertState.PENDING, AlertState.FIRING, Severity.WARNING, T0, 162.0,
                        150.0, "case", labels=flood, field_name="depth_mm", aggregate="last", current=162.0),
    ]
    console = Console(record=True, width=200)
    console.print(_alerts_table(SimpleNamespace(alerting=SimpleNamespace(recent=recent))))
    text = console.export_text()
    assert "9 分钟" in text and "556.4" not in text
    assert "162 mm（16.2 cm）" in text
