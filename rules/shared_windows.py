"""Mean and LAeq windows of several rules over the same readings, kept as one set of buckets per device.

A dust sensor's PM10 and PM2.5 24-hour means (and their hourly means) see the same readings at
the same times: their buckets have the same times, counts and weights and differ only in Σw·x.
A `MeanGroup` keeps, per device row, one entries array [time, count, Σw, Σw·x₁, …, Σw·xₖ] and
the shared scalars (count, Σw, bucket number, time base) once, with a running sum per rule: 8·(3 + k)
bytes a bucket instead of 32·k. Each rule reads and writes the group through its `GroupMember`,
a `WindowStore` whose values are bit-identical to a `MeanStore`'s (`LaeqStore`'s) of its own:
the same operations on the same numbers in the same order.

The sharing holds while every member takes every reading, at the same time: the lead (the
member the engine visits first) takes a reading first and the others follow at the same time.
When a reading reaches some members and not others (a field missing or not a number, a clock
jumping back, an alert restored with history to skip), the engine calls `split` before any
member adds it: from then on that device's row is a private row of each member's own store,
copied exactly. The engine (rules/engine.py) forms groups of rules with the same aggregate,
window, resolution, sample cap, selector and quality gate.
"""

from __future__ import annotations

import math
import sys
from array import array

from rules.windows import _REBASE_AT, _RESUM_EVERY, LaeqStore, MeanStore, WindowStore

_NS = 1_000_000_000


class MeanGroup:
    """The shared columns of k mean (or LAeq) windows; `member(i)` is rule i's store."""

    __slots__ = ("_base", "_cov", "_gt", "_k", "_key", "_limit", "_members", "_n", "_res_ns", "_rows", "_since",
                 "_span_ns", "_split", "_step", "_stride", "_sums", "energy", "split_rows")

    def __init__(self, k: int, aggregate: str, window_s: float, max_samples: int, resolution_s: float = 0.0) -> None:
        if aggregate not in ("mean", "laeq") or not 2 <= k <= 63:
            raise ValueError("a group shares the windows of two or more mean or laeq rules")
        self.energy = aggregate == "laeq"
        self._k = k
        self._stride = 3 + k
        self._span_ns = int(window_s * _NS)
        self._res_ns = max(1, int(resolution_s * _NS))
        self._limit = max_samples * self._stride
        self._rows: list[array | None] = []
        self._base = array("q")
        self._key = array("q")
        self._n = array("d")
        self._cov = array("d")
        self._since = array("i")
        self._gt = array("q")  # per row: the newest sample's time (-1: none)
        # per row: how many members took the newest sample (k: all), + 64 when it opened an entry,
        # + (fields of the expired entries the last member deletes) << 7
        self._step = array("q")
        self._split = bytearray()  # per row: 1 once each member keeps its own row
        self.split_rows = self._split  # (read by the engine's hot path)
        self._sums = [array("d") for _ in range(k)]
        store = LaeqStore if self.energy else MeanStore
        self._members = [GroupMember(self, i, store(window_s, max_samples, resolution_s)) for i in range(k)]

    def member(self, i: int) -> GroupMember:
        return self._members[i]

    @property
    def rows(self) -> int:
        return len(self._gt)

    def new_row(self) -> int:
        """A fresh, empty row (the same index in every member)."""
        self._rows.append(None)
        self._base.append(0)
        self._key.append(-1)
        self._n.append(0.0)
        self._cov.append(0.0)
        self._since.append(0)
        self._gt.append(-1)
        self._step.append(self._k)
        self._split.append(0)
        for s in self._sums:
            s.append(0.0)
        for m in self._members:
            m._own_row.append(-1)
        return len(self._gt) - 1

    def is_split(self, row: int) -> bool:
        return bool(self._split[row])

    def split(self, row: int) -> None:
        """Give each member a private copy of the row (between readings: every member has taken the newest)."""
        if self._split[row]:
            return
        self._split[row] = 1
        a = self._rows[row]
        self._rows[row] = None
        stride = self._stride
        for i, m in enumerate(self._members):
            own = m.own
            r = own.new_row()
            m._own_row[row] = r
            if a is None:
                continue
            private = array("d")
            for j in range(0, len(a), stride):
                private.extend((a[j], a[j + 1], a[j + 2], a[j + 3 + i]))
            own._rows[r] = private
            own._base[r] = self._base[row]
            own._key[r] = self._key[row]
            own._n[r] = self._n[row]
            own._cov[r] = self._cov[row]
            own._sum[r] = self._sums[i][row]
            own._since[r] = self._since[row]

    def bytes_of(self, row: int) -> int:
        a = self._rows[row]
        return 0 if a is None else sys.getsizeof(a)

    def column_bytes(self) -> int:
        shared = (self._rows, self._base, self._key, self._n, self._cov, self._since, self._gt, self._step,
                  self._split)
        return sum(sys.getsizeof(c) for c in shared)

    def row_field_bytes(self) -> int:
        """Bytes of one row's share of the shared columns."""
        return 8 * 8 + 4 + 1


