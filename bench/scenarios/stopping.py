"""Stopping rules: when a measured window ends, as one replaceable piece.

A rule sees the elapsed measured time and the samples so far between chunks of the measured loop
(never inside one) and returns the stop reason, or None to go on.

CIStop, the default, ends the window as soon as the configured figures are known to the requested
precision (the relative half-width of their confidence interval), once the minimums are met;
at max_seconds it stops and says which precision was and was not reached. It runs inside the
worker, which stays free of numba (its memory is the cell's figure), so it uses numpy-only
intervals: the normal interval of the mean (for mean and throughput) and the order-statistic
bounds of percentiles with the binomial's normal approximation (continuity-corrected). The
reported intervals are then computed by the kernels (BCa bootstrap; exact binomial bounds) in
the parent; at the sample sizes where this rule stops the two agree to about one order statistic.
It re-evaluates only after the sample has grown by 10%, so its cost stays a small share of the run.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from bench.config.records import StopSpec


class StopRule(Protocol):
    def check(self, elapsed_ns: int, latencies_ns: list[np.ndarray]) -> str | None:
        """The stop reason, or None to keep measuring."""


@dataclass(frozen=True)
class FixedStop:
    """Stop once min_seconds and min_iterations are both met, or at max_seconds regardless."""

    min_seconds: float
    max_seconds: float
    min_iterations: int

    @classmethod
    def from_spec(cls, spec: StopSpec) -> "FixedStop":
        return cls(spec.min_seconds, spec.max_seconds, spec.min_iterations)

    def check(self, elapsed_ns: int, latencies_ns: list[np.ndarray]) -> str | None:
        n = sum(a.size for a in latencies_ns)
        elapsed_s = elapsed_ns / 1e9
        if elapsed_s >= self.min_seconds and n >= self.min_iterations:
            return f"min_seconds ({self.min_seconds:g} s) and min_iterations ({self.min_iterations}) met"
        if elapsed_s >= self.max_seconds:
            return f"max_seconds ({self.max_seconds:g} s) reached with {n} of {self.min_iterations} min_iterations"
        return None


_QUANTILE_OF = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def _z(confidence: float) -> float:
    """Two-sided normal quantile (the standard library's, so the worker needs no numba)."""
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def running_precision(latencies_ns: np.ndarray, figures: tuple[str, ...], confidence: float) -> dict[str, float]:
    """Relative half-width of each figure's interval (inf where no interval exists yet)."""
    out: dict[str, float] = {}
    x = latencies_ns.astype(np.float64)
    n = x.size
    z = _z(confidence)
    if {"throughput", "mean"} & set(figures):
        mean = float(x.mean())
        half = z * float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
        if "mean" in figures:
            out["mean"] = half / mean
        if "throughput" in figures:
            # throughput = batch / mean latency: the interval of a reciprocal is asymmetric.
            out["throughput"] = math.inf if half >= mean else max(mean / (mean - half) - 1, 1 - mean / (mean + half))
    wanted = [f for f in figures if f in _QUANTILE_OF]
    if wanted:
        s = np.sort(x)
        for fig in wanted:
            q = _QUANTILE_OF[fig]
            value = float(np.quantile(s, q))
            spread = z * math.sqrt(n * q * (1 - q)) + 0.5
            lo, hi = math.floor(n * q - spread), math.ceil(n * q + spread)  # 1-based ranks
            if lo < 2 or hi > n - 1 or value <= 0:  # never the sample extremes (as the kernels)
                out[fig] = math.inf
            else:
                out[fig] = max(value - s[lo - 1], s[hi - 1] - value) / value
    return out


def describe_precision(precision: dict[str, float]) -> str:
    return ", ".join(f"{k} ±{v:.1%}" if math.isfinite(v) else f"{k}: too few samples for an interval"
                     for k, v in precision.items())


@dataclass
class CIStop:
    """Stop when every figure's interval is within ci_rel_width (after the minimums), or at max_seconds."""

    spec: StopSpec
    _checked_n: int = field(default=0, init=False)
    last_precision: dict[str, float] = field(default_factory=dict, init=False)

    def check(self, elapsed_ns: int, latencies_ns: list[np.ndarray]) -> str | None:
        s = self.spec
        n = sum(a.size for a in latencies_ns)
        if n < self._checked_n:  # the loop thinned what it keeps (max_samples): judge the new sample afresh
            self._checked_n = 0
        elapsed_s = elapsed_ns / 1e9
        at_max = elapsed_s >= s.max_seconds
        if not at_max and (elapsed_s < s.min_seconds or n < s.min_iterations or n < self._checked_n * 1.1):
            return None
        self._checked_n = n
        self.last_precision = running_precision(np.concatenate(latencies_ns), s.ci_figures, s.confidence)
        target = f"target ±{s.ci_rel_width:.1%} at {s.confidence * 100:.4g}% confidence"
        if all(v <= s.ci_rel_width for v in self.last_precision.values()) and n >= s.min_iterations:
            return f"precision reached: {describe_precision(self.last_precision)} ({target})"
        if at_max:
            return (f"max_seconds ({s.max_seconds:g} s) reached before the precision target: "
                    f"{describe_precision(self.last_precision)} ({target})")
        return None


def rule_for(spec: StopSpec) -> StopRule:
    return CIStop(spec) if spec.ci_figures else FixedStop.from_spec(spec)
