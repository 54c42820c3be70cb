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
from collections import deque

from rules.trend import theil_sen_slope

_NS = 1_000_000_000
_RESUM_EVERY = 4096


class Window:
    """Base: keeps (time_ns, weight_s, x) in time order and evicts by age and count, never the newest."""

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
        self._push(time_ns, value, weight_s)
        cutoff = time_ns - self._span_ns
        items = self._items
        while len(items) > 1 and (items[0][0] <= cutoff or len(items) > self._max):
            self._pop(items.popleft())

    def _push(self, time_ns: int, value: float, weight_s: float) -> None:
        self._items.append((time_ns, weight_s, value))
        self.coverage_s += weight_s

    def _pop(self, item: tuple[int, float, float]) -> None:
        self.coverage_s -= item[1]

    def value(self) -> float | None:
        raise NotImplementedError


class LastWindow(Window):
    """The newest value; the window only feeds min_samples / min_coverage."""

    __slots__ = ("_last",)

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(window_s, max_samples)
        self._last: float | None = None

    def _push(self, time_ns: int, value: float, weight_s: float) -> None:
        super()._push(time_ns, value, weight_s)
        self._last = value

    def value(self) -> float | None:
        return self._last


class CountWindow(Window):
    """How many samples the window holds."""

    __slots__ = ()

    def value(self) -> float | None:
        return float(len(self._items))


class MeanWindow(Window):
    """Time-weighted mean Σ wᵢxᵢ / Σ wᵢ from running sums, re-summed exactly now and then to bound drift."""

    __slots__ = ("_since_resum", "_sum_wx")

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(window_s, max_samples)
        self._sum_wx = 0.0
        self._since_resum = 0

    def _transform(self, value: float) -> float:
        return value

    def _push(self, time_ns: int, value: float, weight_s: float) -> None:
        x = self._transform(value)
        self._items.append((time_ns, weight_s, x))
        self.coverage_s += weight_s
        self._sum_wx += weight_s * x
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._since_resum = 0
            self._sum_wx = math.fsum(w * x for _, w, x in self._items)
            self.coverage_s = math.fsum(w for _, w, _ in self._items)

    def _pop(self, item: tuple[int, float, float]) -> None:
        self.coverage_s -= item[1]
        self._sum_wx -= item[1] * item[2]

    def value(self) -> float | None:
        if not self._items or self.coverage_s <= 0:
            return None
        return self._sum_wx / self.coverage_s


class LaeqWindow(MeanWindow):
    """Energy average of levels: LAeq = 10·log10( Σ wᵢ·10^(Lᵢ/10) / Σ wᵢ ), never the mean of dB values."""

    __slots__ = ()

    def _transform(self, value: float) -> float:
        return 10.0 ** (value / 10.0)

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

    def _push(self, time_ns: int, value: float, weight_s: float) -> None:
        super()._push(time_ns, value, weight_s)
        mono = self._mono
        if self._is_max:
            while mono and mono[-1][1] <= value:
                mono.pop()
        else:
            while mono and mono[-1][1] >= value:
                mono.pop()
        mono.append((time_ns, value))

    def _pop(self, item: tuple[int, float, float]) -> None:
        super()._pop(item)
        if self._mono and self._mono[0][0] <= item[0]:
            self._mono.popleft()

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
    """A bounded ring of (t, v) for Theil–Sen: the slope is computed on demand, O(n²) in the bounded n."""

    __slots__ = ()

    def slope_per_s(self) -> float | None:
        items = self._items
        if len(items) < 2:
            return None
        t_last = items[-1][0]
        return theil_sen_slope([(t - t_last) / _NS for t, _, _ in items], [v for _, _, v in items])

    @property
    def last(self) -> float | None:
        return self._items[-1][2] if self._items else None

    def value(self) -> float | None:
        return self.slope_per_s()


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
