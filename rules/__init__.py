"""The rules engine: TOML rule files, per-device windows and trends, alert transitions (see rules/README.md).

Names are imported on first use, so importing one submodule stays cheap.
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
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rules' has no attribute {name!r}")
    return getattr(import_module(module), name)
