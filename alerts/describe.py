"""The one description of what an alert measured, from which every notifier and `alerts show` render.

A rule's value has a quantity of its own, derived from the rule's field and aggregate, not
from the device kind: `water.depth` (last depth_mm) is a depth in mm; `water.rising` (eta of
depth_mm) is a time in minutes until the target depth; `device.silent` is minutes silent.
Where the rule keeps a trend, the description adds the field's current reading, its rise rate
and the clock time the target is expected — what the emergency desk acts on.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from alerts.model import Measured

# field → (display name, unit of the raw value)
FIELDS: dict[str, tuple[str, str]] = {
    "depth_mm": ("水深", "mm"),
    "distance_mm": ("测距", "mm"),
    "fill_pct": ("满溢度", "%"),
    "tilt_deg": ("倾角", "°"),
    "tilted": ("倾倒/开盖", ""),
    "laeq_db": ("等效声级 LAeq", "dB(A)"),
    "lmax_db": ("最大声级 Lmax", "dB(A)"),
    "lmin_db": ("最小声级 Lmin", "dB(A)"),
    "lcpeak_db": ("C 计权峰值 LCpeak", "dB(C)"),
    "pm1_0_ugm3": ("PM1.0 浓度", "µg/m³"),
    "pm2_5_ugm3": ("PM2.5 浓度", "µg/m³"),
    "pm10_ugm3": ("PM10 浓度", "µg/m³"),
    "tsp_ugm3": ("TSP 浓度", "µg/m³"),
    "occupied": ("车位占用", ""),
    "vehicle_count": ("车辆数", "辆"),
    "battery_pct": ("电量", "%"),
    "battery_v": ("电池电压", "V"),
    "temperature_c": ("温度", "°C"),
    "humidity_pct": ("湿度", "%"),
}
TREND_ZH = {"rising": "上涨", "falling": "回落", "steady": "平稳"}
BOOLEAN_FIELDS = frozenset({"tilted", "occupied"})
AGGREGATE_ZH = {"mean": "均值", "max": "最大值", "min": "最小值", "laeq": "", "last": "", "count": "次数",
                "rate": "变化率", "slope": "变化速率"}
# the device kind's quantity, for a transition that does not name its field (older stored alerts)
KIND_FIELD = {"water_level": "depth_mm", "noise": "laeq_db", "dust": "pm10_ugm3", "bin_fill": "fill_pct",
              "parking": "occupied"}


@lru_cache(maxsize=16)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def clock_time(time_ns: int, tz: str, *, seconds: bool = True) -> str:
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%H:%M"
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).astimezone(_zone(tz)).strftime(fmt)


def fmt_number(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"


def fmt_value(v: float | None, unit: str) -> str:
    """A number with its unit; millimetres also in centimetres, as the desk speaks of 15 and 27 cm."""
    if v is None:
        return "—"
    if unit == "bool":
        return "是" if v else "否"
    if unit == "分钟":
        return "不足 1 分钟" if 0 < v < 1 else f"{v:.0f} 分钟"
    if unit == "次":
        return f"{v:.0f} 次"
    text = f"{fmt_number(v)} {unit}".strip()
    if unit == "mm":
        text += f"（{v / 10:.1f} cm）"
    return text


def fmt_minutes(seconds: float) -> str:
    if seconds <= 0:
        return "已达到"
    minutes = seconds / 60
    return "不足 1 分钟" if minutes < 1 else f"{minutes:.0f} 分钟"


def about_minutes(seconds: float) -> str:
    """`约 12 分钟`, but `不足 1 分钟` without the "about" (QA3 F13: "约 不足 1 分钟")."""
    text = fmt_minutes(seconds)
    return text if seconds < 60 else f"约 {text}"


@dataclass(slots=True, frozen=True)
class Fact:
    """One line of a message: a labelled quantity (`value` in `unit`, None when unknown) and its text."""

    key: str
    label: str
    value: float | None
    unit: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "value": self.value, "unit": self.unit, "text": self.text}


@dataclass(slots=True, frozen=True)
class Description:
    """The rule's value as a quantity (`name`, `unit`, `value`, `threshold` in that unit) and the
    ordered facts every message shows: the value against its threshold first, then what the
    trend adds (depth now, rise rate, time to target and the clock time expected). `raw_unit` is
    the unit of the transition's own `value` (seconds for an ETA or a silence)."""

    name: str
    unit: str
    value: float | None
    threshold: float | None
    facts: tuple[Fact, ...]
    raw_unit: str = ""

    @property
    def value_text(self) -> str:
        return fmt_value(self.value, self.unit)

    @property
    def threshold_text(self) -> str:
        return fmt_value(self.threshold, self.unit)

    def fact(self, key: str) -> Fact | None:
        return next((f for f in self.facts if f.key == key), None)

    def sentence(self) -> str:
        """The facts as one clause list: `水深 89 mm（8.9 cm）；上涨速度 …`."""
        return "；".join(f"{f.label} {f.text}" for f in self.facts)

    def to_json(self) -> dict[str, Any]:
        return {"quantity": self.name, "unit": "" if self.unit == "bool" else self.unit, "value": self.value,
                "threshold": self.threshold, "raw_unit": self.raw_unit, "text": self.value_text,
                "threshold_text": self.threshold_text, "facts": [f.to_json() for f in self.facts]}


