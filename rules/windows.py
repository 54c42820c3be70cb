"""Sliding windows of one rule for all its devices, as columns: a row per (rule, device), no object per window.

Every window holds the samples with time > newest − window (never fewer than the newest
one). Each sample carries a weight in seconds, the length of the interval it stands for
(time since the device's previous sample, capped at the device's expected interval; see
rules/README.md): mean and LAeq are weighted by it, `coverage` sums it, so "an hourly
mean needs 45 minutes of data" is `coverage >= 2700`.

A `WindowStore` keeps a rule's windows row by row: per-row scalars (sample count, Σ
weights, running sums, the newest bucket's number, a time base) in `array` columns of 8
bytes a row, and a row's entries in one `array('d')` of its own, created at its first
sample. Two layouts of entries, neither holding a Python object per sample:

* **Buckets** (last, count, mean, laeq, min, max): one entry per `resolution_s` time bucket
  that has samples, a running aggregate of them (count, Σw, Σw·x — energy for LAeq — and
  for min/max the bucket's extreme) stamped with the time of its newest sample. A window
  holds at most window / resolution + 1 entries, however often a device reports; an entry
  leaves when its newest sample is out of the window, so the window may also count up to
  one resolution of samples older than it (exact when a bucket holds one sample — e.g.
  5-minute reports into 2.5-minute buckets — and always with `resolution_s = 0`).
* **Points** (rate, slope, eta): every sample (time, weight, value), at most `max_samples`.

Times in an entry are float64 nanoseconds relative to the row's base time (an int64
column): exact integers while under 2⁵³ ns (104 days); the base moves to the newest sample
when an offset reaches 2⁵² ns. So an entry costs 8 bytes per field, time included.

`make_window` gives one window on its own (a one-row store): what tests and tools use.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from array import array

from rules.model import BUCKETED_AGGREGATES
from rules.trend import theil_sen_slope_offsets

_NS = 1_000_000_000
_RESUM_EVERY = 4096
_REBASE_AT = 1 << 52
_NAN = math.nan
_ARRAY = sys.getsizeof(array("d"))  # an empty array object


class WindowStore(ABC):
    """One rule's windows, a row each: `add` a sample to a row, read its `value`, `count` and `coverage`."""

    __slots__ = ("_cov",)

    def __init__(self) -> None:
        self._cov = array("d")  # per row: Σ weights of the samples in the window

    @property
    def rows(self) -> int:
        return len(self._cov)

    def new_row(self) -> int:
        """A fresh, empty row's index."""
        self._cov.append(0.0)
        self._grow()
        return len(self._cov) - 1

    @abstractmethod
    def _grow(self) -> None:
        """Append one empty row to every column but `_cov`."""

    @abstractmethod
    def clear(self, row: int) -> None:
        """Empty the row (the device's clock jumped back: its window restarts)."""

    @abstractmethod
    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        """Take a sample newer than every earlier one of the row (the engine drops late ones first)."""

    @abstractmethod
    def value(self, row: int) -> float | None:
        """The aggregate over the row's samples in the window, or None when it has none."""

    @abstractmethod
    def count(self, row: int) -> int:
        """Samples in the row's window."""

    @abstractmethod
    def entries(self, row: int) -> int:
        """Entries the row holds (buckets or points): what its memory follows."""

    def coverage(self, row: int) -> float:
        return self._cov[row]

    def ready_value(self, row: int, min_samples: int, min_coverage_s: float) -> float | None:
        """`value(row)` once the row has `min_samples` samples covering `min_coverage_s`, else None."""
        if self.count(row) < min_samples or self._cov[row] < min_coverage_s:
            return None
        return self.value(row)

    def update(self, row: int, time_ns: int, value: float, weight_s: float, min_samples: int,
               min_coverage_s: float) -> float | None:
        """`add` then `ready_value`, in one call (the engine's hot path)."""
        self.add(row, time_ns, value, weight_s)
        return self.ready_value(row, min_samples, min_coverage_s)

    @abstractmethod
    def _columns(self) -> tuple:
        """Every per-row column (arrays, and lists of row arrays)."""

    def column_bytes(self) -> int:
        """Bytes of the columns at their allocated size (rows' own arrays not included)."""
        return sum(sys.getsizeof(c) for c in self._columns())

    def row_array_bytes(self, row: int) -> int:
        """Bytes of the row's own arrays (its entries), 0 before its first sample."""
        return 0

    def row_bytes(self, row: int) -> int:
        """Bytes one row holds: its share of the columns (8 bytes a field) and its own arrays."""
        return sum(getattr(c, "itemsize", 8) for c in self._columns()) + self.row_array_bytes(row)


