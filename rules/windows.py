"""Per-(rule, device) sliding windows with incremental aggregates, in compact arrays of bounded size.

Every window holds the samples with time > newest − window (never fewer than the newest
one). Each sample carries a weight in seconds, the length of the interval it stands for
(time since the device's previous sample, capped at the device's expected interval; see
rules/README.md): mean and LAeq are weighted by it, `coverage_s` sums it, so "an hourly
mean needs 45 minutes of data" is `coverage_s >= 2700`.

Two layouts, neither holding a Python object per sample:

* **Buckets** (last, count, mean, laeq, min, max): one entry per `resolution_s` time bucket
  that has samples, a running aggregate of them (count, Σw, Σw·x — energy for LAeq — and
  for min/max the bucket's extreme) stamped with the time of its newest sample. A window
  holds at most window / resolution + 1 entries, however often a device reports; an entry
  leaves when its newest sample is out of the window, so the window may also count up to
  one resolution of samples older than it (exact when a bucket holds one sample — e.g.
  5-minute reports into 2.5-minute buckets — and always with `resolution_s = 0`).
* **Points** (rate, slope, eta): every sample (time, weight, value), at most `max_samples`.

Time in int64 nanoseconds (`array('q')`), numbers in float64 (`array('d')`): an entry costs
8 bytes per column.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from array import array

from rules.model import BUCKETED_AGGREGATES
from rules.trend import theil_sen_slope_ns

_NS = 1_000_000_000
_RESUM_EVERY = 4096


class Window(ABC):
    """A window's contract: `add` a sample, read `value()`, `count` (samples), `coverage_s` (Σ weights)."""

    __slots__ = ("coverage_s",)

    @property
    @abstractmethod
    def entries(self) -> int:
        """Entries held (buckets or points): what memory follows."""

    @property
    @abstractmethod
    def count(self) -> int:
        """Samples in the window."""

    @abstractmethod
    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        """Take a sample newer than every earlier one (the engine drops late ones first)."""

    @abstractmethod
    def value(self) -> float | None:
        """The aggregate over the samples in the window, or None when it has none."""

    def nbytes(self) -> int:
        """Bytes held: the object and its arrays."""
        return sys.getsizeof(self)


class _Series(Window):
    """Entries in arrays from index `_head` on, `_t` holding each entry's newest time.

    The oldest entries leave by moving `_head`; the arrays are cut only once the dead prefix
    is a quarter of them (`_compact`), so eviction is O(1) amortised, not a memmove a sample.
    """

    __slots__ = ("_head", "_max", "_span_ns", "_t")

    def __init__(self, window_s: float, max_samples: int) -> None:
        self._span_ns = _shared(int(window_s * _NS))
        self._max = max_samples
        self._t = array("q")  # per entry: the time of its newest sample
        self._head = 0
        self.coverage_s = 0.0

    @property
    def entries(self) -> int:
        return len(self._t) - self._head

    def nbytes(self) -> int:
        return sys.getsizeof(self) + sum(sys.getsizeof(getattr(self, name)) for name in self._arrays())

    def _arrays(self) -> tuple[str, ...]:
        return ("_t",)

    def _expire(self, time_ns: int) -> None:
        """Let the oldest entries go (out of the window or over the cap, never the newest), then compact."""
        t = self._t
        cutoff = time_ns - self._span_ns
        last = len(t) - 1
        h = self._head
        limit = self._max
        while h < last and (t[h] <= cutoff or last + 1 - h > limit):
            self._forget(h)
            h += 1
        self._head = h
        if h > 1 and 4 * h > len(t):
            self._compact(h)

    @abstractmethod
    def _forget(self, i: int) -> None:
        """Subtract entry `i` from the running aggregates: it is leaving."""

    def _compact(self, h: int) -> None:
        """Cut the `h` dead entries off the front of every array."""
        del self._t[:h]
        self._head = 0


