"""The InfluxQL behind the bureau's figures, shared by `urbansense report` and the Grafana dashboard.

Each builder takes a time condition (`time_condition(from_ns, to_ns)` for the report,
`$timeFilter` for Grafana) and a district regex body (`district_regex("朝阳区")` or Grafana's
`$district`), and groups by district. Definitions (docs/figures.md):

- online rate = Σ online_slot ÷ Σ (range ÷ expected interval) over the registered devices:
  the share of each device's expected reports (one per expected-interval slot) that arrived;
- data accuracy = readings judged `good` ÷ readings;
- alerts opened = transitions to firing from a non-firing state; closed = transitions to resolved.
"""

from __future__ import annotations

import re

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")
ALL = ".*"


def time_condition(from_ns: int, to_ns: int) -> str:
    """[from, to) in ns, as the report uses it (Grafana's `$timeFilter` for a whole day ends at .999)."""
    return f"time >= {int(from_ns)} AND time < {int(to_ns)}"


def district_regex(district: str | None) -> str:
    """The body of `/^…$/` that matches exactly `district` (every district when None)."""
    return ALL if not district else _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), district)


def _kind(kind: str) -> str:
    return kind.replace("\\", "\\\\").replace('"', '\\"')


def readings(kind: str, when: str, district: str) -> str:
    """Columns `reports` (expected reports that arrived) and `readings` (all judged readings)."""
    return (f'SELECT sum("online_slot") AS "reports", count("quality") AS "readings" FROM "{_kind(kind)}" '
            f'WHERE {when} AND "district" =~ /^{district}$/ GROUP BY "district"')


def good(kind: str, when: str, district: str) -> str:
    """Column `good`: readings judged good."""
    return (f'SELECT count("quality") AS "good" FROM "{_kind(kind)}" '
            f"WHERE {when} AND \"quality\" = 'good' AND \"district\" =~ /^{district}$/ GROUP BY \"district\"")


def devices(kind: str, district: str, range_s: str) -> str:
    """Columns `devices` (registered, from `device_info`) and `expected` (reports expected in `range_s`).

    `range_s` is the range's length in seconds (Grafana: `$__range_s`).
    """
    k = kind.replace("'", "\\'")
    return (f'SELECT count("i") AS "devices", sum("r") * {range_s} AS "expected" FROM '
            f'(SELECT last("expected_interval_s") AS "i", 1 / last("expected_interval_s") AS "r" FROM "device_info" '
            f"WHERE \"kind\" = '{k}' AND \"district\" =~ /^{district}$/ GROUP BY \"device_id\", \"district\") "
            'GROUP BY "district"')


def alerts_opened(kind: str, when: str, district: str) -> str:
    """Column `opened`: alerts that began firing."""
    k = kind.replace("'", "\\'")
    return (f'SELECT count("fingerprint") AS "opened" FROM "alerts" WHERE {when} AND "kind" = \'{k}\' '
            f"AND \"to_state\" = 'firing' AND \"from_state\" != 'firing' AND \"district\" =~ /^{district}$/ "
            'GROUP BY "district"')


def alerts_closed(kind: str, when: str, district: str) -> str:
    """Column `closed`: alerts that resolved."""
    k = kind.replace("'", "\\'")
    return (f'SELECT count("fingerprint") AS "closed" FROM "alerts" WHERE {when} AND "kind" = \'{k}\' '
            f"AND \"to_state\" = 'resolved' AND \"district\" =~ /^{district}$/ GROUP BY \"district\"")