class LatestStore(WindowStore):
    """A `last` rule without a window: the newest value (NaN: none yet) and its weight, 16 bytes a row."""

    __slots__ = ("_v",)

    def __init__(self) -> None:
        super().__init__()
        self._v = array("d")

    def _grow(self) -> None:
        self._v.append(_NAN)

    def clear(self, row: int) -> None:
        self._v[row] = _NAN
        self._cov[row] = 0.0

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        self._v[row] = value
        self._cov[row] = weight_s

    def value(self, row: int) -> float | None:
        v = self._v[row]
        return None if v != v else v

    def count(self, row: int) -> int:
        v = self._v[row]
        return 0 if v != v else 1

    entries = count

    def _columns(self) -> tuple:
        return (self._cov, self._v)

    def ready_value(self, row: int, min_samples: int, min_coverage_s: float) -> float | None:
        v = self._v[row]
        if v != v or min_samples > 1 or self._cov[row] < min_coverage_s:
            return None
        return v

    def update(self, row: int, time_ns: int, value: float, weight_s: float, min_samples: int,
               min_coverage_s: float) -> float | None:
        self._v[row] = value
        self._cov[row] = weight_s
        return None if min_samples > 1 or weight_s < min_coverage_s else value


class _Series(WindowStore):
    """Rows of entries of `_S` float64 fields, the first the time offset of the entry's newest sample."""

    __slots__ = ("_base", "_max", "_rows", "_span_ns")
    _S = 3

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__()
        self._span_ns = int(window_s * _NS)
        self._max = max_samples
        self._rows: list[array | None] = []
        self._base = array("q")  # per row: the time its offsets count from

    def _grow(self) -> None:
        self._rows.append(None)
        self._base.append(0)

    def clear(self, row: int) -> None:
        self._rows[row] = None
        self._cov[row] = 0.0

    def entries(self, row: int) -> int:
        a = self._rows[row]
        return 0 if a is None else len(a) // self._S

    def _columns(self) -> tuple:
        return (self._cov, self._base, self._rows)

    def row_array_bytes(self, row: int) -> int:
        a = self._rows[row]
        return 0 if a is None else sys.getsizeof(a)

    def _offset(self, row: int, time_ns: int) -> tuple[array, int]:
        """The row's entries (created at its first sample) and `time_ns` as an offset from the row's base."""
        a = self._rows[row]
        if a is None:
            a = self._rows[row] = array("d")
            self._base[row] = time_ns
            self._started(row)
            return a, 0
        off = time_ns - self._base[row]
        if off >= _REBASE_AT:
            self._rebase(row, a, time_ns)
            off = 0
        return a, off

    def _started(self, row: int) -> None:
        """A row got its first sample (after creation or `clear`): reset the subclass's columns."""

    def _rebase(self, row: int, a: array, time_ns: int) -> None:
        """Count the row's offsets from `time_ns` (they become ≤ 0, exact while within 2⁵³ ns of it)."""
        shift = float(time_ns - self._base[row])
        self._base[row] = time_ns
        for i in range(0, len(a), self._S):
            a[i] -= shift


