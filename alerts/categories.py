"""The case category table (alerts/case_categories.toml): which city-management category a case gets."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.errors import AlertsError

DEFAULT_TABLE = Path(__file__).with_name("case_categories.toml")


@dataclass(slots=True, frozen=True)
class CaseCategory:
    """A category in one edition; `code` is None when that edition has no such category."""

    key: str
    name: str
    group: str
    cls: str
    code: str | None
    edition: str
    standard: str


@dataclass(slots=True, frozen=True)
class CategoryTable:
    editions: dict[str, tuple[str, int]]
    categories: dict[str, dict[str, str]]
    kind_defaults: dict[str, str]

    def get(self, key: str, edition: str) -> CaseCategory:
        if edition not in self.editions:
            raise AlertsError(f"unknown case classification edition {edition!r} (known: {sorted(self.editions)})")
        row = self.categories.get(key)
        if row is None:
            raise AlertsError(f"unknown case category {key!r} (known: {', '.join(sorted(self.categories))})")
        standard, _ = self.editions[edition]
        return CaseCategory(key, row["name"], row.get("group", ""), row.get("class", "event"),
                            row.get(edition) or None, edition, standard)

    def for_alert(self, labels: Mapping[str, str], kind: str, edition: str) -> CaseCategory | None:
        """The rule's `case_category` label, else the device kind's default; None when neither says."""
        key = labels.get("case_category") or self.kind_defaults.get(kind)
        return self.get(key, edition) if key else None


def load_categories(path: str | Path | None = None) -> CategoryTable:
    """Read and check a category table; errors name the file and the entry."""
    p = Path(path) if path else DEFAULT_TABLE
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AlertsError(f"{p}: case category table not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise AlertsError(f"{p}: not valid TOML: {exc}") from None
    return _check(data, str(p))


def _check(data: dict[str, Any], source: str) -> CategoryTable:
    editions: dict[str, tuple[str, int]] = {}
    for name, ed in data.get("editions", {}).items():
        if not isinstance(ed, dict) or not isinstance(ed.get("digits"), int):
            raise AlertsError(f"{source}: editions.{name}: needs standard = \"...\" and digits = <n>")
        editions[name] = (str(ed.get("standard", name)), ed["digits"])
    if not editions:
        raise AlertsError(f"{source}: no [editions.<name>] tables")
    categories: dict[str, dict[str, str]] = {}
    for key, row in data.get("categories", {}).items():
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise AlertsError(f"{source}: categories.{key}: needs a name")
        for ed, (_, digits) in editions.items():
            code = row.get(ed, "")
            if not isinstance(code, str) or (code and not (code.isdigit() and len(code) == digits)):
                raise AlertsError(f"{source}: categories.{key}.{ed}: expected {digits} digits or \"\", got {code!r}")
        categories[key] = {k: str(v) for k, v in row.items()}
    kind_defaults = {str(k): str(v) for k, v in data.get("kind_defaults", {}).items()}
    for kind, key in kind_defaults.items():
        if key not in categories:
            raise AlertsError(f"{source}: kind_defaults.{kind}: unknown category {key!r}")
    return CategoryTable(editions, categories, kind_defaults)


def missing_codes(table: CategoryTable, edition: str, keys: Iterable[str], *, receiver: str) -> list[str]:
    """A warning per category in `keys` that has no code in `edition`: such a case would go out with
    `"code": null`. Each names the setting to change and the code the city must fill in."""
    out = []
    for key in sorted(set(keys)):
        row = table.categories.get(key)
        if row is None or row.get(edition):
            continue
        others = ", ".join(f"{ed} = {row[ed]!r}" for ed in table.editions if ed != edition and row.get(ed))
        standard = table.editions[edition][0]
        out.append(f"alerts.receivers.{receiver}: case category {key!r} ({row['name']}) has no code in edition "
                   f"{edition!r} ({standard}); cases of it are sent without a code. Fill in the city's "
                   f"{table.editions[edition][1]}-digit code as `{edition} = \"…\"` under [categories.{key}] in a "
                   f"copy of the category table named by alerts.receivers.{receiver}.categories_file"
                   + (f", or set alerts.receivers.{receiver}.edition (this table has {others})" if others else ""))
    return out
