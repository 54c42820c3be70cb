"""What the rule state costs in memory, by rule: states held, window entries and bytes (for `/metrics`).

A rule's state is columns (arrays with a row per device it has seen: rules/engine.py,
rules/windows.py) plus, per row, the array of its window entries. Bytes are the columns'
allocated size (`sys.getsizeof`) plus the rows' entry arrays; for a rule with more than
`SAMPLE` rows those are measured on the first `SAMPLE` and scaled, so that a scrape costs
the same for a thousand devices as for a million.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SAMPLE = 1000


@dataclass(frozen=True, slots=True)
class RuleStateStats:
    """One rule's state: `states` (rule, device) rows, `entries` window entries (buckets or points), `bytes`,
    `active` pending or firing alert machines."""

    rule_id: str
    states: int
    entries: int
    bytes: int
    active: int = 0


def sampled(rule_id: str, rows: int, row_cost: Callable[[int], tuple[int, int]], fixed_bytes: int,
            active: int = 0) -> RuleStateStats:
    """Totals over `rows` rows, where `row_cost(row)` gives one row's (entries, bytes of its own arrays) and
    `fixed_bytes` is what the columns hold; sampled above SAMPLE rows."""
    if not rows:
        return RuleStateStats(rule_id, 0, 0, fixed_bytes, active)
    n = min(rows, SAMPLE)
    entries = size = 0
    for row in range(n):
        e, b = row_cost(row)
        entries += e
        size += b
    scale = rows / n
    return RuleStateStats(rule_id, rows, round(entries * scale), round(size * scale) + fixed_bytes, active)
