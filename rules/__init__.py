"""The rules engine: TOML rule files, per-device windows and trends, alert transitions (see rules/README.md).

Names are imported on first use, so `from rules.transition import ...` (the shared contract)
stays cheap and free of import cycles for the packages that only need that.
"""

from importlib import import_module

_EXPORTS = {
    "Engine": "rules.engine",
    "RuleState": "rules.machine",
    "Rule": "rules.model",
    "PRESETS_DIR": "rules.loader",
    "CheckReport": "rules.loader",
    "RuleError": "rules.loader",
    "check_rules": "rules.loader",
    "load_rules": "rules.loader",
    "readings_from_series": "rules.warmup",
    "AlertState": "rules.transition",
    "AlertTransition": "rules.transition",
    "Severity": "rules.transition",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rules' has no attribute {name!r}")
    return getattr(import_module(module), name)