class _Buckets(_Series):
    """Entries [time, count, Σw, ...]; `_key` holds each row's newest bucket number, `_n` its sample count.

    `_res_ns` is the bucket width (1 ns for an exact window: times strictly increase, so
    no two samples share a bucket).
    """

    __slots__ = ("_key", "_n", "_res_ns")

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        super().__init__(window_s, max_samples)
        self._res_ns = max(1, int(resolution_s * _NS))
        self._key = array("q")
        self._n = array("d")  # a float: it is summed from the count field

    def _grow(self) -> None:
        super()._grow()
        self._key.append(-1)
        self._n.append(0.0)

    def _started(self, row: int) -> None:
        self._key[row] = -1
        self._n[row] = 0.0

    def _columns(self) -> tuple:
        return (*super()._columns(), self._key, self._n)

    def count(self, row: int) -> int:
        return int(self._n[row])

    def ready_value(self, row: int, min_samples: int, min_coverage_s: float) -> float | None:
        if self._n[row] < min_samples or self._cov[row] < min_coverage_s:
            return None
        return self.value(row)

    def _add_counted(self, row: int, time_ns: int, weight_s: float) -> tuple[array, int, bool]:
        """Count a sample and its weight into the row's newest bucket or a new one; (entries, offset, merged)."""
        a = self._rows[row]
        if a is None:
            a, off = self._offset(row, time_ns)
        else:
            off = time_ns - self._base[row]
            if off >= _REBASE_AT:
                a, off = self._offset(row, time_ns)
        key = time_ns // self._res_ns
        if key == self._key[row]:
            a[-3] = off
            a[-2] += 1.0
            a[-1] += weight_s
            merged = True
        else:
            self._key[row] = key
            a.append(off)
            a.append(1.0)
            a.append(weight_s)
            merged = False
        self._n[row] += 1
        self._cov[row] += weight_s
        return a, off, merged

    def _expire(self, row: int, a: array, off: int) -> None:
        """Let the oldest entries go (out of the window or over the cap, never the newest)."""
        if a[0] > off - self._span_ns and len(a) <= self._max * 3:
            return
        cutoff = off - self._span_ns
        last = len(a) - 3
        limit = self._max * 3
        n = self._n[row]
        cov = self._cov[row]
        k = 0
        while k < last and (a[k] <= cutoff or len(a) - k > limit):
            n -= a[k + 1]
            cov -= a[k + 2]
            self._forget(row, a[k])
            k += 3
        del a[:k]
        self._n[row] = n
        self._cov[row] = cov

    def _forget(self, row: int, time_off: float) -> None:
        """An entry whose newest sample is at `time_off` leaves (min/max drop it from their queue)."""


class LastStore(_Buckets):
    """The newest value (never evicted); the window only feeds min_samples / min_coverage."""

    __slots__ = ("_last",)

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        super().__init__(window_s, max_samples, resolution_s)
        self._last = array("d")

    def _grow(self) -> None:
        super()._grow()
        self._last.append(_NAN)

    def clear(self, row: int) -> None:
        super().clear(row)
        self._last[row] = _NAN

    def _columns(self) -> tuple:
        return (*super()._columns(), self._last)

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        self._last[row] = value
        a, off, _ = self._add_counted(row, time_ns, weight_s)
        self._expire(row, a, off)

    def update(self, row: int, time_ns: int, value: float, weight_s: float, min_samples: int,
               min_coverage_s: float) -> float | None:
        self._last[row] = value
        a, off, _ = self._add_counted(row, time_ns, weight_s)
        self._expire(row, a, off)
        return None if self._n[row] < min_samples or self._cov[row] < min_coverage_s else value

    def value(self, row: int) -> float | None:
        v = self._last[row]
        return None if v != v else v


class CountStore(_Buckets):
    """How many samples the window holds."""

    __slots__ = ()

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        a, off, _ = self._add_counted(row, time_ns, weight_s)
        self._expire(row, a, off)

    def value(self, row: int) -> float | None:
        return self._n[row]


