"""`Figures` for one district and kind, and how they are put together from counts — pure, no I/O.

Definitions (the same as the Grafana "figures" dashboard's, see `report.queries`):
online rate = reports that arrived (Σ `online_slot`) ÷ reports expected (Σ range ÷ each registered
device's expected interval); data accuracy = readings judged good ÷ readings; median time to
close = median over cases closed in the range of (case closed − the firing that opened it).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core.device import Device

ALL = "(all)"
"""The district (and kind) of a total row."""


@dataclass(frozen=True, slots=True)
class CaseRow:
    """One case of the alert store: where, when opened and closed (ns), and the firing that opened it."""

    district: str
    kind: str
    opened_ns: int | None
    closed_ns: int | None
    first_alert_ns: int | None


@dataclass(slots=True)
class Figures:
    """The bureau's figures for one (district, kind); rates are None when nothing was expected."""

    district: str
    kind: str
    devices: int = 0
    expected_reports: float = 0.0
    reports: int = 0
    readings: int = 0
    good_readings: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    cases_opened: int = 0
    cases_closed: int = 0
    close_times_s: list[float] = field(default_factory=list)

    @property
    def online_rate(self) -> float | None:
        return self.reports / self.expected_reports if self.expected_reports else None

    @property
    def accuracy_rate(self) -> float | None:
        return self.good_readings / self.readings if self.readings else None

    @property
    def median_close_s(self) -> float | None:
        return statistics.median(self.close_times_s) if self.close_times_s else None

    def add(self, other: Figures) -> None:
        for name in ("devices", "expected_reports", "reports", "readings", "good_readings", "alerts_opened",
                     "alerts_closed", "cases_opened", "cases_closed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.close_times_s.extend(other.close_times_s)


COLUMNS = ("district", "kind", "devices", "expected_reports", "reports", "online_rate", "readings",
           "good_readings", "accuracy_rate", "alerts_opened", "alerts_closed", "cases_opened", "cases_closed",
           "median_close_s")
"""Column order of the printed table and the CSV/xlsx files."""


def row(f: Figures) -> dict[str, object]:
    """One Figures as a flat row in `COLUMNS` order (rates as fractions, None when undefined)."""
    return {c: getattr(f, c) for c in COLUMNS}


def assemble(devices: Iterable[Device], range_s: float, counts: Mapping[tuple[str, str], Mapping[str, float]],
             cases: Iterable[CaseRow], from_ns: int, to_ns: int) -> list[Figures]:
    """Figures per (district, kind), then a total per kind and a grand total.

    `devices`: the registry's non-retired devices (already filtered); `counts`: per (district,
    kind) the query columns reports, readings, good, opened, closed; `cases`: every case, of
    which those opened or closed in [from, to) count.
    """
    by: dict[tuple[str, str], Figures] = {}

    def get(district: str, kind: str) -> Figures:
        f = by.get((district, kind))
        if f is None:
            f = by[(district, kind)] = Figures(district, kind)
        return f

    for d in devices:
        f = get(d.district, d.kind)
        f.devices += 1
        f.expected_reports += range_s / d.expected_interval_s
    for (district, kind), c in counts.items():
        f = get(district, kind)
        f.reports += int(c.get("reports", 0))
        f.readings += int(c.get("readings", 0))
        f.good_readings += int(c.get("good", 0))
        f.alerts_opened += int(c.get("opened", 0))
        f.alerts_closed += int(c.get("closed", 0))
    for case in cases:
        if case.opened_ns is not None and from_ns <= case.opened_ns < to_ns:
            get(case.district, case.kind).cases_opened += 1
        if case.closed_ns is not None and from_ns <= case.closed_ns < to_ns:
            f = get(case.district, case.kind)
            f.cases_closed += 1
            if case.first_alert_ns is not None:
                f.close_times_s.append((case.closed_ns - case.first_alert_ns) / 1e9)
    rows = sorted(by.values(), key=lambda f: (f.kind, f.district))
    totals: dict[str, Figures] = {}
    grand = Figures(ALL, ALL)
    for f in rows:
        totals.setdefault(f.kind, Figures(ALL, f.kind)).add(f)
        grand.add(f)
    out: list[Figures] = []
    for kind in sorted(totals):
        out += [f for f in rows if f.kind == kind]
        if sum(1 for f in rows if f.kind == kind) > 1:
            out.append(totals[kind])
    if len(totals) > 1:
        out.append(grand)
    return out


def clip_to_now(from_ns: int, to_ns: int, now_ns: int) -> int:
    """The end of the period the figures can speak for: `to_ns`, or now when the period runs into
    the future (reports not yet due are not missing). ValueError when the period starts after now."""
    if from_ns >= now_ns:
        raise ValueError("the period starts in the future: nothing was due yet")
    return min(to_ns, now_ns)
