"""What a silence may be: matchers on labels that alerts really carry, and a bounded duration.

A matcher on a misspelt label (`devcie_id=WL-1`) would silence nothing, and one with `!=` everything, while
its author believes the storm is handled; a silence of 400 days outlives everyone who knows why it was set.
`check_silence` refuses both with an error naming the label, its likely spelling and the labels known.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from alerts.errors import AlertsError
from alerts.manager import DEVICE_LABELS, IDENTITY_LABELS
from alerts.matchers import Matcher
from core.timing import format_duration


@dataclass(frozen=True, slots=True)
class SilencePolicy:
    """`known_labels`: every label name an alert can carry (None: not checked); `max_s`: the longest silence."""

    known_labels: frozenset[str] | None
    max_s: float


def known_labels(rule_labels: Iterable[str]) -> frozenset[str]:
    """Label names an alert can carry: the device's registry fields, its identity, and the rules' own labels."""
    return frozenset((*DEVICE_LABELS, *IDENTITY_LABELS, *rule_labels))


def check_silence(matchers: Sequence[Matcher], starts_ns: int, ends_ns: int, policy: SilencePolicy) -> None:
    """Raise `AlertsError` for a silence that ends before it starts, lasts longer than `policy.max_s`, or
    matches on a label no rule or device has."""
    if ends_ns <= starts_ns:
        raise AlertsError("a silence must end after it starts")
    span_s = (ends_ns - starts_ns) / 1e9
    if span_s > policy.max_s:
        raise AlertsError(f"a silence of {format_duration(round(span_s))} is longer than the longest allowed, "
                          f"{format_duration(policy.max_s)} ([alerts] max_silence_s): give a shorter --for or --end, "
                          "and renew it when it runs out")
    known = policy.known_labels
    if known is None:
        return
    unknown = [m for m in matchers if m.name not in known]
    if unknown:
        parts = []
        for m in unknown:
            close = difflib.get_close_matches(m.name, sorted(known), n=1)
            parts.append(f"{m.name!r} (in {m}){f', did you mean {close[0]!r}?' if close else ''}")
        raise AlertsError(f"no rule or device has the label {'; '.join(parts)} — such a matcher would silence "
                          f"nothing (or, negated, everything). Known labels: {', '.join(sorted(known))}")
