"""Speed against accuracy within one run: what each target costs in accuracy for what it gains in
throughput, and which targets are worth choosing (reads results; runs nothing).

Per workload (benchmark, batch size, shape, scenario, concurrency: bench.analysis.ranking.workload)
with at least two ok targets, each target's throughput, its throughput over the reference
target's paired by round (bench.analysis.ranking.paired_ratio: the targets of a benchmark share
rounds, so what the machine did in a round cancels), and its accuracy loss against the
reference's outputs on the accuracy samples (bench.analysis.accuracy: 1 - top-1 agreement,
1 - mean cosine, the mean relative error, 1 - token agreement). The reference's own loss is 0 by
definition: its answers are the ones the others are scored against.

A target is on the Pareto front of throughput (higher is better) against accuracy loss (lower is
better) when no other target of its workload is at least as good on both and better on one, by
the point estimates (the table shows each interval beside it, so a front point whose interval
overlaps a dominated one's reads as the close call it is). A target whose outputs fail agreement
(its accuracy loss over its tolerance, or its element-wise error over its precision's) is never
on the front and never pushes another off it: an answer the suite rejected is not a choice. A
target without an accuracy figure (a run that measured no accuracy samples for it) has no place
on the accuracy axis, and is neither on the front nor dominating.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.analysis.ranking import PairedRatio, paired_ratio, workloads
from bench.results.records import Accuracy, Cell, Run


def judged_by_accuracy(c: Cell) -> bool:
    """Whether the cell's agreement verdict was decided by its accuracy loss (an int8 target with
    accuracy figures), not by its element-wise error, which int8 makes large by design."""
    a = c.agreement
    return a is not None and a.accuracy is not None and c.target.precision.startswith("int8")


def fails(c: Cell) -> bool:
    return c.agreement is not None and c.agreement.verdict == "fail"


def has_accuracy(run: Run) -> bool:
    """Whether any cell of the run carries accuracy figures (the trade is worth showing)."""
    return any(c.agreement is not None and c.agreement.accuracy is not None for c in run.cells)


@dataclass(frozen=True)
class TradePoint:
    """One target of a workload: its cell, its speed against the reference's, its accuracy loss."""

    cell: Cell
    is_reference: bool
    loss: float | None  # accuracy loss against the reference (0 for the reference itself); None: not measured
    loss_low: float | None
    loss_high: float | None
    vs_reference: PairedRatio | None  # throughput / the reference's, paired by round; None for the reference
    fails: bool  # outputs fail agreement: never on the front
    pareto: bool

    @property
    def accuracy(self) -> Accuracy | None:
        return self.cell.agreement.accuracy if self.cell.agreement is not None else None


@dataclass(frozen=True)
class Tradeoff:
    """One workload's targets, fastest first."""

    workload: str
    reference: str | None  # the reference target's name, where the workload has its cell
    metric: str | None  # the accuracy metric (top1, cosine, abs-error, token); None: no accuracy figure
    points: tuple[TradePoint, ...]

    @property
    def front(self) -> tuple[TradePoint, ...]:
        """The Pareto front, lowest loss first (the reference, then faster and less accurate ones)."""
        return tuple(sorted((p for p in self.points if p.pareto), key=lambda p: (p.loss, -p.cell.metrics.throughput.value)))


def _dominates(a: TradePoint, b: TradePoint) -> bool:
    ta, tb = a.cell.metrics.throughput.value, b.cell.metrics.throughput.value
    return ta >= tb and a.loss <= b.loss and (ta > tb or a.loss < b.loss)


def _point(c: Cell, ref: Cell | None) -> TradePoint:
    is_ref = c.agreement is not None and c.agreement.verdict == "reference"
    acc = c.agreement.accuracy if c.agreement is not None else None
    if is_ref:
        loss, low, high = 0.0, 0.0, 0.0
    elif acc is not None:
        loss, low, high = acc.loss, acc.loss_ci_low, acc.loss_ci_high
    else:
        loss = low = high = None
    vs = None if is_ref or ref is None else paired_ratio(c, ref)
    return TradePoint(c, is_ref, loss, low, high, vs, fails(c), False)


def tradeoffs(run: Run) -> list[Tradeoff]:
    """Each workload with at least two ok targets, its Pareto front of throughput against
    accuracy loss marked."""
    from dataclasses import replace

    out = []
    for group, cells in workloads(run).items():
        if len(cells) < 2:
            continue
        ref = next((c for c in cells if c.agreement is not None and c.agreement.verdict == "reference"), None)
        points = [_point(c, ref) for c in sorted(cells, key=lambda c: -c.metrics.throughput.value)]
        eligible = [p for p in points if not p.fails and p.loss is not None]
        mine = {id(p) for p in eligible}
        points = [replace(p, pareto=id(p) in mine and not any(_dominates(o, p) for o in eligible if o is not p))
                  for p in points]
        metric = next((p.accuracy.metric for p in points if p.accuracy is not None), None)
        out.append(Tradeoff(group, None if ref is None else ref.target.name, metric, tuple(points)))
    return out
