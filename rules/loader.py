"""Rule files (TOML) to `Rule`s: presets first, then the city's files; errors name file, rule and key.

A later file's rule with the same id replaces the earlier one, so a city overrides a preset
by redefining it, or switches it off with just `id = "..."` and `enabled = false`.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.device import ZONE_CLASSES
from core.kinds import HEALTH_FIELD_NAMES, KIND_NAMES
from core.kinds import KINDS as KIND_SPECS
from core.timing import format_duration, parse_duration
from core.transition import Severity
from rules.crosscheck import Vocabulary, cross_check
from rules.model import (
    ANY,
    BUCKETED_AGGREGATES,
    DEFAULT_BUCKETS,
    OPS,
    SEVERITY_RANK,
    TREND_AGGREGATES,
    EtaSpec,
    Level,
    NoDataSpec,
    Period,
    QualitySpec,
    Rule,
    Selector,
    Threshold,
)
from rules.schedule import load_zone, overlap, parse_span
from rules.tables import validate_table

PRESETS_DIR = Path(__file__).parent / "presets"
KINDS = KIND_NAMES
CANONICAL_FIELDS = {name: spec.field_names for name, spec in KIND_SPECS.items()}
HEALTH_FIELDS = HEALTH_FIELD_NAMES
ZONE_KEYS = (*ZONE_CLASSES, "default")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TREND_MAX_SAMPLES = 512
DEFAULT_MIN_SPAN = 0.1
"""A trend's samples must span this share of its window unless the rule says `min_span`."""