class MeanStore(_Buckets):
    """Time-weighted mean Σ wᵢxᵢ / Σ wᵢ from running sums, re-summed exactly now and then to bound drift.

    Entries [time, count, Σw, Σw·x].
    """

    __slots__ = ("_limit", "_since", "_sum")
    _S = 4
    _energy = False  # LaeqStore: average 10^(L/10) instead of the value

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        super().__init__(window_s, max_samples, resolution_s)
        self._limit = max_samples * 4  # fields of the most entries a row keeps
        self._sum = array("d")
        self._since = array("i")  # samples since the last exact re-summing

    def _grow(self) -> None:
        super()._grow()
        self._sum.append(0.0)
        self._since.append(0)

    def _started(self, row: int) -> None:
        super()._started(row)
        self._sum[row] = 0.0
        self._since[row] = 0

    def _columns(self) -> tuple:
        return (*super()._columns(), self._sum, self._since)

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        self.update(row, time_ns, value, weight_s, 0, 0.0)

    def update(self, row: int, time_ns: int, value: float, weight_s: float, min_samples: int,
               min_coverage_s: float) -> float | None:
        wx = weight_s * (10.0 ** (value / 10.0) if self._energy else value)
        a = self._rows[row]
        if a is None:
            a, off = self._offset(row, time_ns)
        else:
            off = time_ns - self._base[row]
            if off >= _REBASE_AT:
                a, off = self._offset(row, time_ns)
        key = time_ns // self._res_ns
        if key == self._key[row]:
            a[-4] = off
            a[-3] += 1.0
            a[-2] += weight_s
            a[-1] += wx
        else:
            self._key[row] = key
            a.append(off)
            a.append(1.0)
            a.append(weight_s)
            a.append(wx)
        n = self._n[row] + 1
        cov = self._cov[row] + weight_s
        total = self._sum[row] + wx
        since = self._since[row] + 1
        if since >= _RESUM_EVERY:
            since = 0
            total = math.fsum(a[3::4])
            cov = math.fsum(a[2::4])
        self._since[row] = since
        cutoff = off - self._span_ns
        limit = self._limit
        if a[0] <= cutoff or len(a) > limit:  # the expiry, inlined: this runs for most readings
            last = len(a) - 4
            k = 0
            while k < last and (a[k] <= cutoff or len(a) - k > limit):
                n -= a[k + 1]
                cov -= a[k + 2]
                total -= a[k + 3]
                k += 4
            del a[:k]
        self._n[row] = n
        self._cov[row] = cov
        self._sum[row] = total
        if n < min_samples or cov < min_coverage_s or not n or cov <= 0:
            return None
        if self._energy:
            mean_energy = total / cov
            return 10.0 * math.log10(mean_energy) if mean_energy > 0 else None
        return total / cov

    def value(self, row: int) -> float | None:
        cov = self._cov[row]
        if not self._n[row] or cov <= 0:
            return None
        return self._sum[row] / cov


class LaeqStore(MeanStore):
    """Energy average of levels: LAeq = 10·log10( Σ wᵢ·10^(Lᵢ/10) / Σ wᵢ ), never the mean of dB values."""

    __slots__ = ()
    _energy = True

    def value(self, row: int) -> float | None:
        mean_energy = super().value(row)
        if mean_energy is None or mean_energy <= 0:
            return None
        return 10.0 * math.log10(mean_energy)


class ExtremeStore(_Buckets):
    """Min or max over the window with a monotonic queue of [time, value] per row, at most one item per bucket.

    A sample dominated by a later one in the same bucket can never be the extreme again (the
    bucket leaves as a whole), so the queue is bounded by the entries, not by the samples.
    """

    __slots__ = ("_is_max", "_q")

    def __init__(self, window_s: float, max_samples: int, resolution_s: float = 0.0, *, is_max: bool) -> None:
        super().__init__(window_s, max_samples, resolution_s)
        self._is_max = is_max
        self._q: list[array | None] = []

    def _grow(self) -> None:
        super()._grow()
        self._q.append(None)

    def clear(self, row: int) -> None:
        super().clear(row)
        self._q[row] = None

    def _columns(self) -> tuple:
        return (*super()._columns(), self._q)

    def row_array_bytes(self, row: int) -> int:
        q = self._q[row]
        return super().row_array_bytes(row) + (0 if q is None else sys.getsizeof(q))

    def _rebase(self, row: int, a: array, time_ns: int) -> None:
        shift = float(time_ns - self._base[row])
        super()._rebase(row, a, time_ns)
        q = self._q[row]
        if q is not None:
            for i in range(0, len(q), 2):
                q[i] -= shift

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        a, off, merged = self._add_counted(row, time_ns, weight_s)
        q = self._q[row]
        if q is None:
            q = self._q[row] = array("d")
        if self._is_max:
            while q and q[-1] <= value:
                del q[-2:]
        else:
            while q and q[-1] >= value:
                del q[-2:]
        if not (merged and q and (len(a) < 6 or q[-2] > a[-6])):
            q.append(off)  # (else a sample of the same bucket dominates it, and leaves with it)
            q.append(value)
        self._expire(row, a, off)

    def _forget(self, row: int, time_off: float) -> None:
        q = self._q[row]
        assert q is not None
        k = 0
        while k < len(q) - 2 and q[k] <= time_off:  # the newest sample (or a bucket-mate) stays
            k += 2
        if k:
            del q[:k]

    def value(self, row: int) -> float | None:
        q = self._q[row]
        return q[1] if q else None


