"""Compiling the kernels once per machine (numba's on-disk cache), before any worker needs them."""
from __future__ import annotations

import numpy as np

from bench.stats.bootstrap import bootstrap_mean, bootstrap_quantile
from bench.stats.changes import change_points, mann_whitney, steady_state_cut
from bench.stats.checks import normal_quantile
from bench.stats.streams import LatencyHistogram, Welford, throughput_series
from bench.stats.summary import latency_summary, min_samples_for_bound, percentile_interval, percentile_upper_bound
from bench.stats.trend import theil_sen
from bench_kernels import bootstrap as _boot
from bench_kernels import histogram as _hist
from bench_kernels import moments as _mom
from bench_kernels import order_stats as _os
from bench_kernels import steady as _steady
from bench_kernels import student as _student
from bench_kernels import tests as _tests
from bench_kernels import trend as _trend


def _warm_group(group: str) -> None:
    """Call each kernel of one half of the set once on tiny inputs (compiles, or loads the cache)."""
    ns = np.arange(1, 41, dtype=np.int64) * 1000
    x = ns.astype(np.float64)
    if group == "a":
        latency_summary(ns)
        percentile_interval(np.sort(ns), 0.5, 0.95)
        percentile_upper_bound(np.sort(ns), 0.9, 0.9)
        min_samples_for_bound(0.9, 0.9)
        normal_quantile(0.975)
        h = LatencyHistogram()
        h.record(ns)
        h.quantiles([0.5])
        w = Welford()
        w.update(x)
        w.merge(w)
        throughput_series(ns, 1, 10_000)
    else:
        bootstrap_mean(x, 0.95, 20)
        bootstrap_mean(x, 0.95, 20, method="percentile")
        bootstrap_quantile(x, 0.9, 0.95, 20)
        steady_state_cut(ns)
        mann_whitney(x, x + 1)
        change_points(x)
        change_points(x, min_size=1)
        _student.t_ppf(0.975, 2.0)
        _student.betainc(1.0, 0.5, 0.5)
        theil_sen(x[:10], x[:10] * 2.0)


def _kernel_dispatchers() -> list:
    import numba.core.registry

    from bench_kernels import summary as _summary

    # Public kernels only: private helpers are compiled into their callers, never cached alone.
    return [f for mod in (_boot, _hist, _mom, _os, _steady, _student, _tests, _summary, _trend)
            for name, f in vars(mod).items()
            if isinstance(f, numba.core.registry.CPUDispatcher) and not name.startswith("_")]


def kernels_cached() -> bool:
    """Whether every kernel has an entry in numba's on-disk cache (so nothing will compile)."""
    import os

    try:
        return all(os.path.exists(d._cache._cache_file._index_path) for d in _kernel_dispatchers())
    except AttributeError:  # numba's cache internals moved: assume warm, compile in-process
        return True


def warm_kernels() -> None:
    """Compile every kernel once (first run) or load it from the cache (~0.3 s).

    Into an empty cache the two halves of the set compile in two processes at once (numba
    compiles one function at a time per process), halving the first run's wait on 2 cores.
    """
    if not kernels_cached():
        import multiprocessing as mp

        helper = mp.get_context("spawn").Process(target=_warm_group, args=("b",), name="bench-kernel-jit")
        helper.start()
        _warm_group("a")
        helper.join()
    _warm_group("a")
    _warm_group("b")