def _field_quantity(field: str, labels: dict[str, str]) -> tuple[str, str]:
    name, unit = FIELDS.get(field, (field or "数值", ""))
    if field in BOOLEAN_FIELDS:
        unit = "bool"
    pollutant = labels.get("pollutant")
    if pollutant and field.endswith("_ugm3"):
        name = f"{pollutant} 浓度"
    return name, unit


def describe(m: Measured, *, value: float | None, threshold: float | None, eta_s: float | None,
             time_ns: int, labels: dict[str, str], kind: str = "", tz: str = "Asia/Shanghai") -> Description:
    """Describe a rule's value and its context; pure. Labels `quantity` and `unit` rename a plain value."""
    field = m.field or KIND_FIELD.get(kind, "")
    fname, funit = _field_quantity(field, labels)
    agg = m.aggregate or ("last" if field else "")
    facts: list[Fact] = []
    if agg == "eta":
        target = fmt_value(m.target, funit)
        name = f"{fname}达到 {target} 的预计时间"
        unit = "分钟"
        v = None if value is None else value / 60
        thr = None if threshold is None else threshold / 60
        text = "当前趋势下不会到达" if value is None else f"{fmt_minutes(value)}（阈值 ≤ {fmt_value(thr, unit)}）"
        facts.append(Fact("value", f"预计达到 {target}", v, unit, text))
    elif agg == "failed_count":
        name, unit = "数据异常次数", "次"
        v, thr = value, threshold
        facts.append(Fact("value", name, v, unit, f"{fmt_value(v, unit)}，阈值 {fmt_value(thr, unit)}"))
    elif agg in ("silent", "failed_for"):
        name, unit = ("静默时长" if agg == "silent" else "数据异常持续时长"), "分钟"
        v = None if value is None else value / 60
        thr = None if threshold is None else threshold / 60
        facts.append(Fact("value", name, v, unit, f"{fmt_value(v, unit)}，阈值 {fmt_value(thr, unit)}"))
    elif funit == "bool" and field == "occupied" and m.held_s:
        name, unit = "占用时长", "分钟"
        v, thr = m.held_s / 60, None
        facts.append(Fact("value", name, v, unit, f"{fmt_value(v, unit)}（持续占用）"))
    else:
        suffix = AGGREGATE_ZH.get(agg, agg)
        name = labels.get("quantity") or (f"{fname}{suffix}" if suffix else fname)
        unit = labels.get("unit") or ("次" if agg == "count" else funit)
        if agg == "rate" or agg == "slope":
            unit = labels.get("unit") or f"{funit}/单位时间"
        v, thr = value, threshold
        facts.append(Fact("value", name, v, unit, f"{fmt_value(v, unit)}，阈值 {fmt_value(thr, unit)}"))
    _trend_facts(facts, m, fname, funit, agg, eta_s, time_ns, tz, current_is_value=(agg == "last"),
                 trend_label=labels.get("trend", ""))
    raw_unit = "s" if agg in ("eta", "silent", "failed_for") else ("" if unit == "bool" or name == "占用时长" else unit)
    return Description(name, unit, v, thr, tuple(facts), raw_unit)


def _trend_facts(facts: list[Fact], m: Measured, fname: str, funit: str, agg: str, eta_s: float | None,
                 time_ns: int, tz: str, *, current_is_value: bool, trend_label: str) -> None:
    """Depth now, rise rate, time to the target and the clock time it is expected, where the rule has a trend."""
    if m.current is not None and not current_is_value:
        facts.append(Fact("current", f"当前{fname}", m.current, funit, fmt_value(m.current, funit)))
    if m.rate_per_s is not None and funit not in ("bool", ""):
        per_h = m.rate_per_s * 3600
        if funit == "mm":
            rate, unit = per_h / 10, "cm/h"
        else:
            rate, unit = per_h, f"{funit}/h"
        word = "上涨速度" if rate > 0 else "回落速度" if rate < 0 else "变化速度"
        facts.append(Fact("rate", word, rate, unit, f"{rate:+.1f} {unit}"))
    elif trend_label or (eta_s is not None and agg != "eta"):
        facts.append(Fact("trend", "趋势", None, "", TREND_ZH.get(trend_label or "rising", trend_label)))
    if eta_s is not None and math.isfinite(eta_s) and m.target is None and agg != "eta":
        text = "已达到阈值" if eta_s <= 0 else f"{about_minutes(eta_s)}后达到阈值"
        facts.append(Fact("eta", "预计", eta_s / 60, "分钟", text))
    if eta_s is not None and math.isfinite(eta_s) and m.target is not None:
        target = fmt_value(m.target, funit)
        if eta_s <= 0:
            facts.append(Fact("eta", f"距 {target}", 0.0, "分钟", "已达到"))
        else:
            if agg != "eta":
                facts.append(Fact("eta", f"距 {target}", eta_s / 60, "分钟", about_minutes(eta_s)))
            at = time_ns + int(eta_s * 1e9)
            facts.append(Fact("eta_at", "预计时刻", at / 1e9, "unix_s",
                              f"{clock_time(at, tz, seconds=False)}（{_zone_name(tz)}）"))


def _zone_name(tz: str) -> str:
    return "北京时间" if tz in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else tz