class PointStore(_Series):
    """Every sample kept: entries [time, weight, value], at most `max_samples` a row.

    `aggregate` is "rate" (change per `per_s` between the oldest and newest sample, over their
    real time span) or a trend ("slope", "eta": the Theil–Sen slope per second, computed on
    demand, O(n²) in the bounded n). `_flat` counts each row's newest samples in a row with
    the very same finite value: once it covers the whole window every pairwise slope is 0.0,
    and so is their median, without the O(n²) work — a water-level sensor on a dry road.
    """

    __slots__ = ("_flat", "_per_s", "_rate", "_slopes")

    def __init__(self, window_s: float, max_samples: int, *, rate: bool = False, per_s: float = 1.0) -> None:
        super().__init__(window_s, max_samples)
        self._rate = rate
        self._per_s = per_s
        self._flat = array("i")
        self._slopes: dict[int, float | None] = {}
        """`slope_now`'s answers by row, until the row's next sample: only rows the desk asks about."""

    def clear(self, row: int) -> None:
        super().clear(row)
        self._slopes.pop(row, None)

    def _grow(self) -> None:
        super()._grow()
        self._flat.append(0)

    def _started(self, row: int) -> None:
        self._flat[row] = 0

    def _columns(self) -> tuple:
        return (*super()._columns(), self._flat)

    def count(self, row: int) -> int:
        a = self._rows[row]
        return 0 if a is None else len(a) // 3

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        if self._slopes:
            self._slopes.pop(row, None)
        a = self._rows[row]
        if a is None:
            a, off = self._offset(row, time_ns)
        else:
            off = time_ns - self._base[row]
            if off >= _REBASE_AT:
                a, off = self._offset(row, time_ns)
        flat = self._flat[row]
        if flat and _same(a[-1], value):
            self._flat[row] = flat + 1
        else:
            self._flat[row] = 1 if math.isfinite(value) else 0
        a.append(off)
        a.append(weight_s)
        a.append(value)
        cov = self._cov[row] + weight_s
        cutoff = off - self._span_ns
        limit = self._max * 3
        if a[0] <= cutoff or len(a) > limit:
            last = len(a) - 3
            k = 0
            while k < last and (a[k] <= cutoff or len(a) - k > limit):
                cov -= a[k + 1]
                k += 3
            del a[:k]
        self._cov[row] = cov

    def value(self, row: int) -> float | None:
        if not self._rate:
            return self.slope_per_s(row)
        a = self._rows[row]
        if a is None or len(a) < 6:
            return None
        return (a[-1] - a[2]) / ((a[-3] - a[0]) / _NS) * self._per_s

    def slope_per_s(self, row: int) -> float | None:
        """The Theil–Sen slope of the row's points, value units per second; None below two points."""
        a = self._rows[row]
        if a is None or len(a) < 6:
            return None
        if self._flat[row] >= len(a) // 3 and a[0] < a[-3]:
            return 0.0  # what theil_sen_slope returns here: (v - v) / dt for every pair with dt > 0
        return theil_sen_slope_offsets(a[0::3], a[2::3])

    def slope_now(self, row: int) -> float | None:
        """`slope_per_s`, kept until the row's next sample: the desk asks it for every flood alert of every
        snapshot, and a snapshot is pushed on each reading of one gauge, so only that gauge's is computed anew."""
        try:
            return self._slopes[row]
        except KeyError:
            slope = self._slopes[row] = self.slope_per_s(row)
            return slope

    def span_s(self, row: int) -> float:
        """Seconds from the row's oldest sample to its newest (0 below two samples)."""
        a = self._rows[row]
        return 0.0 if a is None or len(a) < 6 else (a[-3] - a[0]) / _NS

    def last(self, row: int) -> float | None:
        """The row's newest value."""
        a = self._rows[row]
        return a[-1] if a else None