class RuleErrors(Exception):
    """Every structural problem of one rule table, found at once."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class RuleError(ValueError):
    """A rule file is wrong: `file`, `rule_id` and `key` say where, `message` what."""

    def __init__(self, file: str | Path, rule_id: str | None, key: str | None, message: str) -> None:
        self.file = str(file)
        self.rule_id = rule_id
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        rule = f"rule {self.rule_id!r}" if self.rule_id else "rule -"
        key = f"key {self.key!r}" if self.key else "key -"
        return f"{self.file}: {rule}: {key}: {self.message}"


@dataclass
class CheckReport:
    """What `check_rules` found: the rules that load, every error, and warnings (likely typos)."""

    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def preset_files() -> list[Path]:
    """The shipped preset files, in a stable order."""
    return sorted(PRESETS_DIR.glob("*.toml"))


def load_rules(paths: Iterable[Path | str], *, include_presets: bool = True,
               tz: str = "Asia/Shanghai") -> list[Rule]:
    """The enabled rules of the presets (unless excluded) and `paths`; raises the first `RuleError`."""
    report = check_rules(paths, include_presets=include_presets, tz=tz)
    if report.errors:
        raise report.errors[0]
    return report.rules


def check_rules(paths: Iterable[Path | str], *, include_presets: bool = True,
                tz: str = "Asia/Shanghai", vocabulary: Vocabulary | None = None) -> CheckReport:
    """Validate every file and rule, collecting all errors rather than stopping at the first.

    With a `vocabulary` the rules are also checked against what exists (`rules.crosscheck`):
    kinds, fields, routes, districts, devices and models.
    """
    report = CheckReport()
    files = [*(preset_files() if include_presets else []), *(Path(p) for p in paths)]
    report.files = files
    merged: dict[str, Rule | None] = {}
    for path in files:
        for item in _load_file(path, tz, report):
            merged.pop(item[0], None)
            merged[item[0]] = item[1]
    report.rules = [r for r in merged.values() if r is not None and r.enabled]
    if vocabulary is not None:
        mismatches = cross_check(report.rules, vocabulary)
        report.errors.extend(RuleError(e.file, e.rule_id, e.key, e.message) for e in mismatches)
        said = {f"rule {e.rule_id!r}: key {e.key!r}" for e in mismatches}
        report.warnings = [w for w in report.warnings if not any(s in w for s in said)]
    return report


def _load_file(path: Path, tz: str, report: CheckReport) -> list[tuple[str, Rule | None]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        report.errors.append(RuleError(path, None, None, "no such file"))
        return []
    except (OSError, UnicodeDecodeError) as exc:
        report.errors.append(RuleError(path, None, None, f"cannot read: {exc}"))
        return []
    except tomllib.TOMLDecodeError as exc:
        report.errors.append(RuleError(path, None, None, f"TOML syntax error: {exc}"))
        return []
    for key in data:
        if key != "rule":
            report.errors.append(RuleError(path, None, key, "unknown top-level key; rules go in [[rule]] tables"
                                           + _hint(key, ["rule"])))
    tables = data.get("rule", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        report.errors.append(RuleError(path, None, "rule", "expected [[rule]] tables"))
        return []
    out: list[tuple[str, Rule | None]] = []
    seen: set[str] = set()
    for index, table in enumerate(tables, 1):
        parser = _RuleParser(path, index, table, tz, report.warnings)
        try:
            rule_id, rule = parser.parse()
        except RuleErrors as exc:
            report.errors.extend(exc.errors)
            continue
        except RuleError as exc:
            report.errors.append(exc)
            continue
        if rule_id in seen:
            report.errors.append(RuleError(path, rule_id, "id", "defined twice in this file"))
            continue
        seen.add(rule_id)
        out.append((rule_id, rule))
    return out


def _hint(word: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    close = [c for c in options if c.startswith(word) and len(word) >= 3]
    close = close or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _RuleParser:
    """Reads one [[rule]] table; every check raises a RuleError naming the key."""

    def __init__(self, path: Path, index: int, table: dict, tz: str, warnings: list[str]) -> None:
        self.path = path
        self.table = table
        self.tz = tz
        self.warnings = warnings
        raw_id = table.get("id")
        self.rule_id = raw_id if isinstance(raw_id, str) and raw_id else f"#{index} (no id)"

    def error(self, key: str | None, message: str) -> RuleError:
        return RuleError(self.path, self.rule_id, key, message)

    def parse(self) -> tuple[str, Rule | None]:
        """The rule (None for one only switched off); `RuleErrors` with every structural problem
        (rules.tables), else the first `RuleError` of the checks that span keys."""
        t = self.table
        if t.get("enabled") is False and set(t) <= {"id", "enabled"} and isinstance(t.get("id"), str):
            _, problems = validate_table({**t, "field": "x"})
            if not problems:
                return t["id"], None
        _, problems = validate_table(t)
        if problems:
            raise RuleErrors([self.error(key, message) for key, message in problems])
        rule_id: str = t["id"]
        enabled: bool = t.get("enabled", True)
        kinds = self.kinds()
        select = self.selector(kinds)
        route = self.name("route", "webhook")
        labels = self.labels()
        timezone = self.string("timezone", self.tz)
        try:
            load_zone(timezone)
        except ValueError as exc:
            raise self.error("timezone", str(exc)) from None
        common = dict(id=rule_id, select=select, source=str(self.path), route=route, labels=labels,
                      description=self.string("description", ""), enabled=enabled, timezone=timezone)
        if "no_data" in t:
            return rule_id, self.no_data_rule(common)
        if "quality" in t:
            return rule_id, self.quality_rule(common)
        return rule_id, self.value_rule(common, kinds)

    # -- value rules ---------------------------------------------------------------------------

    def value_rule(self, common: dict, kinds: frozenset[str] | None) -> Rule:
        t = self.table
        fld: str = t["field"]
        self.check_field(fld, kinds)
        aggregate = t.get("aggregate", "last")
        window_s = self.duration("window", 0.0)
        if aggregate != "last" and window_s <= 0:
            raise self.error("window", f"aggregate {aggregate!r} needs a window, e.g. window = \"15m\"")
        if "per" in t and aggregate not in ("rate", "slope"):
            raise self.error("per", "only for aggregate 'rate' or 'slope'")
        per_s = self.duration("per", 1.0)
        if per_s <= 0:
            raise self.error("per", "must be longer than zero")
        for key in ("target", "direction"):
            if key in t and aggregate != "eta":
                raise self.error(key, "only for aggregate 'eta'")
        target = self.number("target") if aggregate == "eta" else None
        if aggregate == "eta" and target is None:
            raise self.error("target", "aggregate 'eta' needs the value to reach, e.g. target = 270")
        direction = t.get("direction", "rising")
        op = t.get("op")
        if op not in OPS:
            raise self.error("op", f"required: one of {' '.join(OPS)}")
        schedule = self.schedule()
        levels = self.levels(op, schedule)
        clear = self.clear(op, schedule, levels)
        default_min = 3 if aggregate in TREND_AGGREGATES else 2 if aggregate == "rate" else 1
        min_samples = self.integer("min_samples", default_min, minimum=1)
        if aggregate in TREND_AGGREGATES and min_samples < 2:
            raise self.error("min_samples", "a slope needs at least 2 samples")
        min_span_s = self.min_span(aggregate in TREND_AGGREGATES, window_s)
        default_max = 64 if aggregate in TREND_AGGREGATES else 2048
        max_samples = self.integer("max_samples", default_max, minimum=max(min_samples, 1))
        if aggregate in TREND_AGGREGATES and max_samples > _TREND_MAX_SAMPLES:
            raise self.error("max_samples", f"at most {_TREND_MAX_SAMPLES} for a trend (its cost grows as n²)")
        resolution_s = self.resolution(aggregate, window_s)
        eta = self.eta_spec(op)
        rising = (direction == "rising") if aggregate == "eta" else op in (">", ">=")
        return Rule(
            **common,
            field=fld,
            aggregate=aggregate,
            window_s=window_s,
            per_s=per_s,
            target=target,
            op=op,
            levels=levels,
            clear=clear,
            for_s=self.duration("for", 0.0),
            for_samples=self.integer("for_samples", 1, minimum=1),
            keep_firing_for_s=self.duration("keep_firing_for", 0.0),
            min_samples=min_samples,
            min_span_s=min_span_s,
            min_coverage_s=self.duration("min_coverage", 0.0),
            max_samples=max_samples,
            resolution_s=resolution_s,
            schedule=schedule,
            eta=eta,
            rising=rising,
            ignore_bad=t.get("ignore_bad", True),
        )

    def resolution(self, aggregate: str, window_s: float) -> float:
        """The time bucket of a bucketed window: `resolution`, default window / 24 (0: no window, or points)."""
        if aggregate not in BUCKETED_AGGREGATES:
            if "resolution" in self.table:
                raise self.error("resolution", f"aggregate {aggregate!r} keeps every point (bounded by max_samples); "
                                               "only last, mean, min, max, count and laeq windows take a resolution")
            return 0.0
        if window_s <= 0:
            if "resolution" in self.table:
                raise self.error("resolution", "needs a window")
            return 0.0
        resolution_s = self.duration("resolution", window_s / DEFAULT_BUCKETS)
        if not 0 < resolution_s <= window_s:
            raise self.error("resolution", f"must be longer than zero and at most the window "
                                           f"({format_duration(window_s)}), e.g. resolution = \"1h\"")
        return resolution_s

    def check_field(self, fld: str, kinds: frozenset[str] | None) -> None:
        """Warn on a likely typo of a canonical field; other names may be vendor fields (docs/schema.md)."""
        if kinds is None:
            return
        known = {f for k in kinds for f in CANONICAL_FIELDS.get(k, ())} | set(HEALTH_FIELDS)
        hint = _hint(fld, known)
        if fld not in known and hint:
            self.warnings.append(f"{self.path}: rule {self.rule_id!r}: key 'field': {fld!r} is not a canonical "
                                 f"field of {', '.join(sorted(kinds))}{hint}")

    def levels(self, op: str, schedule: tuple[Period, ...]) -> tuple[Level, ...]:
        t = self.table
        rule_route = self.name("route", "webhook")
        if "levels" in t:
            for key in ("threshold", "severity"):
                if key in t:
                    raise self.error(key, "use either 'threshold' (one level) or [[rule.levels]], not both")
            levels = []
            for i, lv in enumerate(t["levels"]):
                where = f"levels[{i}]"
                route = lv.get("route", rule_route)
                levels.append(Level(Severity(lv["severity"]),
                                    self.threshold(lv["threshold"], f"{where}.threshold", schedule), route))
        else:
            if "threshold" not in t:
                raise self.error("threshold", "required (or give [[rule.levels]])")
            severity = Severity(t.get("severity", "warning"))
            levels = [Level(severity, self.threshold(t["threshold"], "threshold", schedule), rule_route)]
        levels.sort(key=lambda lv: SEVERITY_RANK[lv.severity])
        for a, b in itertools.pairwise(levels):
            if a.severity == b.severity:
                raise self.error("levels", f"severity {a.severity.value!r} appears twice")
            if op in ("==", "!="):
                raise self.error("levels", f"op {op!r} allows a single level")
            for key, va in a.threshold.values.items():
                vb = b.threshold.values.get(key)
                if vb is not None and not (vb > va if op in (">", ">=") else vb < va):
                    raise self.error("levels", f"{b.severity.value} threshold {vb:g} must be "
                                     f"{'above' if op in ('>', '>=') else 'below'} the "
                                     f"{a.severity.value} threshold {va:g} for op {op!r}")
        return tuple(levels)

    def clear(self, op: str, schedule: tuple[Period, ...], levels: tuple[Level, ...]) -> Threshold:
        if "clear" not in self.table:
            return levels[0].threshold
        clear = self.threshold(self.table["clear"], "clear", schedule)
        if op in (">", ">=", "<", "<="):
            for key, vc in clear.values.items():
                vt = levels[0].threshold.values.get(key)
                if vt is not None and (vc > vt if op in (">", ">=") else vc < vt):
                    raise self.error("clear", f"clear {vc:g} must be on the quiet side of the threshold {vt:g} "
                                     f"({'at or below' if op in ('>', '>=') else 'at or above'} it) for op {op!r}")
        return clear

    def threshold(self, raw: object, key: str, schedule: tuple[Period, ...]) -> Threshold:
        """A number, a zone-class table, or (with a schedule) a period table of numbers or zone tables."""
        if self.is_number(raw):
            return Threshold.constant(float(raw))  # type: ignore[arg-type]
        if not isinstance(raw, dict) or not raw:
            raise self.error(key, "expected a number, or a table by period or zone class")
        values: dict[tuple[str, str], float] = {}
        if schedule:
            names = [p.name for p in schedule]
            for period, sub in raw.items():
                if period not in names:
                    raise self.error(f"{key}.{period}", f"not a period of this rule's schedule ({', '.join(names)})"
                                     + _hint(period, names))
                if self.is_number(sub):
                    values[(period, ANY)] = float(sub)
                else:
                    values.update(self.zone_table(sub, f"{key}.{period}", period))
        else:
            values.update(self.zone_table(raw, key, ANY))
        return Threshold(values)

    def zone_table(self, raw: object, key: str, period: str) -> dict[tuple[str, str], float]:
        if not isinstance(raw, dict) or not raw:
            raise self.error(key, "expected a number or a table of zone class -> number")
        out = {}
        for zone, v in raw.items():
            if zone not in ZONE_KEYS:
                raise self.error(f"{key}.{zone}", f"not a zone class ({', '.join(ZONE_KEYS)})"
                                 + _hint(zone, ZONE_KEYS))
            if not self.is_number(v):
                raise self.error(f"{key}.{zone}", f"expected a number, got {v!r}")
            out[(period, ANY if zone == "default" else zone)] = float(v)
        return out

    def schedule(self) -> tuple[Period, ...]:
        raw = self.table.get("schedule")
        if raw is None:
            return ()
        if not isinstance(raw, dict) or not raw:
            raise self.error("schedule", "expected a table of period = \"HH:MM-HH:MM\"")
        periods = []
        for name, span in raw.items():
            if not _NAME.match(name):
                raise self.error(f"schedule.{name}", "a period name is a plain word such as 'day' or 'night'")
            try:
                start, end = parse_span(span)
            except ValueError as exc:
                raise self.error(f"schedule.{name}", str(exc)) from None
            p = Period(name, start, end)
            for q in periods:
                if overlap(p, q):
                    raise self.error(f"schedule.{name}", f"overlaps period {q.name!r}")
            periods.append(p)
        return tuple(periods)

    def eta_spec(self, op: str) -> EtaSpec | None:
        raw = self.table.get("eta")
        if raw is None:
            return None
        if op not in (">", ">=", "<", "<="):
            raise self.error("eta", "needs op >, >=, < or <= to know which way the value heads")
        target = raw.get("target")
        if not self.is_number(target):
            raise self.error("eta.target", "required: the value whose arrival time to predict")
        window_s = parse_duration(raw.get("window", "15m"))
        return EtaSpec(float(target), window_s, raw.get("min_samples", 3),
                       self.min_span(True, window_s, raw.get("min_span"), key="eta.min_span"))

    def min_span(self, trend: bool, window_s: float, raw: object = None, key: str = "min_span") -> float:
        """How long a trend's samples must span before it has a slope: `min_span`, default a tenth of the window."""
        if key == "min_span":
            raw = self.table.get("min_span")
        if raw is None:
            return window_s * DEFAULT_MIN_SPAN if trend else 0.0
        if not trend:
            raise self.error(key, "only for a trend (aggregate 'slope' or 'eta')")
        span_s = parse_duration(raw)
        if span_s > window_s:
            raise self.error(key, f"{format_duration(span_s)} is longer than the window "
                                  f"({format_duration(window_s)}): no window could ever span it")
        return span_s

    # -- no-data rules -------------------------------------------------------------------------

    def no_data_rule(self, common: dict) -> Rule:
        factor = self.table["no_data"].get("factor")
        severity = Severity(self.table.get("severity", "warning"))
        level = Level(severity, Threshold.constant(float(factor or 0)), common["route"])
        return Rule(**common, aggregate="no_data", levels=(level,),
                    no_data=NoDataSpec(None if factor is None else float(factor)))

    def quality_rule(self, common: dict) -> Rule:
        q = self.table["quality"]
        for_s = parse_duration(q["for"]) if "for" in q else 0.0
        within_s = parse_duration(q["within"]) if "within" in q else 0.0
        count = q.get("count", 0)
        if count and within_s <= 0:
            raise self.error("quality.within", 'count needs a window, e.g. within = "1h"')
        if not count and for_s <= 0:
            raise self.error("quality", 'give for = "30m" (failing without a break) or count and within')
        severity = Severity(self.table.get("severity", "warning"))
        level = Level(severity, Threshold.constant(float(count or for_s)), common["route"])
        return Rule(**common, aggregate="quality", levels=(level,),
                    quality=QualitySpec(frozenset(q["checks"]), for_s, count, within_s))

    # -- small readers -------------------------------------------------------------------------

    def kinds(self) -> frozenset[str] | None:
        raw = self.table.get("kind")
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not items or not all(isinstance(k, str) and k for k in items):
            raise self.error("kind", f"required: a reading kind ({', '.join(KINDS)}), a list of them, or \"*\"")
        if ANY in items:
            return None
        for k in items:
            if k not in KINDS:
                self.warnings.append(f"{self.path}: rule {self.rule_id!r}: key 'kind': {k!r} is not a known "
                                     f"kind{_hint(k, KINDS)}")
        return frozenset(items)

    def selector(self, kinds: frozenset[str] | None) -> Selector:
        raw = self.table.get("select", {})
        tags_raw = raw.get("tags", {})
        tags = []
        for k, v in sorted(tags_raw.items()):
            tags.append((k, None if v == ANY else self.str_set(v, f"select.tags.{k}")))
        zones = self.str_set(raw["zone_class"], "select.zone_class") if "zone_class" in raw else None
        for z in zones or ():
            if z not in ZONE_CLASSES:
                raise self.error("select.zone_class", f"{z!r} is not a zone class ({', '.join(ZONE_CLASSES)})")
        return Selector(
            kinds=kinds,
            districts=self.str_set(raw["district"], "select.district") if "district" in raw else None,
            zone_classes=zones,
            devices=self.str_set(raw["devices"], "select.devices") if "devices" in raw else None,
            models=self.str_set(raw["model"], "select.model") if "model" in raw else None,
            tags=tuple(tags),
        )

    @staticmethod
    def str_set(raw: str | list[str], key: str) -> frozenset[str]:
        return frozenset([raw] if isinstance(raw, str) else raw)

    def labels(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.table.get("labels", {}).items()))

    def duration(self, key: str, default: float) -> float:
        return parse_duration(self.table[key]) if key in self.table else default

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        v = self.table.get(key, default)
        if v < minimum:
            raise self.error(key, f"expected a whole number of at least {minimum}, got {v!r}")
        return v

    def number(self, key: str) -> float | None:
        v = self.table.get(key)
        return None if v is None else float(v)

    def string(self, key: str, default: str) -> str:
        return self.table.get(key, default)

    def name(self, key: str, default: str) -> str:
        return self.table.get(key, default)

    @staticmethod
    def is_number(v: object) -> bool:
        return isinstance(v, int | float) and not (isinstance(v, float) and not math.isfinite(v))