class _Buckets(_Series):
    """Entries of `_STRIDE` float64 columns in `_c`: count, Σw, then what the subclass adds.

    `_res_ns` is the bucket width (1 ns for an exact window: times strictly increase, so
    no two samples share a bucket) and `_key` the newest entry's bucket number.
    """

    __slots__ = ("_c", "_key", "_n", "_res_ns")
    _STRIDE = 2

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        super().__init__(window_s, max_samples)
        self._res_ns = _shared(max(1, int(resolution_s * _NS)))
        self._key = -1
        self._c = array("d")
        self._n = 0.0  # samples (a float: it is summed from the count column)

    @property
    def count(self) -> int:
        return int(self._n)

    def _arrays(self) -> tuple[str, ...]:
        return ("_t", "_c")

    def _forget(self, i: int) -> None:
        c = self._c
        i *= self._STRIDE
        self._n -= c[i]
        self.coverage_s -= c[i + 1]

    def _compact(self, h: int) -> None:
        del self._c[:h * self._STRIDE]
        super()._compact(h)

    def _add_counted(self, time_ns: int, weight_s: float) -> None:
        """Count a sample and its weight into the newest bucket or a new one (last and count windows)."""
        key = time_ns // self._res_ns
        c = self._c
        t = self._t
        if key == self._key:
            t[-1] = time_ns
            c[-2] += 1.0
            c[-1] += weight_s
        else:
            self._key = key
            t.append(time_ns)
            c.append(1.0)
            c.append(weight_s)
        self._n += 1
        self.coverage_s += weight_s
        if t[self._head] <= time_ns - self._span_ns or len(t) - self._head > self._max:
            self._expire(time_ns)


class LastWindow(_Buckets):
    """The newest value (never evicted); the window only feeds min_samples / min_coverage."""

    __slots__ = ("_last",)

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        super().__init__(window_s, max_samples, resolution_s)
        self._last: float | None = None

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        self._last = value
        self._add_counted(time_ns, weight_s)

    def value(self) -> float | None:
        return self._last


