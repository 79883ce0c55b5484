"""Kernels against their numpy twins (hypothesis), and bench.stats' input checks."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench import stats
from bench_kernels.summary import mean_min_max, quantiles_sorted

durations = arrays(np.int64, st.integers(1, 300), elements=st.integers(1, 10**12))
floats = arrays(np.float64, st.integers(1, 300), elements=st.floats(1e-6, 1e9, allow_nan=False))
probs = arrays(np.float64, st.integers(1, 8), elements=st.floats(0.0, 1.0))


@settings(max_examples=200, deadline=None)
@given(durations, probs)
def test_quantiles_match_numpy_type7_ints(x, qs):
    ours = quantiles_sorted(np.sort(x), qs)
    ref = np.quantile(x.astype(np.float64), qs, method="linear")
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-3)


@settings(max_examples=200, deadline=None)
@given(floats, probs)
def test_quantiles_match_numpy_type7_floats(x, qs):
    np.testing.assert_allclose(quantiles_sorted(np.sort(x), qs), np.quantile(x, qs), rtol=1e-12, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(floats)
def test_mean_min_max_match_numpy(x):
    mean, lo, hi = mean_min_max(x)
    assert lo == x.min() and hi == x.max()
    assert mean == pytest.approx(x.mean(), rel=1e-12)


def test_latency_summary_in_ms():
    x = np.arange(1, 1001, dtype=np.int64) * 1_000_000  # 1..1000 ms
    s = stats.latency_summary(x)
    assert s.n == 1000
    assert s.min_ms == 1.0 and s.max_ms == 1000.0
    assert s.mean_ms == pytest.approx(500.5)
    assert s.p50_ms == pytest.approx(np.percentile(x, 50) / 1e6)
    assert s.p99_ms == pytest.approx(np.percentile(x, 99) / 1e6)
    assert s.p999_ms == pytest.approx(np.percentile(x, 99.9) / 1e6)


def test_single_and_constant_samples():
    assert stats.latency_summary(np.array([7], dtype=np.int64)).p99_ms == 7e-6
    s = stats.latency_summary(np.full(50, 3_000_000, dtype=np.int64))
    assert s.p50_ms == s.p999_ms == s.mean_ms == 3.0


@pytest.mark.parametrize(
    "values, message",
    [
        (np.array([], dtype=np.int64), "no samples"),
        (np.array([1.0, np.nan]), "NaN or infinity"),
        (np.array([1.0, np.inf]), "NaN or infinity"),
        (np.array([5, 0, 3], dtype=np.int64), "durations must be > 0"),
        (np.array([5, -1], dtype=np.int64), "durations must be > 0"),
        (np.ones((2, 2), dtype=np.int64), "1-D"),
    ],
)
def test_bad_input_is_a_clear_error(values, message):
    with pytest.raises(ValueError, match=message):
        stats.latency_summary(values)


def test_quantile_probabilities_checked():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        stats.quantiles(np.array([1, 2, 3]), [0.5, 1.5])
    np.testing.assert_allclose(stats.quantiles(np.array([1, 2, 3, 4]), [0.0, 0.5, 1.0]), [1, 2.5, 4])


# --- Student's t (kernels/student.py) against published table values and a numeric integral


@pytest.mark.parametrize("df, p, expected", [
    (1, 0.975, 12.706204736), (2, 0.975, 4.302652730), (3, 0.975, 3.182446305), (4, 0.975, 2.776445105),
    (9, 0.975, 2.262157163), (30, 0.975, 2.042272456), (2, 0.8, 1.060660172), (5, 0.995, 4.032142984),
])
def test_t_quantiles_match_the_table(df, p, expected):
    from bench_kernels.student import t_ppf

    assert t_ppf(p, float(df)) == pytest.approx(expected, rel=1e-8)
    assert t_ppf(1 - p, float(df)) == pytest.approx(-expected, rel=1e-8)


@given(st.floats(0.5, 60.0), st.floats(-8.0, 8.0))
@settings(max_examples=60, deadline=None)
def test_t_cdf_matches_the_integral_of_the_density(df, t):
    import math

    from bench_kernels.student import t_cdf

    grid = np.linspace(0.0, abs(t), 20001)
    dens = np.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                  - (df + 1) / 2 * np.log1p(grid ** 2 / df))
    area = float(np.trapezoid(dens, grid)) if hasattr(np, "trapezoid") else float(np.trapz(dens, grid))
    expected = 0.5 + math.copysign(area, t)
    assert t_cdf(t, df) == pytest.approx(expected, abs=1e-7)