def describe(rule: Rule) -> Mapping[str, str]:
    """One line per rule for `rules check`: what it watches and when it fires."""
    if rule.is_no_data:
        factor = rule.no_data.factor if rule.no_data else None
        what = f"silent > expected interval × {'the engine factor' if factor is None else f'{factor:g}'}"
    elif rule.quality is not None:
        q = rule.quality
        parts = [f"failing for {format_duration(q.for_s)}"] if q.for_s else []
        if q.count:
            parts.append(f"{q.count} times within {format_duration(q.within_s)}")
        what = f"readings {'/'.join(sorted(q.checks))}: " + " or ".join(parts)
    else:
        if rule.aggregate == "eta":
            agg = f"eta({rule.field} → {rule.target:g}, {format_duration(rule.window_s)}) in s"
        elif rule.aggregate == "last":
            agg = rule.field
        else:
            agg = f"{rule.aggregate}({rule.field}, {format_duration(rule.window_s)})"
        what = f"{agg} {rule.op} " + " / ".join(
            f"{lv.threshold.describe()} {lv.severity.value}" for lv in rule.levels)
        extras = []
        if rule.for_s:
            extras.append(f"for {format_duration(rule.for_s)}")
        if rule.clear is not None and rule.clear != rule.levels[0].threshold:
            extras.append(f"clear {rule.clear.describe()}")
        if rule.for_samples > 1:
            extras.append(f"{rule.for_samples} samples")
        if rule.is_trend:
            extras.append(f"slope of ≥ {rule.min_samples} samples over ≥ {format_duration(rule.min_span_s)}")
        if rule.keep_firing_for_s:
            extras.append(f"keep {format_duration(rule.keep_firing_for_s)}")
        if rule.schedule:
            extras.append("schedule " + ",".join(p.name for p in rule.schedule))
        if extras:
            what += " (" + "; ".join(extras) + ")"
    kinds = "*" if rule.select.kinds is None else ",".join(sorted(rule.select.kinds))
    routes = ",".join(dict.fromkeys(lv.route for lv in rule.levels))
    return {"id": rule.id, "kind": kinds, "condition": what, "route": routes, "source": Path(rule.source).name}
