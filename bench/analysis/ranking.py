"""Targets side by side within one run: ranked by throughput, the Pareto front marked.

Each target is compared with the next one down by paired per-round ratios: the targets of a
benchmark share the rounds of a run (repetition i of every cell ran in round i, in one shuffled
order), so throughput_A,i / throughput_B,i cancels what the machine did in that round (its drift,
a busy minute). The ratio is the geometric mean over the rounds both measured, its interval a
paired t on the log ratios (the same pairing the self-check's ABBA rounds use).

For each (benchmark, batch size, scenario, concurrency), ok cells are ranked by throughput. A cell is on the
Pareto front of throughput (higher is better) against p99 latency (lower is better) when no other
cell there is at least as good on both and better on one. Cells whose outputs disagree with the
reference are marked and never on the front: a fast wrong answer is not a choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.results.records import Cell, Run


@dataclass(frozen=True)
class PairedRatio:
    """This target's throughput over the next-ranked one's, paired by round."""

    ratio: float
    low: float | None
    high: float | None
    rounds: int

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 1: the order of the two is not a coin toss."""
        return self.low is not None and self.low > 1.0


@dataclass(frozen=True)
class RankedTarget:
    group: str
    rank: int
    cell: Cell
    pareto: bool
    disagrees: bool
    vs_next: PairedRatio | None = None


def paired_ratio(a: Cell, b: Cell, confidence: float = 0.95) -> PairedRatio | None:
    """a / b over the rounds in which both measured a used repetition; None with fewer than 2."""
    from bench.stats import t_quantile  # numba: loaded when a report ranks, not to build the CLI

    tb = {r.index: r.throughput for r in b.used_repetitions if r.throughput}
    logs = np.array([math.log(r.throughput / tb[r.index]) for r in a.used_repetitions
                     if r.throughput and r.index in tb])
    if logs.size < 2:
        return None
    m = float(logs.mean())
    half = t_quantile(0.5 + confidence / 2, logs.size - 1) * float(logs.std(ddof=1)) / math.sqrt(logs.size)
    return PairedRatio(math.exp(m), math.exp(m - half), math.exp(m + half), int(logs.size))


def _dominates(a: Cell, b: Cell) -> bool:
    ta, tb = a.metrics.throughput.value, b.metrics.throughput.value
    pa, pb = a.metrics.latency_ms.p99.value, b.metrics.latency_ms.p99.value
    return ta >= tb and pa <= pb and (ta > tb or pa < pb)


def workload(c: Cell) -> str:
    """The workload a cell measured, whatever the target: "bench/b4/single-stream", with its shape
    ("/seq=128": seq=128 and seq=512 are different workloads) and concurrency ("/c2")."""
    conc = "" if c.concurrency is None else f"/c{c.concurrency}"
    shape = f"/{c.key.dims_label}" if c.dims else ""
    return f"{c.benchmark}/b{c.batch_size}{shape}/{c.scenario}{conc}"


def workloads(run: Run) -> dict[str, list[Cell]]:
    """The run's ok cells by workload, in the run's order: the targets that can be set side by side."""
    groups: dict[str, list[Cell]] = {}
    for c in run.cells:
        if c.status == "ok" and c.metrics is not None:
            groups.setdefault(workload(c), []).append(c)
    return groups


def rank_targets(run: Run) -> list[RankedTarget]:
    out: list[RankedTarget] = []
    for group, cells in workloads(run).items():
        agreeing = [c for c in cells if not (c.agreement and c.agreement.verdict == "fail")]
        ranked = sorted(cells, key=lambda c: -c.metrics.throughput.value)
        for i, c in enumerate(ranked, start=1):
            disagrees = bool(c.agreement and c.agreement.verdict == "fail")
            pareto = not disagrees and not any(_dominates(o, c) for o in agreeing if o is not c)
            vs_next = paired_ratio(c, ranked[i]) if i < len(ranked) else None
            out.append(RankedTarget(group, i, c, pareto, disagrees, vs_next))
    return out
