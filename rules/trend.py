"""Trend arithmetic: the robust (Theil–Sen) slope of irregular samples and the time to reach a threshold.

The slope is the Theil–Sen estimator exactly as `scipy.stats.theilslopes` computes it — the
median of the slopes between every pair of samples with distinct times — without the
confidence interval scipy adds, which we do not use and which makes a call cost ~260 µs
against ~12 µs here for a 15-sample window (tests pin the equality with scipy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_PURE_PYTHON_UP_TO = 24  # below this many samples a plain loop beats numpy's call overhead


def theil_sen_slope(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Median of the pairwise slopes, in value units per second; None with fewer than two distinct times.

    Pairwise slopes use the real time between samples, so sparse and irregular reports
    need no resampling, and one outlier cannot tilt the line (breakdown point ~29 %).
    """
    n = len(times_s)
    if n < 2:
        return None
    if n <= _PURE_PYTHON_UP_TO:
        slopes = []
        for i in range(n - 1):
            ti, vi = times_s[i], values[i]
            for j in range(i + 1, n):
                dt = times_s[j] - ti
                if dt > 0:
                    slopes.append((values[j] - vi) / dt)
        if not slopes:
            return None
        slopes.sort()
        half = len(slopes) // 2
        slope = slopes[half] if len(slopes) % 2 else (slopes[half - 1] + slopes[half]) / 2
    else:
        t = np.asarray(times_s, dtype=float)
        v = np.asarray(values, dtype=float)
        i, j = np.triu_indices(n, 1)
        dt = t[j] - t[i]
        keep = dt > 0
        if not keep.any():
            return None
        slope = float(np.median((v[j] - v[i])[keep] / dt[keep]))
    return slope if math.isfinite(slope) else None


def time_to_threshold(current: float, slope_per_s: float, target: float, *, rising: bool = True) -> float:
    """Seconds until `current` reaches `target` at `slope_per_s`: 0 when already there, inf when moving away.

    `rising` says which side is the alarm side: depth rising to 270 mm is rising,
    a battery draining to 10 % is not.
    """
    if rising:
        if current >= target:
            return 0.0
        return (target - current) / slope_per_s if slope_per_s > 0 else math.inf
    if current <= target:
        return 0.0
    return (current - target) / -slope_per_s if slope_per_s < 0 else math.inf
