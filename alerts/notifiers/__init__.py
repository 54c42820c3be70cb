"""The notifiers, registered here: receiver `type` in config → the class that delivers to it."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.categories import load_categories
from alerts.config import AlertsConfig, CasePlatformReceiver
from alerts.errors import AlertsError
from alerts.notifiers.alertmanager import AlertmanagerNotifier
from alerts.notifiers.base import Notifier
from alerts.notifiers.case_platform import CasePlatformNotifier
from alerts.notifiers.dingtalk import DingtalkNotifier
from alerts.notifiers.mqtt import MqttNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.notifiers.wecom import WecomNotifier
from core.tls import TlsError, client_context

NOTIFIER_TYPES: dict[str, Callable[..., Notifier]] = {
    "case_platform": CasePlatformNotifier,
    "webhook": WebhookNotifier,
    "alertmanager": AlertmanagerNotifier,
    "wecom": WecomNotifier,
    "dingtalk": DingtalkNotifier,
    "mqtt": MqttNotifier,
}


def build_notifiers(config: AlertsConfig, *, base_dir: Path = Path(".")) -> dict[str, Notifier]:
    """One notifier per configured receiver, by name. Raises `AlertsError` for a bad category table."""
    out: dict[str, Notifier] = {}
    for name, cfg in config.receivers.items():
        extra: dict[str, Any] = {}
        if isinstance(cfg, CasePlatformReceiver):
            path = Path(cfg.categories_file) if cfg.categories_file else None
            if path is not None and not path.is_absolute():
                path = base_dir / path
            extra["table"] = load_categories(path)
        out[name] = notifier = NOTIFIER_TYPES[cfg.type](name, cfg, **extra)
        notifier.tls = _tls_of(name, cfg, base_dir)
    return out


def _tls_of(name: str, cfg: Any, base_dir: Path) -> ssl.SSLContext | None:
    """The receiver's TLS context when it sets a CA file (or, for MQTT, `tls`); None = library defaults."""
    def resolved(value: str) -> Path | None:
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else base_dir / p

    wants = getattr(cfg, "tls", False) or getattr(cfg, "ca_file", "")
    if not wants:
        return None
    try:
        return client_context(ca_file=resolved(cfg.ca_file), cert_file=resolved(getattr(cfg, "cert_file", "")),
                              key_file=resolved(getattr(cfg, "key_file", "")), setting=f"alerts.receivers.{name}")
    except TlsError as exc:
        raise AlertsError(str(exc)) from None


__all__ = ["NOTIFIER_TYPES", "Notifier", "build_notifiers"]
