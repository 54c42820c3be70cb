"""What the rule state costs in memory, by rule: states held, window entries and bytes (for `/metrics`).

Bytes are `sys.getsizeof` of each (rule, device) state's objects (the state with its alert
machine, its windows and their arrays) plus its share of the rule's dict; for a rule with
more than `SAMPLE` states they are measured on the first `SAMPLE` and scaled, so that a
scrape costs the same for a thousand devices as for a million.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SAMPLE = 1000


@dataclass(frozen=True, slots=True)
class RuleStateStats:
    """One rule's state: `states` (rule, device) pairs, `entries` window entries (buckets or points), `bytes`."""

    rule_id: str
    states: int
    entries: int
    bytes: int


def measure(rule_id: str, states: Mapping[str, Any], sizeof: Callable[[Any], tuple[int, int]]) -> RuleStateStats:
    """Totals over `states`, where `sizeof(state)` gives one state's (entries, bytes); sampled above SAMPLE."""
    n = len(states)
    if not n:
        return RuleStateStats(rule_id, 0, 0, sys.getsizeof(states))
    sample = list(itertools.islice(states.values(), SAMPLE))
    entries = size = 0
    for state in sample:
        e, b = sizeof(state)
        entries += e
        size += b
    scale = n / len(sample)
    return RuleStateStats(rule_id, n, round(entries * scale), round(size * scale) + sys.getsizeof(states))
