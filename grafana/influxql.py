"""Raw InfluxQL targets for the foundation SDK, and Grafana's macro expansion for running them outside Grafana.

The SDK has no InfluxDB query builder, so `InfluxQL` is the one Dataquery we add: a raw query
exactly as Grafana's InfluxDB datasource stores it (`rawQuery: true`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef


@dataclass
class InfluxQLQuery(cogvariants.Dataquery):
    """One panel target: `resultFormat` is `time_series` or `table` (Geomap and tables need `table`)."""

    ref_id: str
    query: str
    datasource: DataSourceRef
    result_format: str = "time_series"
    alias: str = ""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"datasource": self.datasource.to_json(), "query": self.query, "rawQuery": True,
                                  "refId": self.ref_id, "resultFormat": self.result_format}
        if self.alias:
            out["alias"] = self.alias
        return out


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder wrapper so a raw query can go wherever the SDK takes a target builder."""

    def __init__(self, ref_id: str, query: str, datasource: DataSourceRef, *, table: bool = False,
                 alias: str = "") -> None:
        self._q = InfluxQLQuery(ref_id, query, datasource, "table" if table else "time_series", alias)

    def build(self) -> InfluxQLQuery:
        return self._q


_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")


def regex_escape(value: str) -> str:
    """Grafana's `kbn.regexEscape`: what the InfluxDB datasource applies to multi-value variables."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def format_variable(values: Sequence[str], *, multi: bool) -> str:
    """A variable's value as Grafana's InfluxDB datasource interpolates it (`interpolateQueryExpr`).

    Single-value variables are inserted as they are; multi-value / include-All ones are
    regex-escaped and, when more than one value is selected, joined as `(a|b|c)` so that
    `/^$var$/` matches any of them.
    """
    if not multi:
        return values[0] if values else ""
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


@dataclass(frozen=True)
class Expansion:
    """What Grafana substitutes: the relative range (`6h` → `now() - 6h`), the panel interval, variables.

    `absolute_ms` (from, to) in epoch ms stands for an absolute range instead (Grafana's "yesterday"
    is 00:00:00.000 to 23:59:59.999), as `time >= {from}ms and time <= {to}ms`.
    """

    range_: str = "6h"
    interval: str = "1m"
    variables: Mapping[str, tuple[Sequence[str], bool]] = field(default_factory=dict)
    absolute_ms: tuple[int, int] | None = None

    @property
    def range_s(self) -> int:
        """Grafana's `$__range_s`: the range's length in whole seconds (rounded)."""
        if self.absolute_ms is not None:
            return round((self.absolute_ms[1] - self.absolute_ms[0]) / 1000)
        return int(float(self.range_[:-1]) * _UNIT_S[self.range_[-1]])


_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def expand(query: str, exp: Expansion) -> str:
    """`query` with `$timeFilter`, `$__range_s`, `$__interval`, `$interval` and `$var` / `${var}` expanded
    as Grafana does."""
    if exp.absolute_ms is not None:
        when = f"time >= {exp.absolute_ms[0]}ms and time <= {exp.absolute_ms[1]}ms"
    else:
        when = f"time >= now() - {exp.range_} and time <= now()"
    out = query.replace("$timeFilter", when).replace("$__range_s", str(exp.range_s))
    out = out.replace("$__interval", exp.interval).replace("$interval", exp.interval)
    for name in sorted(exp.variables, key=len, reverse=True):
        values, multi = exp.variables[name]
        text = format_variable(list(values), multi=multi)
        out = out.replace("${" + name + "}", text).replace("$" + name, text)
    return out
