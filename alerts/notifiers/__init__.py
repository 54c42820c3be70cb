"""The notifiers, registered here: receiver `type` in config → the class that delivers to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from alerts.categories import CategoryTable, load_categories, missing_codes
from alerts.config import AlertsConfig, CasePlatformReceiver
from alerts.notifiers.alertmanager import AlertmanagerNotifier
from alerts.notifiers.base import Notifier
from alerts.notifiers.case_platform import CasePlatformNotifier
from alerts.notifiers.dingtalk import DingtalkNotifier
from alerts.notifiers.mqtt import MqttNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.notifiers.wecom import WecomNotifier

NOTIFIER_TYPES: dict[str, Callable[..., Notifier]] = {
    "case_platform": CasePlatformNotifier,
    "webhook": WebhookNotifier,
    "alertmanager": AlertmanagerNotifier,
    "wecom": WecomNotifier,
    "dingtalk": DingtalkNotifier,
    "mqtt": MqttNotifier,
}


def _table(cfg: CasePlatformReceiver, base_dir: Path) -> CategoryTable:
    path = Path(cfg.categories_file) if cfg.categories_file else None
    if path is not None and not path.is_absolute():
        path = base_dir / path
    return load_categories(path)


def build_notifiers(config: AlertsConfig, *, base_dir: Path = Path(".")) -> dict[str, Notifier]:
    """One notifier per configured receiver, by name. Raises `AlertsError` for a bad category table."""
    out: dict[str, Notifier] = {}
    for name, cfg in config.receivers.items():
        extra: dict[str, Any] = {}
        if isinstance(cfg, CasePlatformReceiver):
            extra["table"] = _table(cfg, base_dir)
        out[name] = NOTIFIER_TYPES[cfg.type](name, cfg, **extra)
    return out


def category_warnings(config: AlertsConfig, used: Iterable[str], *, base_dir: Path = Path(".")) -> list[str]:
    """For each case platform receiver, the categories in use (`used`: the rules' `case_category`
    labels, plus the kind defaults) that its edition gives no code: `check-config` and start-up say so."""
    out: list[str] = []
    for name, cfg in config.receivers.items():
        if isinstance(cfg, CasePlatformReceiver):
            table = _table(cfg, base_dir)
            keys = {k for k in used if k} | set(table.kind_defaults.values())
            out += missing_codes(table, cfg.edition, keys, receiver=name)
    return out


__all__ = ["NOTIFIER_TYPES", "Notifier", "build_notifiers", "category_warnings"]
