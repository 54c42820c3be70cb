"""Per-(rule, device) sliding windows with incremental aggregates: O(1) amortised work per sample.

Every window holds the samples with time > newest − window, at most `max_samples` of them
(the oldest go first when a device reports faster than expected). Each sample carries a
weight in seconds, the length of the interval it stands for (time since the device's
previous sample, capped at the device's expected interval; see rules/README.md): mean and
LAeq are weighted by it, `coverage_s` sums it, so "an hourly mean needs 45 minutes of data"
is `coverage_s >= 2700`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque

from rules.trend import theil_sen_slope_ns

_NS = 1_000_000_000
_RESUM_EVERY = 4096


class Window(ABC):
    """Base: keeps (time_ns, weight_s, x) in time order and evicts by age and count, never the newest.

    Each subclass has its own complete `add` (push, then evict) rather than push/pop hooks:
    `add` runs for every sample of every rule, and the hook calls were a third of its cost.
    """

    __slots__ = ("_items", "_max", "_span_ns", "coverage_s")

    def __init__(self, window_s: float, max_samples: int) -> None:
        self._span_ns = int(window_s * _NS)
        self._max = max_samples
        self._items: deque[tuple[int, float, float]] = deque()
        self.coverage_s = 0.0

    @property
    def count(self) -> int:
        return len(self._items)

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        items = self._items
        items.append((time_ns, weight_s, value))
        self.coverage_s += weight_s
        cutoff = time_ns - self._span_ns
        while len(items) > 1 and (items[0][0] <= cutoff or len(items) > self._max):
            self.coverage_s -= items.popleft()[1]

    @abstractmethod
    def value(self) -> float | None:
        """The aggregate over the samples in the window, or None when it has none."""


class LastWindow(Window):
    """The newest value (never evicted); the window only feeds min_samples / min_coverage."""

    __slots__ = ()

    def value(self) -> float | None:
        return self._items[-1][2] if self._items else None


class CountWindow(Window):
    """How many samples the window holds."""

    __slots__ = ()

    def value(self) -> float | None:
        return float(len(self._items))


class MeanWindow(Window):
    """Time-weighted mean Σ wᵢxᵢ / Σ wᵢ from running sums, re-summed exactly now and then to bound drift."""

    __slots__ = ("_since_resum", "_sum_wx")
    _energy = False  # LaeqWindow: average 10^(L/10) instead of the value

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(window_s, max_samples)
        self._sum_wx = 0.0
        self._since_resum = 0

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        x = 10.0 ** (value / 10.0) if self._energy else value
        items = self._items
        items.append((time_ns, weight_s, x))
        self.coverage_s += weight_s
        self._sum_wx += weight_s * x
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._since_resum = 0
            self._sum_wx = math.fsum(w * x for _, w, x in items)
            self.coverage_s = math.fsum(w for _, w, _ in items)
        cutoff = time_ns - self._span_ns
        while len(items) > 1 and (items[0][0] <= cutoff or len(items) > self._max):
            _, w, old = items.popleft()
            self.coverage_s -= w
            self._sum_wx -= w * old

    def value(self) -> float | None:
        if not self._items or self.coverage_s <= 0:
            return None
        return self._sum_wx / self.coverage_s


class LaeqWindow(MeanWindow):
    """Energy average of levels: LAeq = 10·log10( Σ wᵢ·10^(Lᵢ/10) / Σ wᵢ ), never the mean of dB values."""

    __slots__ = ()
    _energy = True

    def value(self) -> float | None:
        mean_energy = super().value()
        if mean_energy is None or mean_energy <= 0:
            return None
        return 10.0 * math.log10(mean_energy)


class ExtremeWindow(Window):
    """Min or max over the window with a monotonic deque (amortised O(1) per sample)."""

    __slots__ = ("_is_max", "_mono")

    def __init__(self, window_s: float, max_samples: int, *, is_max: bool) -> None:
        super().__init__(window_s, max_samples)
        self._is_max = is_max
        self._mono: deque[tuple[int, float]] = deque()

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        items = self._items
        items.append((time_ns, weight_s, value))
        self.coverage_s += weight_s
        mono = self._mono
        if self._is_max:
            while mono and mono[-1][1] <= value:
                mono.pop()
        else:
            while mono and mono[-1][1] >= value:
                mono.pop()
        mono.append((time_ns, value))
        cutoff = time_ns - self._span_ns
        while len(items) > 1 and (items[0][0] <= cutoff or len(items) > self._max):
            old_ns, w, _ = items.popleft()
            self.coverage_s -= w
            if mono and mono[0][0] <= old_ns:
                mono.popleft()

    def value(self) -> float | None:
        return self._mono[0][1] if self._mono else None


class RateWindow(Window):
    """Change per `per_s` between the oldest and newest sample in the window, over their real time span."""

    __slots__ = ("_per_s",)

    def __init__(self, window_s: float, max_samples: int, *, per_s: float) -> None:
        super().__init__(window_s, max_samples)
        self._per_s = per_s

    def value(self) -> float | None:
        items = self._items
        if len(items) < 2:
            return None
        (t0, _, v0), (t1, _, v1) = items[0], items[-1]
        return (v1 - v0) / ((t1 - t0) / _NS) * self._per_s


class TrendWindow(Window):
    """A bounded ring of (t, v) for Theil–Sen: the slope is computed on demand, O(n²) in the bounded n.

    `_flat` counts the newest samples in a row with the very same finite value: once it covers
    the whole window every pairwise slope is 0.0, and so is their median, without the O(n²)
    work. That is the usual case of a water-level sensor on a dry road. Times and values are
    also kept in deques of their own, which numpy reads without a Python loop.
    """

    __slots__ = ("_flat", "_times", "_values")

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(window_s, max_samples)
        self._flat = 0
        self._times: deque[int] = deque()
        self._values: deque[float] = deque()

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        items = self._items
        if self._flat and _same(items[-1][2], value):
            self._flat += 1
        else:
            self._flat = 1 if math.isfinite(value) else 0
        items.append((time_ns, weight_s, value))
        self._times.append(time_ns)
        self._values.append(value)
        self.coverage_s += weight_s
        cutoff = time_ns - self._span_ns
        while len(items) > 1 and (items[0][0] <= cutoff or len(items) > self._max):
            self.coverage_s -= items.popleft()[1]
            self._times.popleft()
            self._values.popleft()

    def slope_per_s(self) -> float | None:
        items = self._items
        if len(items) < 2:
            return None
        t_last = items[-1][0]
        if self._flat >= len(items) and items[0][0] < t_last:
            return 0.0  # what theil_sen_slope returns here: (v - v) / dt for every pair with dt > 0
        return theil_sen_slope_ns(self._times, self._values)

    @property
    def last(self) -> float | None:
        return self._items[-1][2] if self._items else None

    def value(self) -> float | None:
        return self.slope_per_s()


def _same(a: float, b: float) -> bool:
    """Equal and of the same sign, so that 0.0 and -0.0 (whose differences differ in sign) do not count as one."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def make_window(aggregate: str, window_s: float, max_samples: int, per_s: float = 1.0) -> Window:
    """The window class that computes `aggregate`."""
    if aggregate == "last":
        return LastWindow(window_s, max_samples)
    if aggregate == "count":
        return CountWindow(window_s, max_samples)
    if aggregate == "mean":
        return MeanWindow(window_s, max_samples)
    if aggregate == "laeq":
        return LaeqWindow(window_s, max_samples)
    if aggregate in ("min", "max"):
        return ExtremeWindow(window_s, max_samples, is_max=aggregate == "max")
    if aggregate == "rate":
        return RateWindow(window_s, max_samples, per_s=per_s)
    if aggregate in ("slope", "eta"):
        return TrendWindow(window_s, max_samples)
    raise ValueError(f"unknown aggregate {aggregate!r}")