class GroupMember(WindowStore):
    """Rule i's window in a `MeanGroup` (see the module docstring); `own` holds its rows once split."""

    __slots__ = ("_energy", "_g", "_i", "_own_row", "_sum", "own")

    def __init__(self, group: MeanGroup, i: int, own: MeanStore) -> None:
        super().__init__()
        self._g = group
        self._i = i
        self._energy = group.energy
        self._sum = group._sums[i]
        self.own = own
        self._own_row = array("i")  # per row: the private row once split (-1 before)

    @property
    def rows(self) -> int:
        return self._g.rows

    def new_row(self) -> int:
        raise TypeError("a group member's rows are made by its group (MeanGroup.new_row)")

    def _grow(self) -> None:  # pragma: no cover - rows come from the group
        raise TypeError("a group member's rows are made by its group")

    def clear(self, row: int) -> None:
        g = self._g
        if not g._split[row]:
            g.split(row)  # (a clock jump: rare; each member restarts its own window)
        self.own.clear(self._own_row[row])

    def add(self, row: int, time_ns: int, value: float, weight_s: float) -> None:
        self.update(row, time_ns, value, weight_s, 0, 0.0)

    def update(self, row: int, time_ns: int, value: float, weight_s: float, min_samples: int,
               min_coverage_s: float) -> float | None:
        """`MeanStore.update` on the shared row: the lead (member 0) takes a new sample, the others follow."""
        g = self._g
        if g._split[row]:
            return self.own.update(self._own_row[row], time_ns, value, weight_s, min_samples, min_coverage_s)
        energy = self._energy
        wx = weight_s * (10.0 ** (value / 10.0) if energy else value)
        stride = g._stride
        gt = g._gt[row]
        step = g._step[row]  # members that took the newest sample | 64 if it opened an entry | expired fields << 7
        i = self._i
        if time_ns > gt and not i and (step & 63) == g._k:  # the lead, a new sample
            a = g._rows[row]
            if a is None:
                a = g._rows[row] = array("d")
                g._base[row] = time_ns
                g._key[row] = -1
                g._n[row] = 0.0
                g._since[row] = 0
                for sums in g._sums:
                    sums[row] = 0.0
                off = 0
            else:
                off = time_ns - g._base[row]
                if off >= _REBASE_AT:
                    shift = float(off)
                    g._base[row] = time_ns
                    for j in range(0, len(a), stride):
                        a[j] -= shift
                    off = 0
            key = time_ns // g._res_ns
            if key == g._key[row]:
                a[-stride] = off
                a[1 - stride] += 1.0
                a[2 - stride] += weight_s
                a[3 - stride] += wx
                step = 1
            else:
                g._key[row] = key
                a.append(off)
                a.append(1.0)
                a.append(weight_s)
                a.append(wx)
                a.extend(_ZEROS[: stride - 4])
                step = 65
            n = g._n[row] + 1
            cov = g._cov[row] + weight_s
            sums = self._sum
            total = sums[row] + wx
            since = g._since[row] + 1
            if since >= _RESUM_EVERY:
                since = 0
                total = math.fsum(a[3::stride])
                cov = math.fsum(a[2::stride])
            g._since[row] = since
            cutoff = off - g._span_ns
            limit = g._limit
            if a[0] <= cutoff or len(a) > limit:
                last = len(a) - stride
                k = 0
                while k < last and (a[k] <= cutoff or len(a) - k > limit):
                    n -= a[k + 1]
                    cov -= a[k + 2]
                    total -= a[k + 3]
                    k += stride
                step |= k << 7
            g._step[row] = step
            g._gt[row] = time_ns
            g._n[row] = n
            g._cov[row] = cov
            sums[row] = total
        elif time_ns == gt and (step & 63) == i:  # a later member, at the lead's time
            a = g._rows[row]
            assert a is not None
            col = 3 + i - stride
            if step & 64:
                a[col] = wx
            else:
                a[col] += wx
            sums = self._sum
            total = sums[row] + wx
            if g._since[row] == 0:  # the lead re-summed at this sample
                total = math.fsum(a[3 + i::stride])
            cut = step >> 7
            if cut:
                for k in range(3 + i, cut, stride):
                    total -= a[k]
                if i + 1 == g._k:
                    del a[:cut]
            sums[row] = total
            g._step[row] = step + 1
            n = g._n[row]
            cov = g._cov[row]
        else:  # the lead skipped this reading (or a member the one before): part ways, exactly, before adding
            g.split(row)
            return self.own.update(self._own_row[row], time_ns, value, weight_s, min_samples, min_coverage_s)
        if n < min_samples or cov < min_coverage_s or not n or cov <= 0:
            return None
        if energy:
            mean_energy = total / cov
            return 10.0 * math.log10(mean_energy) if mean_energy > 0 else None
        return total / cov

    def value(self, row: int) -> float | None:
        g = self._g
        if g._split[row]:
            return self.own.value(self._own_row[row])
        n, cov = g._n[row], g._cov[row]
        if not n or cov <= 0:
            return None
        mean = g._sums[self._i][row] / cov
        if not g.energy:
            return mean
        return 10.0 * math.log10(mean) if mean > 0 else None

    def ready_value(self, row: int, min_samples: int, min_coverage_s: float) -> float | None:
        if self.count(row) < min_samples or self.coverage(row) < min_coverage_s:
            return None
        return self.value(row)

    def count(self, row: int) -> int:
        g = self._g
        return self.own.count(self._own_row[row]) if g._split[row] else int(g._n[row])

    def coverage(self, row: int) -> float:
        g = self._g
        return self.own.coverage(self._own_row[row]) if g._split[row] else g._cov[row]

    def entries(self, row: int) -> int:
        g = self._g
        if g._split[row]:
            return self.own.entries(self._own_row[row])
        a = g._rows[row]
        return 0 if a is None else len(a) // g._stride

    def _columns(self) -> tuple:
        return (self._g._sums[self._i], self._own_row)

    def column_bytes(self) -> int:
        """Its own columns, its share of the group's and its private store's."""
        g = self._g
        return super().column_bytes() + g.column_bytes() // g._k + self.own.column_bytes()

    def row_array_bytes(self, row: int) -> int:
        g = self._g
        if g._split[row]:
            return self.own.row_array_bytes(self._own_row[row])
        return g.bytes_of(row) // g._k

    def row_bytes(self, row: int) -> int:
        g = self._g
        return 8 + 4 + g.row_field_bytes() // g._k + self.row_array_bytes(row)


_ZEROS = array("d", bytes(8 * 64))

