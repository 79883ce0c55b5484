"""Typed wrappers over kernels/: the only caller of the numba kernels (public API re-exported here).

Validates what the kernels assume (non-empty, finite, positive durations, confidence in (0, 1))
so bad input gives a clear ValueError instead of a numba crash, a hang or a silent NaN.
Methods and citations are in each kernel module's docstring.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

# The numba kernels live in the top-level kernels/ directory and are installed as `bench_kernels`
# (pyproject.toml maps the name to the directory): `kernels` is also Hugging Face's package, which
# transformers imports, so this project must not claim that name. kernels/ has no __init__.py, so
# from the repository root it never shadows that package either. A source tree used without
# installing it (PYTHONPATH=., as on the GPU kit's machine) gets the same name for the same files.
if importlib.util.find_spec("bench_kernels") is None:
    _spec = importlib.machinery.ModuleSpec("bench_kernels", None, is_package=True)
    _spec.submodule_search_locations = [str(Path(__file__).resolve().parents[2] / "kernels")]
    sys.modules["bench_kernels"] = importlib.util.module_from_spec(_spec)

from bench.stats.bootstrap import (  # noqa: E402
    BCA_MIN_N, DEFAULT_RESAMPLES, bootstrap_mean, bootstrap_quantile, bootstrap_ratio, resample_quantiles,
)
from bench.stats.changes import STEADY_ALPHA, STEADY_FREE_CUT, change_points, mann_whitney, noise_sigma, steady_state_cut  # noqa: E402
from bench.stats.checks import Interval, LatencySummary, check_confidence, normal_quantile  # noqa: E402
from bench.stats.processes import (  # noqa: E402
    PRIOR_DF, LogRatio, Prior, Split, benjamini_hochberg, holm, log_ratio, pooled_prior, process_interval,
    t_quantile,
    t_two_sided_p, variance_split,
)
from bench.stats.streams import MAX_SERIES_WINDOWS, LatencyHistogram, Welford, throughput_series  # noqa: E402
from bench.stats.summary import (  # noqa: E402
    PERCENTILES, latency_summary, min_samples_for_bound, percentile_interval, percentile_upper_bound, quantiles,
)
from bench.stats.trend import MAX_TREND_POINTS, Slope, theil_sen  # noqa: E402
from bench.stats.warm import kernels_cached, warm_kernels  # noqa: E402

__all__ = [
    "BCA_MIN_N", "PRIOR_DF", "Prior", "pooled_prior", "LogRatio", "Split", "benjamini_hochberg", "holm", "log_ratio", "process_interval",
    "t_quantile", "t_two_sided_p", "variance_split", "DEFAULT_RESAMPLES", "PERCENTILES", "STEADY_ALPHA", "STEADY_FREE_CUT", "Interval", "LatencyHistogram",
    "LatencySummary", "MAX_SERIES_WINDOWS", "Welford", "bootstrap_mean", "bootstrap_quantile", "bootstrap_ratio", "change_points",
    "check_confidence", "kernels_cached", "latency_summary", "mann_whitney", "min_samples_for_bound",
    "noise_sigma", "normal_quantile", "percentile_interval", "percentile_upper_bound", "quantiles",
    "resample_quantiles", "steady_state_cut", "throughput_series", "warm_kernels", "MAX_TREND_POINTS", "Slope",
    "theil_sen",
]
