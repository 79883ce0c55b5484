"""A trend's slope with its interval (kernels/trend.py: Theil-Sen, Sen's interval)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.stats.checks import check_confidence, normal_quantile
from bench_kernels import trend as _trend

MAX_TREND_POINTS = 2000  # pairwise slopes are O(n^2): a longer series is thinned evenly to this many


@dataclass(frozen=True)
class Slope:
    value: float
    low: float
    high: float
    method: str


def theil_sen(x, y, confidence: float = 0.95) -> Slope:
    """Slope of y on x: the Theil-Sen estimate and Sen's interval (value, low, high)."""
    check_confidence(confidence)
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size < 3:
        raise ValueError("theil_sen: x and y must be 1-D of one length, at least 3 points")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("theil_sen: values must be finite")
    if xs.size > MAX_TREND_POINTS:
        keep = np.linspace(0, xs.size - 1, MAX_TREND_POINTS).round().astype(np.int64)
        xs, ys = xs[keep], ys[keep]
    slope, low, high = _trend.theil_sen(xs, ys, normal_quantile(0.5 + confidence / 2))
    return Slope(float(slope), float(low), float(high),
                    f"Theil-Sen over {xs.size} points; Sen's {confidence:.0%} interval")
