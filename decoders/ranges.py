"""Field ranges: the span and step on which a codec's encode → decode round trip is exact."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class FieldRange:
    """Values `lo + k·step` (k = 0, 1, …) up to `hi`, rounded to the step's decimals.

    Such a value given to `encode` comes back from `decode` as the very same float. The span
    is the sensor's rated one; `encode` accepts more (whatever the payload format can carry).
    Boolean fields use lo=0, hi=1, step=1.
    """

    lo: float
    hi: float
    step: float

    def __post_init__(self) -> None:
        if not (self.step > 0 and self.hi >= self.lo):
            raise ValueError(f"FieldRange needs step > 0 and hi >= lo, got {self}")

    @property
    def decimals(self) -> int:
        """Decimal places of the grid (0.1 → 1, 0.004 → 3, 5 → 0)."""
        exponent = Decimal(repr(float(self.step))).normalize().as_tuple().exponent
        return max(0, -int(exponent))

    @property
    def count(self) -> int:
        """Number of grid points in [lo, hi]."""
        return math.floor((self.hi - self.lo) / self.step + 1e-9) + 1

    def value(self, k: int) -> float:
        """The k-th grid point; `k` is clamped to the grid."""
        k = min(max(k, 0), self.count - 1)
        return float(round(self.lo + k * self.step, self.decimals))

    def snap(self, x: float) -> float:
        """The grid point nearest to `x` (clamped to [lo, hi])."""
        return self.value(round((x - self.lo) / self.step))

    def __contains__(self, x: object) -> bool:
        return isinstance(x, int | float) and self.lo <= x <= self.hi
