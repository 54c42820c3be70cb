"""Dashboard and panel titles in Chinese and English (`[grafana] language`)."""

from __future__ import annotations

from typing import Literal

Language = Literal["zh", "en"]

TEXTS: dict[str, tuple[str, str]] = {
    "overview": ("城市感知总览", "City overview"),
    "figures": ("考核指标：在线率、数据准确率、告警", "The bureau's figures: online rate, data accuracy, alerts"),
    "figures_kind": ("{kind}：各区在线率、准确率、告警", "{kind}: online rate, accuracy and alerts per district"),
    "device_map": ("设备状态地图（正常 / 告警 / 失联）", "Devices by state (normal / alerting / silent)"),
    "readings_per_min": ("每分钟读数", "Readings per minute"),
    "online_pct": ("各区设备在线率（目标 98%）", "Devices online per district (target 98 %)"),
    "open_alerts": ("未关闭告警", "Open alerts"),
    "open_alerts_list": ("未关闭告警列表", "Open alerts, by device and rule"),
    "worst_now": ("各类最差当前值", "Worst current value per kind"),
    "noise": ("噪声", "Noise"),
    "noise_zone": ("{zone} 类声环境功能区 LAeq（昼 {day} / 夜 {night} dB(A)）",
                   "Zone class {zone} LAeq (day {day} / night {night} dB(A))"),
    "dust": ("扬尘", "Dust"),
    "pm25_hourly": ("PM2.5 小时均值（GB 3095 日均限值 35 / 75）", "PM2.5 hourly mean (GB 3095 24-h limits 35 / 75)"),
    "pm10_hourly": ("PM10 小时均值（GB 3095 日均限值 50 / 150）", "PM10 hourly mean (GB 3095 24-h limits 50 / 150)"),
    "pm25_24h": ("PM2.5 24 小时均值", "PM2.5 24-hour mean"),
    "pm10_24h": ("PM10 24 小时均值", "PM10 24-hour mean"),
    "bin_fill": ("垃圾桶满溢", "Bin fill"),
    "fill_pct": ("满溢度", "Fill level"),
    "hours_to_full": ("预计装满时间（按近 1 小时上升速度）", "Predicted time to full (last hour's rise)"),
    "parking": ("停车", "Parking"),
    "occupancy": ("泊位占用率", "Bay occupancy"),
    "overstays": ("超时占用泊位（整个 $overstay 内持续占用）", "Overstays (occupied for the whole $overstay)"),
    "water_level": ("道路积水", "Waterlogging"),
    "depth": ("积水深度（15 cm 预警 / 27 cm 封路）", "Water depth (15 cm warning / 27 cm road closure)"),
    "depth_trend": ("积水深度变化（每 10 分钟）", "Depth trend (per 10 minutes)"),
    "depth_district": ("各区最大积水深度（降雨过程）", "Deepest water per district (the rainfall event)"),
    "device_health": ("设备健康", "Device health"),
    "battery": ("电池电量", "Battery"),
    "rssi": ("信号强度 RSSI", "Signal strength (RSSI)"),
    "snr": ("信噪比 SNR", "Signal-to-noise ratio (SNR)"),
    "fcnt_gaps": ("丢帧数（帧计数间隙）", "Lost frames (frame-counter gaps)"),
    "last_seen": ("最近上报", "Last seen"),
    "silent": ("失联设备（$online_window 内无上报）", "Silent devices (nothing within $online_window)"),
    "alerts": ("告警状态变化", "Alert transitions"),
    "district": ("行政区", "District"),
    "zone_class": ("声环境功能区", "Zone class"),
    "device": ("设备", "Device"),
    "online_window": ("在线判定窗口", "Online window"),
    "overstay": ("超时时长", "Overstay after"),
    "normal": ("正常", "normal"),
    "alerting": ("告警", "alerting"),
    "silent_state": ("失联", "silent"),
}


def text(key: str, lang: Language, **fmt: object) -> str:
    zh, en = TEXTS[key]
    s = zh if lang == "zh" else en
    return s.format(**fmt) if fmt else s
