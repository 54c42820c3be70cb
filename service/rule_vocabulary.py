"""What exists, for checking rules against it (`rules.crosscheck`): gathered once from decoders, config, registry.

Used by `urbansense rules check` and by the service at start-up, which logs every mismatch
(a misspelt route or district would otherwise never fire, in silence).
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.config import AlertsConfig
from core.device import Device
from decoders import all_models
from rules.crosscheck import Vocabulary
from rules.loader import CANONICAL_FIELDS, HEALTH_FIELDS, check_rules

DEFAULT_ROUTE = "webhook"
"""The route of a rule that names none (`rules.loader`)."""


def rule_vocabulary(alerts: AlertsConfig | None, devices: Iterable[Device] | None,
                    notes: Iterable[str] = ()) -> Vocabulary:
    """Kinds and their fields from the decoders and schema, routes from the presets and `[[alerts.routes]]`,
    districts and device ids from `devices` (None: not checked), models from the decoders."""
    models = all_models()
    kinds = frozenset(m.kind for m in models)
    fields = {k: set(CANONICAL_FIELDS.get(k, ())) | set(HEALTH_FIELDS) for k in kinds}
    for m in models:
        fields[m.kind].update(m.fields)
    routes = {lv.route for r in check_rules([], include_presets=True).rules for lv in r.levels} | {DEFAULT_ROUTE}
    if alerts is not None:
        routes |= {r.route for r in alerts.routes if r.route}
    known = list(devices) if devices is not None else None
    return Vocabulary(kinds=kinds, fields_by_kind={k: frozenset(v) for k, v in fields.items()},
                      routes=frozenset(routes),
                      districts=None if not known else frozenset(d.district for d in known if d.district),
                      devices=None if not known else frozenset(d.id for d in known),
                      models=frozenset(m.model for m in models), notes=tuple(notes))
