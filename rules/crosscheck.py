"""Rules checked against what exists: kinds, the fields those kinds report, routes, districts, devices, models.

A rule file can be well-formed and still never fire: `route = "cases"` reaches no receiver,
`kind = "water"` matches no reading, `field = "laeq"` is never reported, a district spelt
`朝阳区` where the registry says `朝阳` selects nobody. `cross_check` finds all of these at once.
The caller (the CLI or the service) gathers `Vocabulary` from the decoders, the alerts config
and the registry, so this package imports none of them. Pure: no I/O.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rules.model import Rule


@dataclass(frozen=True)
class Vocabulary:
    """What exists. `None` for a set means "unknown here, do not check" (e.g. no registry at hand)."""

    kinds: frozenset[str]
    fields_by_kind: Mapping[str, frozenset[str]]
    """Kind → every field a reading of it may carry (canonical, vendor and health fields)."""
    routes: frozenset[str] | None = None
    districts: frozenset[str] | None = None
    devices: frozenset[str] | None = None
    models: frozenset[str] | None = None
    notes: tuple[str, ...] = field(default=())
    """What was not checked and why, for the user."""


@dataclass(frozen=True)
class CrossError:
    """One mismatch: the rule's file, id, key and what is wrong (shaped like `RuleError` for printing)."""

    file: str
    rule_id: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: rule {self.rule_id!r}: key {self.key!r}: {self.message}"


def _listing(values: Iterable[str], limit: int = 12) -> str:
    items = sorted(values)
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _hint(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.5)
    if not close:
        close = [o for o in sorted(options) if o.startswith(word) or word.startswith(o) or word in o]
    return f" (did you mean {close[0]!r}?)" if close else ""


def cross_check(rules: Iterable[Rule], vocab: Vocabulary) -> list[CrossError]:
    """Every mismatch between the rules and what exists, in rule order (an empty list: all is known)."""
    errors: list[CrossError] = []
    for rule in rules:
        def err(key: str, message: str, rule: Rule = rule) -> None:
            errors.append(CrossError(rule.source, rule.id, key, message))

        kinds = rule.select.kinds
        known_kinds = vocab.kinds if kinds is None else kinds & vocab.kinds
        for k in sorted(kinds or ()):
            if k not in vocab.kinds:
                err("kind", f"{k!r} is not a reading kind; kinds are {_listing(vocab.kinds)}{_hint(k, vocab.kinds)}")
        if not rule.is_no_data and rule.field and known_kinds:
            fields = frozenset().union(*(vocab.fields_by_kind.get(k, frozenset()) for k in known_kinds))
            if rule.field not in fields:
                which = ", ".join(sorted(known_kinds)) if kinds is not None else "any kind"
                err("field", f"{rule.field!r} is not reported by {which}; fields: {_listing(fields)}"
                    f"{_hint(rule.field, fields)}")
        if vocab.routes is not None:
            for route in dict.fromkeys(lv.route for lv in rule.levels):
                if route not in vocab.routes:
                    err("route", f"{route!r} is not a route; routes are {_listing(vocab.routes)}"
                        f"{_hint(route, vocab.routes)}")
        checks = (("select.district", rule.select.districts, vocab.districts, "district has no registered device"),
                  ("select.devices", rule.select.devices, vocab.devices, "is not a registered device"),
                  ("select.model", rule.select.models, vocab.models, "is not a device model"))
        for key, chosen, known, what in checks:
            if chosen is None or known is None:
                continue
            for value in sorted(chosen - known):
                err(key, f"{value!r}: {what}; known: {_listing(known)}{_hint(value, known)}")
    return errors
