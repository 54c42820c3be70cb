"""Shared pieces of message bodies: times, values, location, titles and the urbansense alert JSON."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from alerts.describe import Description, describe, fmt_number
from alerts.geo import wgs84_to_gcj02
from alerts.model import Event, Notice

__all__ = ["fmt_number"]  # re-exported for the notifiers

SEVERITY_ZH = {"info": "提示", "warning": "预警", "critical": "严重"}
EVENT_ZH = {Event.FIRING: "告警", Event.ESCALATED: "升级", Event.REPEAT: "持续", Event.RESOLVED: "恢复",
            Event.ACKNOWLEDGED: "已确认"}
KIND_ZH = {"water_level": "道路积水", "noise": "噪声", "dust": "扬尘", "bin_fill": "垃圾满溢", "parking": "停车"}
ZERO_TIME = "0001-01-01T00:00:00Z"


@lru_cache(maxsize=16)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def rfc3339(time_ns: int | None, tz: str = "UTC") -> str | None:
    """RFC 3339 with the zone's offset (milliseconds), or None."""
    if time_ns is None:
        return None
    dt = datetime.fromtimestamp(time_ns / 1e9, tz=UTC).astimezone(_zone(tz))
    return dt.isoformat(timespec="milliseconds")


def human_time(time_ns: int, tz: str) -> str:
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).astimezone(_zone(tz)).strftime("%Y-%m-%d %H:%M:%S")


def kind(n: Notice) -> str:
    return n.labels.get("kind") or (n.device.kind if n.device else "")


def describe_notice(n: Notice) -> Description:
    """The one description of what the rule measured (see `alerts.describe`)."""
    return describe(n.measured, value=n.value, threshold=n.threshold, eta_s=n.eta_s, time_ns=n.time_ns,
                    labels=n.labels, kind=kind(n), tz=n.timezone)


def quantity(n: Notice) -> tuple[str, str]:
    """The rule value's quantity name and the unit of `Notice.value` as sent (seconds for an ETA)."""
    d = describe_notice(n)
    return d.name, d.raw_unit


def location(n: Notice) -> dict[str, Any] | None:
    """WGS-84 and GCJ-02 coordinates, address, district and street of the device, or None."""
    d = n.device
    if d is None:
        return None
    loc: dict[str, Any] = {"address": d.address, "district": d.district, "street": d.street}
    if d.latitude is not None and d.longitude is not None:
        glat, glon = wgs84_to_gcj02(d.latitude, d.longitude)
        loc["wgs84"] = {"lat": d.latitude, "lon": d.longitude}
        loc["gcj02"] = {"lat": round(glat, 7), "lon": round(glon, 7)}
    return loc


def place(n: Notice) -> str:
    d = n.device
    if d is None:
        return " ".join(n.labels[k] for k in ("district", "street") if n.labels.get(k)) or "—"
    return " ".join(x for x in (d.district, d.street, d.address) if x) or "—"


def what(n: Notice) -> str:
    """A short name of what is wrong: the rule's `title` label, else the kind, else the rule id."""
    return n.labels.get("title") or KIND_ZH.get(kind(n), "") or n.rule_id


def title(n: Notice) -> str:
    state = "恢复" if n.event is Event.RESOLVED else SEVERITY_ZH.get(n.severity, n.severity)
    return f"【{state}】{what(n)} · {n.device_id}" + (f" · {place(n)}" if place(n) != "—" else "")


def description(n: Notice) -> str:
    """The measured quantity against its threshold, the trend, the place and the rule in one paragraph."""
    d = describe_notice(n)
    parts = [n.summary.rstrip("。.") if n.summary else f"{what(n)}{EVENT_ZH[n.event]}"]
    parts.append(d.sentence())
    parts.append(f"位置 {place(n)}")
    parts.append(f"规则 {n.rule_id}，设备 {n.device_id}，级别 {SEVERITY_ZH.get(n.severity, n.severity)}")
    parts.append(f"观测时间 {human_time(n.time_ns, n.timezone)}")
    return "；".join(parts) + "。"


def alert_json(n: Notice) -> dict[str, Any]:
    """urbansense's own alert message (webhook, MQTT): everything about one event, self-describing."""
    d = n.device
    return {
        "schema": "urbansense.alert/1",
        "idempotency_key": n.idempotency_key,
        "fingerprint": n.fingerprint,
        "seq": n.seq,
        "episode": n.episode,
        "event": str(n.event),
        "status": "resolved" if n.event is Event.RESOLVED else "firing",
        "rule_id": n.rule_id,
        "device_id": n.device_id,
        "severity": n.severity,
        "previous_severity": n.previous_severity,
        "route": n.route,
        "title": title(n),
        "description": description(n),
        "summary": n.summary,
        "value": n.value,
        "threshold": n.threshold,
        "unit": quantity(n)[1],
        "measure": describe_notice(n).to_json(),
        "eta_s": n.eta_s,
        "trend": n.labels.get("trend") or _trend_word(n),
        "labels": dict(n.labels),
        "started_at": rfc3339(n.started_ns, n.timezone),
        "time": rfc3339(n.time_ns, n.timezone),
        "resolved_at": rfc3339(n.resolved_ns, n.timezone),
        "location": location(n),
        "device": {"id": d.id, "model": d.model, "kind": d.kind} if d else None,
        "source": "IoT sensor",
    }


def _trend_word(n: Notice) -> str | None:
    rate = n.measured.rate_per_s
    if rate is None:
        return "rising" if n.eta_s is not None else None
    return "rising" if rate > 0 else "falling" if rate < 0 else "steady"


def markdown_lines(n: Notice) -> list[str]:
    """The robot message's lines: device, location, coordinates, value, trend, ETA, time, rule."""
    d = n.device
    lines = [f"**设备**：{n.device_id}" + (f"（{d.model}）" if d and d.model else ""),
             f"**位置**：{place(n)}"]
    loc = location(n)
    if loc and "wgs84" in loc:
        w, g = loc["wgs84"], loc["gcj02"]
        lines.append(f"**坐标**：{w['lat']:.6f}, {w['lon']:.6f}（WGS-84）／{g['lat']:.6f}, {g['lon']:.6f}（GCJ-02）")
    for f in describe_notice(n).facts:
        lines.append(f"**{f.label}**：{f.text}")
    stamp = n.resolved_ns if n.event is Event.RESOLVED and n.resolved_ns else n.time_ns
    lines.append(f"**时间**：{human_time(stamp, n.timezone)}")
    if n.previous_severity and n.event is Event.ESCALATED:
        lines.append(f"**级别**：{SEVERITY_ZH.get(n.previous_severity, n.previous_severity)} → "
                     f"{SEVERITY_ZH.get(n.severity, n.severity)}")
    lines.append(f"规则 {n.rule_id} · 告警 {n.fingerprint}")
    if n.summary:
        lines.append(n.summary)
    return lines


def truncate_utf8(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary with an ellipsis."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode(errors="ignore") + "…"
