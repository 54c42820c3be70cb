"""The shape of a `[[rule]]` table, validated with pydantic: keys, types, names, durations, enums.

Every structural problem of a rule is reported at once, each naming its dotted key; what needs
more than one key (levels in order, `clear` on the quiet side, a window for an aggregate, an
`eta` op, overlapping schedule periods, thresholds by zone class or period) is checked after
this by `rules.loader`, on a table whose shape is known to be right.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from core.timing import parse_duration

_ID = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

QUALITY_CHECKS = ("range", "spike", "stuck", "flat_zero", "install")
"""The check names of decoders/quality (kept in step by tests/test_quality_judge.py)."""
QualityCheck = Literal["range", "spike", "stuck", "flat_zero", "install"]
Aggregate = Literal["last", "mean", "min", "max", "count", "rate", "laeq", "slope", "eta"]
Op = Literal[">", ">=", "<", "<=", "==", "!="]
SeverityName = Literal["info", "warning", "critical"]


def _duration(value: object) -> float:
    return parse_duration(value)


_ID_FORM = "lowercase letters, digits, '.', '_' or '-', e.g. 'water.depth'"


def _rule_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(_ID_FORM)
    return value


def _plain_name(value: str) -> str:
    if not _NAME.match(value.replace("-", "_")):
        raise ValueError(f"expected a plain name such as 'case' or 'emergency', got {value!r}")
    return value


def _field_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"expected a reading field name such as 'laeq_db', got {value!r}")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
RuleId = Annotated[str, AfterValidator(_rule_id)]
PlainName = Annotated[str, AfterValidator(_plain_name)]
FieldName = Annotated[str, AfterValidator(_field_name)]
Strings = str | list[str]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, protected_namespaces=())


class SelectTable(_Table):
    """`select = { ... }`: which devices of the kinds the rule watches."""

    district: Strings | None = None
    zone_class: Strings | None = None
    devices: Strings | None = None
    model: Strings | None = None
    tags: dict[str, Strings] = Field(default_factory=dict)


class EtaTable(_Table):
    """`eta = { target, window, min_samples, min_span }`: also predict when the value reaches `target`."""

    target: float | None = None
    window: Duration = 900.0
    min_samples: int = Field(3, ge=2)
    min_span: Duration | None = None


class LevelTable(_Table):
    """One `[[rule.levels]]`: a severity and its threshold (and route)."""

    severity: SeverityName
    threshold: Any
    route: PlainName | None = None


class NoDataTable(_Table):
    """`no_data = { factor = 3 }`: silent after the device's expected interval × factor."""

    factor: float | None = Field(None, gt=0)


class _RuleTable(_Table):
    id: RuleId
    description: str = ""
    enabled: bool = True
    kind: Strings | None = None
    select: SelectTable = Field(default_factory=SelectTable)
    severity: SeverityName = "warning"
    route: PlainName = "webhook"
    labels: dict[str, str] = Field(default_factory=dict)
    timezone: str | None = None


class ValueRuleTable(_RuleTable):
    """A rule on a reading field's value, aggregate or trend."""

    field: FieldName
    aggregate: Aggregate = "last"
    window: Duration = 0.0
    per: Duration = 1.0
    target: float | None = None
    direction: Literal["rising", "falling"] = "rising"
    min_samples: int | None = Field(None, ge=1)
    min_span: Duration | None = None
    min_coverage: Duration = 0.0
    max_samples: int | None = Field(None, ge=1)
    resolution: Duration | None = None
    op: Op | None = None
    threshold: Any = None
    levels: list[LevelTable] | None = Field(None, min_length=1)
    clear: Any = None
    for_: Duration = Field(0.0, alias="for")
    for_samples: int = Field(1, ge=1)
    keep_firing_for: Duration = 0.0
    schedule: dict[str, str] | None = None
    eta: EtaTable | None = None
    ignore_bad: bool = True


class QualityTable(_Table):
    """`quality = { checks, for | count + within }`: which failed checks, for how long or how often."""

    checks: list[QualityCheck] = Field(min_length=1)
    for_: Duration = Field(0.0, alias="for")
    count: int = Field(0, ge=0)
    within: Duration = 0.0


class QualityRuleTable(_RuleTable):
    """A maintenance rule on reading quality (rules/quality.py)."""

    quality: QualityTable


class NoDataRuleTable(_RuleTable):
    """A rule that fires when a device stops reporting."""

    no_data: NoDataTable


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def hint(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a likely typo of one of `choices`, else ""."""
    options = sorted(choices)
    close = [c for c in options if c.startswith(word) and len(word) >= 3]
    close = close or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose table holds the key at `loc` (for the keys it allows)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        info = next((i for n, i in model.model_fields.items() if (i.alias or n) == part), None)
        if info is None:
            return None
        sub = next((a for a in _nested(info.annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model


def _nested(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", ()) or ()
    return [annotation, *[x for a in args for x in _nested(a)]]


def _words(expected: str) -> str:
    return expected.replace("'", "").replace(" or ", ", ")


def describe(err: ErrorDetails, model: type[BaseModel]) -> tuple[str, str]:
    """(dotted key, message) for one pydantic error of a rule table."""
    loc = tuple(err["loc"])
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    kind, got, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    name = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        if model is NoDataRuleTable and len(loc) == 1 and name in _keys(ValueRuleTable):
            return key, "not allowed in a no_data rule"
        if model is QualityRuleTable and len(loc) == 1 and name in _keys(ValueRuleTable):
            return key, "not allowed in a quality rule"
        where = _model_at(model, loc)
        return key, "unknown key" + (hint(name, _keys(where)) if where else "")
    if kind == "missing":
        return key, f"required: {_ID_FORM}" if key == "id" else "required"
    if kind == "literal_error":
        return key, f"must be one of {_words(str(ctx.get('expected', '')))}" + hint(str(got), _words(
            str(ctx.get("expected", ""))).split(", "))
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        what = "a whole number" if isinstance(got, int) and not isinstance(got, bool) else "a number"
        side = "of at least" if kind == "greater_than_equal" else "above"
        return key, f"expected {what} {side} {bound}, got {got!r}"
    if kind == "too_short":
        return key, "expected at least one entry"
    if kind == "value_error":
        return key, str(ctx.get("error", err["msg"]))
    words = {"string_type": "a string", "bool_type": "true or false", "int_type": "a whole number",
             "float_type": "a number", "finite_number": "a finite number", "dict_type": "a table",
             "model_type": "a table", "list_type": "a list"}
    if kind in words:
        return key, f"expected {words[kind]}, got {got!r}"
    return key, f"{err['msg']}, got {got!r}"


def validate_table(table: dict[str, Any]) -> tuple[BaseModel | None, list[tuple[str, str]]]:
    """The table as a `ValueRuleTable`, `NoDataRuleTable` or `QualityRuleTable`, or every (key, message)
    wrong with it."""
    model: type[BaseModel] = (NoDataRuleTable if "no_data" in table else QualityRuleTable if "quality" in table
                              else ValueRuleTable)
    try:
        return model.model_validate(table), []
    except ValidationError as exc:
        return None, [describe(e, model) for e in exc.errors()]

