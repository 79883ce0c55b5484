"""A cell's figures from its repetitions (worker processes): merged figures, the between/within
split of their variance, the unstable mark, and which repetitions the figures may use.

Model and intervals: bench.stats.processes. Each figure (throughput, mean, each percentile) is
the mean over the used repetitions of that repetition's figure; its interval is t over them,
moderated by the run's typical spread, for the figure a re-run reports (rerun=True): what a user
checks an interval against is the next run, whose own error adds to this one's. A
repetition measured under interference (other processes took more than the stop rule's
max_interference of the CPU) is left out while at least two clean ones remain, and the reason
says so. A cell is unstable when a figure's between-process CV exceeds UNSTABLE_CV.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bench import stats
from bench.analysis.figures import histogram_record
from bench.results.records import Estimate, Latency, Metrics, Throughput, VarianceSplit

UNSTABLE_CV = 0.10  # between-process CV above this marks a cell unstable
ONE_PROCESS = ("one process: no re-run interval (where a re-run lands depends on the spread between worker "
               "processes, which one process cannot show)")
LATENCY_FIGURES = ("mean", "p50", "p90", "p95", "p99", "p999")
SPLIT_FIGURES = ("throughput", "mean", "p50", "p99")


def pick_used(interfered: list[bool]) -> list[bool]:
    """Which ok repetitions the figures use: all clean ones, and the interfered ones only while
    fewer than two clean ones remain (then every ok repetition is used, and flagged)."""
    clean = interfered.count(False)
    return [not bad or clean < 2 for bad in interfered]


def _se(e: Estimate | Throughput, z: float) -> float:
    if e.ci_low is None or e.ci_high is None:
        return 0.0
    return (e.ci_high - e.ci_low) / (2 * z)


@dataclass(frozen=True)
class Merged:
    metrics: Metrics
    variance: tuple[VarianceSplit, ...]
    unstable: str | None

    def rel_half_width(self, figure: str) -> float:
        e = self.metrics.throughput if figure == "throughput" else getattr(self.metrics.latency_ms, figure)
        return stats.Interval(e.ci_low, e.ci_high, "").rel_half_width(e.value)


FIGURES = ("throughput", *LATENCY_FIGURES)


def figure_of(m: Metrics, figure: str) -> float:
    return m.throughput.value if figure == "throughput" else getattr(m.latency_ms, figure).value


def priors(cells: list[list[Metrics]]) -> dict[str, stats.Prior]:
    """The run's typical between-process spread of each figure, from every cell measured in at
    least 2 processes (bench.stats.processes: the moderated interval)."""
    out = {}
    for f in FIGURES:
        prior = stats.pooled_prior([[figure_of(m, f) for m in per] for per in cells if len(per) >= 2])
        if prior is not None:
            out[f] = prior
    return out


def merge(per: list[Metrics], kept_ns: list[np.ndarray], confidence: float,
          prior: dict[str, stats.Prior] | None = None) -> Merged:
    """One cell's metrics from its used repetitions' metrics (and their kept samples)."""
    z = stats.normal_quantile(0.5 + confidence / 2)
    r = len(per)
    prior = prior or {}

    def combine(values: list[float], ses: list[float], figure: str) -> tuple[Estimate, stats.Split | None]:
        iv = stats.process_interval(values, confidence, prior.get(figure), rerun=True)
        m = float(np.mean(values))
        split = stats.variance_split(values, ses) if r >= 2 else None
        return Estimate(m, iv.low, iv.high, iv.method), split

    splits: list[VarianceSplit] = []
    tp_values = [m.throughput.value for m in per]
    tp_est, tp_split = combine(tp_values, [_se(m.throughput, z) for m in per], "throughput")
    if r < 2:
        # One process says nothing of where a re-run lands: most of this machine's error lies between
        # processes, and its own window's interval (often ±0.5%) would read as a precision it lacks.
        tp = replace(per[0].throughput, ci_low=None, ci_high=None, method=ONE_PROCESS)
    else:
        tp = Throughput(tp_est.value, tp_est.ci_low, tp_est.ci_high, per[0].throughput.unit,
                        f"mean of {r} processes' throughputs; {tp_est.method}", confidence)
    if tp_split is not None:
        splits.append(VarianceSplit("throughput", tp_split.between_cv, tp_split.within_cv))
    fields = {}
    for f in LATENCY_FIGURES:
        ests = [getattr(m.latency_ms, f) for m in per]
        if r < 2:
            fields[f] = Estimate(ests[0].value, None, None, ONE_PROCESS)
            continue
        est, split = combine([e.value for e in ests], [_se(e, z) for e in ests], f)
        fields[f] = est
        if split is not None and f in SPLIT_FIGURES:
            splits.append(VarianceSplit(f, split.between_cv, split.within_cv))
    all_ns = np.concatenate(kept_ns) if kept_ns else np.empty(0, dtype=np.int64)
    latency = Latency(
        n=sum(m.latency_ms.n for m in per),
        min=Estimate(min(m.latency_ms.min.value for m in per)),
        max=Estimate(max(m.latency_ms.max.value for m in per)),
        histogram=histogram_record(all_ns) if all_ns.size else per[0].latency_ms.histogram,
        confidence=confidence,
        **fields,
    )
    worst = max(splits, key=lambda s: s.between_cv, default=None)
    unstable = None
    if worst is not None and worst.between_cv > UNSTABLE_CV:
        unstable = (f"{worst.figure} varies {worst.between_cv:.0%} between processes (CV over {r} repetitions; "
                    f"rule: over {UNSTABLE_CV:.0%})")
    return Merged(Metrics(tp, latency), tuple(splits), unstable)
