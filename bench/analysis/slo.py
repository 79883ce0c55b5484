"""The one SLO evaluation: latency limits (ms) against a cell's figures.

Used for a cell's `slo` record, for the server scenario's validity and for each rate a peak
search tries; a limit holds when the figure is at most the limit.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from bench.results.records import Latency, Slo, SloCheck

# SLO key -> the quantile it limits (mean_ms is the mean); the figure names of Latency.
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def evaluate(limits: Mapping[str, float], value_ms: Callable[[str], float]) -> Slo | None:
    """Each limit (key "p99_ms", ...) against value_ms(figure) (figure "p99", ...); None without limits."""
    if not limits:
        return None
    checks = []
    for key, limit in limits.items():
        value = float(value_ms(key.removesuffix("_ms")))
        checks.append(SloCheck(key, limit, value, value <= limit))
    return Slo(all(c.passed for c in checks), tuple(checks))


def of_latency(limits: Mapping[str, float], latency: Latency) -> Slo | None:
    """Against a cell's reported latency figures."""
    return evaluate(limits, lambda figure: getattr(latency, figure).value)


def of_samples_ms(limits: Mapping[str, float], latencies_ms: np.ndarray) -> Slo | None:
    """Against raw latencies in ms (type-7 quantiles, as the reported figures use)."""
    return evaluate(limits, lambda figure: float(np.mean(latencies_ms)) if figure == "mean"
                    else float(np.quantile(latencies_ms, _QUANTILES[figure])))


def broken(slo: Slo | None) -> list[str]:
    """One phrase per broken limit: "p99 12.3 ms is over the SLO of 10 ms"."""
    if slo is None:
        return []
    return [f"{c.metric.removesuffix('_ms')} {c.value_ms:.3g} ms is over the SLO of {c.limit_ms:g} ms"
            for c in slo.checks if not c.passed]
