"""Which receivers an alert goes to, chosen by its route name, rule id, severity and labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase

from alerts.config import RouteConfig


class Router:
    """Routes are tried in order; the first that matches decides unless it says `continue_matching`.
    When none matches, `default_receivers` get the alert."""

    def __init__(self, routes: Sequence[RouteConfig], default_receivers: Sequence[str] = ()) -> None:
        self.routes = tuple(routes)
        self.default_receivers = tuple(default_receivers)

    def receivers(self, *, route: str, rule_id: str, severity: str, labels: Mapping[str, str]) -> tuple[str, ...]:
        chosen: list[str] = []
        matched = False
        for r in self.routes:
            if not _route_matches(r, route, rule_id, severity, labels):
                continue
            matched = True
            chosen.extend(x for x in r.receivers if x not in chosen)
            if not r.continue_matching:
                break
        return tuple(chosen) if matched else self.default_receivers


def _route_matches(r: RouteConfig, route: str, rule_id: str, severity: str, labels: Mapping[str, str]) -> bool:
    if r.route and r.route != route:
        return False
    if r.severities and severity not in r.severities:
        return False
    if r.rule_ids and not any(fnmatchcase(rule_id, pat) for pat in r.rule_ids):
        return False
    return all(labels.get(k, "") == v for k, v in r.match.items())
