"""What serving costs: a served target against an in-process one on the same model and workload,
paired by round, as a figure with its interval (issue 28, item 5).

Within one run the targets of a benchmark share its rounds (repetition i of every cell ran in round
i, bench.analysis.ranking), so the served cell's process i and the in-process cell's process i saw
the same minute of the machine. The overhead per request is the mean over those rounds of the
difference of their p50 latencies (ms, served - in-process), with a paired t interval; the time
ratio is the geometric mean of their per-sample time ratios (1 / throughput), also paired. A served
cell is one whose requests the driver counted (Cell.requests); an in-process one has none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.results.records import Cell, Run


@dataclass(frozen=True)
class ServingOverhead:
    group: str  # benchmark/bN[/dims]/scenario[/cC]
    served: str  # the served target's name
    in_process: str  # the in-process target's name
    rounds: int  # rounds both measured
    added_p50_ms: float  # served p50 - in-process p50, mean over the rounds
    added_p50_low_ms: float | None
    added_p50_high_ms: float | None
    # served time per sample / in-process, geometric mean over the rounds; None under an open
    # loop, whose throughput is the offered rate on both sides (not a figure of either target)
    time_ratio: float | None
    time_ratio_low: float | None
    time_ratio_high: float | None
    served_error_rate: float  # the served cell's failed / sent: an overhead over failing requests is flagged

    def line(self) -> str:
        def span(lo: float | None, hi: float | None, fmt: str) -> str:
            return "" if lo is None or hi is None else f" [{lo:{fmt}}, {hi:{fmt}}]"

        errors = f"; {self.served_error_rate:.1%} of its requests failed" if self.served_error_rate else ""
        ratio = ("" if self.time_ratio is None else
                 f", time per sample x{self.time_ratio:.3g}{span(self.time_ratio_low, self.time_ratio_high, '.3g')}")
        return (f"{self.group}: {self.served} over {self.in_process}: +{self.added_p50_ms:.3g} ms p50 per request"
                f"{span(self.added_p50_low_ms, self.added_p50_high_ms, '.3g')}{ratio} "
                f"(95%, paired over {self.rounds} rounds){errors}")


def _group(c: Cell) -> str:
    conc = "" if c.concurrency is None else f"/c{c.concurrency}"
    shape = f"/{c.key.dims_label}" if c.dims else ""
    return f"{c.benchmark}/b{c.batch_size}{shape}/{c.scenario}{conc}"


def _paired(values: list[float], confidence: float) -> tuple[float, float | None, float | None]:
    """Mean and its t interval over paired differences (None bounds with fewer than 2)."""
    from bench.stats import t_quantile  # numba: loaded when a report asks, not to build the CLI

    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if x.size < 2:
        return m, None, None
    half = t_quantile(0.5 + confidence / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return m, m - half, m + half


def overhead(served: Cell, local: Cell, confidence: float = 0.95) -> ServingOverhead | None:
    """served - local over the rounds in which both kept a used repetition; None with none."""
    by_round = {r.index: r for r in local.used_repetitions if r.p50_ms and r.throughput}
    pairs = [(r, by_round[r.index]) for r in served.used_repetitions
             if r.p50_ms and r.throughput and r.index in by_round]
    if not pairs:
        return None
    added, lo, hi = _paired([s.p50_ms - l.p50_ms for s, l in pairs], confidence)
    log_ratio, rlo, rhi = _paired([math.log(l.throughput / s.throughput) for s, l in pairs], confidence)
    rate = served.requests.error_rate if served.requests is not None else 0.0
    if served.server is not None or local.server is not None:  # open loop: throughput is the offered rate
        return ServingOverhead(_group(served), served.target.name, local.target.name, len(pairs), added, lo, hi,
                               None, None, None, rate)
    return ServingOverhead(_group(served), served.target.name, local.target.name, len(pairs), added, lo, hi,
                           math.exp(log_ratio), None if rlo is None else math.exp(rlo),
                           None if rhi is None else math.exp(rhi), rate)


def serving_overheads(run: Run, confidence: float = 0.95) -> list[ServingOverhead]:
    """Every served ok cell against every in-process ok cell of the same workload in this run."""
    groups: dict[str, list[Cell]] = {}
    for c in run.cells:
        if c.status == "ok" and c.metrics is not None:
            groups.setdefault(_group(c), []).append(c)
    out = []
    for cells in groups.values():
        served = [c for c in cells if c.requests is not None]
        local = [c for c in cells if c.requests is None]
        for s in served:
            for lc in local:
                got = overhead(s, lc, confidence)
                if got is not None:
                    out.append(got)
    return out
