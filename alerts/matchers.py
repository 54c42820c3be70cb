"""Label matchers for silences and inhibition, in Alertmanager's four forms: `=`, `!=`, `=~`, `!~`.

A missing label matches as the empty string; regular expressions match the whole value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerts.errors import AlertsError

OPS = ("=~", "!~", "!=", "=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


@dataclass(slots=True, frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"

    def to_json(self) -> list[str]:
        return [self.name, self.op, self.value]


def parse_matcher(text: str) -> Matcher:
    """`district=朝阳区`, `rule_id=~noise_.*`, `severity!=info` → a `Matcher`, or an `AlertsError`."""
    for op in OPS:
        name, sep, value = text.partition(op)
        if sep and "=" not in name and "!" not in name:
            name = name.strip()
            if not _NAME.fullmatch(name):
                raise AlertsError(f"matcher {text!r}: label name {name!r} is not a valid name")
            value = value.strip().strip('"')
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise AlertsError(f"matcher {text!r}: bad regular expression: {exc}") from None
            return Matcher(name, op, value)
    raise AlertsError(f"matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex")


def matchers_from_json(items: Iterable[Iterable[str]]) -> tuple[Matcher, ...]:
    return tuple(Matcher(*item) for item in items)


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