def _same(a: float, b: float) -> bool:
    """Equal and of the same sign, so that 0.0 and -0.0 (whose differences differ in sign) do not count as one."""
    return a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


def make_store(aggregate: str, window_s: float, max_samples: int, per_s: float = 1.0,
               resolution_s: float = 0.0) -> WindowStore:
    """The store whose rows compute `aggregate`; `resolution_s` > 0 buckets it (BUCKETED_AGGREGATES only)."""
    if resolution_s and aggregate not in BUCKETED_AGGREGATES:
        raise ValueError(f"aggregate {aggregate!r} keeps its points: it takes no resolution")
    if aggregate == "last":
        return LatestStore() if window_s <= 0 else LastStore(window_s, max_samples, resolution_s)
    if aggregate == "count":
        return CountStore(window_s, max_samples, resolution_s)
    if aggregate == "mean":
        return MeanStore(window_s, max_samples, resolution_s)
    if aggregate == "laeq":
        return LaeqStore(window_s, max_samples, resolution_s)
    if aggregate in ("min", "max"):
        return ExtremeStore(window_s, max_samples, resolution_s, is_max=aggregate == "max")
    if aggregate == "rate":
        return PointStore(window_s, max_samples, rate=True, per_s=per_s)
    if aggregate in ("slope", "eta"):
        return PointStore(window_s, max_samples)
    raise ValueError(f"unknown aggregate {aggregate!r}")


class Window:
    """One window: a row of a store, a new one unless `row` is given (`make_window`, `Engine.window_of`)."""

    __slots__ = ("row", "store")

    def __init__(self, store: WindowStore, row: int | None = None) -> None:
        self.store = store
        self.row = store.new_row() if row is None else row

    def add(self, time_ns: int, value: float, weight_s: float) -> None:
        self.store.add(self.row, time_ns, value, weight_s)

    def value(self) -> float | None:
        return self.store.value(self.row)

    @property
    def count(self) -> int:
        return self.store.count(self.row)

    @property
    def entries(self) -> int:
        return self.store.entries(self.row)

    @property
    def coverage_s(self) -> float:
        return self.store.coverage(self.row)

    def nbytes(self) -> int:
        """Bytes the row holds (its column share and entries)."""
        return self.store.row_bytes(self.row)


class TrendWindow(Window):
    """A bounded series of (t, v) for Theil–Sen (see `PointStore`)."""

    __slots__ = ()
    store: PointStore

    def __init__(self, window_s: float, max_samples: int) -> None:
        super().__init__(PointStore(window_s, max_samples))

    def slope_per_s(self) -> float | None:
        return self.store.slope_per_s(self.row)

    @property
    def last(self) -> float | None:
        return self.store.last(self.row)


def make_window(aggregate: str, window_s: float, max_samples: int, per_s: float = 1.0,
                resolution_s: float = 0.0) -> Window:
    """One window computing `aggregate` (see `make_store`)."""
    if aggregate in ("slope", "eta"):
        if resolution_s:
            raise ValueError(f"aggregate {aggregate!r} keeps its points: it takes no resolution")
        return TrendWindow(window_s, max_samples)
    return Window(make_store(aggregate, window_s, max_samples, per_s, resolution_s))


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