class LatestOnly(Window):
    """A `last` rule without a window: the newest sample alone, two fields and no arrays."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: float | None = None
        self.coverage_s = 0.0

    @property
    def entries(self) -> int:
        return 0 if self._last is None else 1

    @property
    def count(self) -> int:
        return 0 if self._last is None else 1

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        self._last = value
        self.coverage_s = weight_s

    def value(self) -> float | None:
        return self._last


class CountWindow(_Buckets):
    """How many samples the window holds."""

    __slots__ = ()

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        self._add_counted(time_ns, weight_s)

    def value(self) -> float | None:
        return float(self._n)


class MeanWindow(_Buckets):
    """Time-weighted mean Σ wᵢxᵢ / Σ wᵢ from running sums, re-summed exactly now and then to bound drift."""

    __slots__ = ("_since_resum", "_sum_wx")
    _STRIDE = 3  # count, Σw, Σw·x
    _energy = False  # LaeqWindow: average 10^(L/10) instead of the value

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        super().__init__(window_s, max_samples, resolution_s)
        self._sum_wx = 0.0
        self._since_resum = 0

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        wx = weight_s * (10.0 ** (value / 10.0) if self._energy else value)
        key = time_ns // self._res_ns
        c = self._c
        t = self._t
        if key == self._key:
            t[-1] = time_ns
            c[-3] += 1.0
            c[-2] += weight_s
            c[-1] += wx
        else:
            self._key = key
            t.append(time_ns)
            c.append(1.0)
            c.append(weight_s)
            c.append(wx)
        self._n += 1
        self.coverage_s += weight_s
        self._sum_wx += wx
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._since_resum = 0
            live = c[self._head * 3:]
            self._sum_wx = math.fsum(live[2::3])
            self.coverage_s = math.fsum(live[1::3])
        h = self._head
        cutoff = time_ns - self._span_ns
        if t[h] <= cutoff or len(t) - h > self._max:  # _expire, inlined: this runs for most readings
            last = len(t) - 1
            while h < last and (t[h] <= cutoff or last + 1 - h > self._max):
                i = 3 * h
                self._n -= c[i]
                self.coverage_s -= c[i + 1]
                self._sum_wx -= c[i + 2]
                h += 1
            self._head = h
            if h > 1 and 4 * h > len(t):
                self._compact(h)

    def _forget(self, i: int) -> None:
        c = self._c
        i *= 3
        self._n -= c[i]
        self.coverage_s -= c[i + 1]
        self._sum_wx -= c[i + 2]

    def value(self) -> float | None:
        if not self._n or self.coverage_s <= 0:
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


class ExtremeWindow(_Buckets):
    """Min or max over the window with a monotonic queue of (time, value), at most one item per bucket.

    A sample dominated by a later one in the same bucket can never be the extreme again (the
    bucket leaves as a whole), so the queue is bounded by the entries, not by the samples.
    """

    __slots__ = ("_is_max", "_mh", "_mt", "_mv")

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0, *, is_max: bool) -> None:
        super().__init__(window_s, max_samples, resolution_s)
        self._is_max = is_max
        self._mt = array("q")
        self._mv = array("d")
        self._mh = 0  # the queue's head, as `_head` for the entries

    def _arrays(self) -> tuple[str, ...]:
        return ("_t", "_c", "_mt", "_mv")

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        key = time_ns // self._res_ns
        c = self._c
        t = self._t
        merged = key == self._key
        if merged:
            t[-1] = time_ns
            c[-2] += 1.0
            c[-1] += weight_s
        else:
            self._key = key
            t.append(time_ns)
            c.append(1.0)
            c.append(weight_s)
        self._n += 1
        self.coverage_s += weight_s
        mt, mv = self._mt, self._mv
        mh = self._mh
        if self._is_max:
            while len(mv) > mh and mv[-1] <= value:
                mt.pop()
                mv.pop()
        else:
            while len(mv) > mh and mv[-1] >= value:
                mt.pop()
                mv.pop()
        if not (merged and len(mv) > mh and (len(t) - self._head < 2 or mt[-1] > t[-2])):
            mt.append(time_ns)  # (else a sample of the same bucket dominates it, and leaves with it)
            mv.append(value)
        if t[self._head] <= time_ns - self._span_ns or len(t) - self._head > self._max:
            self._expire(time_ns)

    def _forget(self, i: int) -> None:
        super()._forget(i)
        out_ns = self._t[i]
        mt = self._mt
        mh = self._mh
        while mt[mh] <= out_ns:  # the newest sample (or a bucket-mate) stays: the queue never empties
            mh += 1
        self._mh = mh

    def _compact(self, h: int) -> None:
        super()._compact(h)
        mh = self._mh
        if mh:
            del self._mt[:mh]
            del self._mv[:mh]
            self._mh = 0

    def value(self) -> float | None:
        return self._mv[self._mh] if len(self._mv) > self._mh else None


class _Points(_Series):
    """Every sample kept: times in `_t`, weights in `_w`, values in `_v` (at most `max_samples`)."""

    __slots__ = ("_v", "_w")

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(window_s, max_samples)
        self._w = array("d")
        self._v = array("d")

    @property
    def count(self) -> int:
        return len(self._t)

    def _arrays(self) -> tuple[str, ...]:
        return ("_t", "_w", "_v")

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        t = self._t
        t.append(time_ns)
        self._w.append(weight_s)
        self._v.append(value)
        self.coverage_s += weight_s
        if t[0] <= time_ns - self._span_ns or len(t) > self._max:
            self._expire(time_ns)
            if self._head:  # kept contiguous from index 0: Theil–Sen reads the arrays as they are
                self._compact(self._head)

    def _forget(self, i: int) -> None:
        self.coverage_s -= self._w[i]

    def _compact(self, h: int) -> None:
        del self._w[:h]
        del self._v[:h]
        super()._compact(h)


class RateWindow(_Points):
    """Change per `per_s` between the oldest and newest sample in the window, over their real time span."""

    __slots__ = ("_per_s",)

    def __init__(self, window_s: float, max_samples: int, *, per_s: float) -> None:
        super().__init__(window_s, max_samples)
        self._per_s = per_s

    def value(self) -> float | None:
        t = self._t
        if len(t) < 2:
            return None
        v = self._v
        return (v[-1] - v[0]) / ((t[-1] - t[0]) / _NS) * self._per_s


class TrendWindow(_Points):
    """A bounded series of (t, v) for Theil–Sen: the slope is computed on demand, O(n²) in the bounded n.

    `_flat` counts the newest samples in a row with the very same finite value: once it covers
    the whole window every pairwise slope is 0.0, and so is their median, without the O(n²)
    work. That is the usual case of a water-level sensor on a dry road.
    """

    __slots__ = ("_flat",)

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(window_s, max_samples)
        self._flat = 0

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        if self._flat and _same(self._v[-1], value):
            self._flat += 1
        else:
            self._flat = 1 if math.isfinite(value) else 0
        super().add(time_ns, value, weight_s)

    def slope_per_s(self) -> float | None:
        t = self._t
        if len(t) < 2:
            return None
        if self._flat >= len(t) and t[0] < t[-1]:
            return 0.0  # what theil_sen_slope returns here: (v - v) / dt for every pair with dt > 0
        return theil_sen_slope_ns(t, self._v)

    @property
    def last(self) -> float | None:
        return self._v[-1] if self._v else None

    def value(self) -> float | None:
        return self.slope_per_s()


def _shared(n: int) -> int:
    """One int object per distinct window length or resolution, not one per window (32 bytes each)."""
    return _INTS.setdefault(n, n)


_INTS: dict[int, int] = {}


def _same(a: float, b: float) -> bool:
    """Equal and of the same sign, so that 0.0 and -0.0 (whose differences differ in sign) do not count as one."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def make_window(aggregate: str, window_s: float, max_samples: int, per_s: float = 1.0,
                resolution_s: float = 0.0) -> Window:
    """The window that computes `aggregate`; `resolution_s` > 0 buckets it (BUCKETED_AGGREGATES only)."""
    if resolution_s and aggregate not in BUCKETED_AGGREGATES:
        raise ValueError(f"aggregate {aggregate!r} keeps its points: it takes no resolution")
    if aggregate == "last":
        return LatestOnly() if window_s <= 0 else LastWindow(window_s, max_samples, resolution_s)
    if aggregate == "count":
        return CountWindow(window_s, max_samples, resolution_s)
    if aggregate == "mean":
        return MeanWindow(window_s, max_samples, resolution_s)
    if aggregate == "laeq":
        return LaeqWindow(window_s, max_samples, resolution_s)
    if aggregate in ("min", "max"):
        return ExtremeWindow(window_s, max_samples, resolution_s, is_max=aggregate == "max")
    if aggregate == "rate":
        return RateWindow(window_s, max_samples, per_s=per_s)
    if aggregate in ("slope", "eta"):
        return TrendWindow(window_s, max_samples)
    raise ValueError(f"unknown aggregate {aggregate!r}")


def entry_cap(aggregate: str, window_s: float, max_samples: int, resolution_s: float = 0.0) -> int:
    """The most entries a window can hold however often its device reports (a min/max window's
    monotonic queue holds at most as many again).

    A bucketed window's entries are distinct buckets whose newest sample is inside the window:
    at most ⌈window / resolution⌉ + 1 of them. A window of points holds at most `max_samples`.
    """
    if aggregate == "last" and window_s <= 0:
        return 1
    if aggregate in BUCKETED_AGGREGATES and resolution_s > 0:
        return min(max_samples, math.ceil(window_s / resolution_s) + 1)
    return max_samples
