"""Targets side by side within one run: ranked by throughput, the Pareto front marked.

For each (benchmark, batch size, scenario, concurrency), ok cells are ranked by throughput. A cell is on the
Pareto front of throughput (higher is better) against p99 latency (lower is better) when no other
cell there is at least as good on both and better on one. Cells whose outputs disagree with the
reference are marked and never on the front: a fast wrong answer is not a choice.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.results.records import Cell, Run


@dataclass(frozen=True)
class RankedTarget:
    group: str
    rank: int
    cell: Cell
    pareto: bool
    disagrees: bool


def _dominates(a: Cell, b: Cell) -> bool:
    ta, tb = a.metrics.throughput.value, b.metrics.throughput.value
    pa, pb = a.metrics.latency_ms.p99.value, b.metrics.latency_ms.p99.value
    return ta >= tb and pa <= pb and (ta > tb or pa < pb)


def rank_targets(run: Run) -> list[RankedTarget]:
    groups: dict[str, list[Cell]] = {}
    for c in run.cells:
        if c.status == "ok" and c.metrics is not None:
            conc = "" if c.concurrency is None else f"/c{c.concurrency}"
            groups.setdefault(f"{c.benchmark}/b{c.batch_size}/{c.scenario}{conc}", []).append(c)
    out: list[RankedTarget] = []
    for group, cells in groups.items():
        agreeing = [c for c in cells if not (c.agreement and c.agreement.verdict == "fail")]
        ranked = sorted(cells, key=lambda c: -c.metrics.throughput.value)
        for i, c in enumerate(ranked, start=1):
            disagrees = bool(c.agreement and c.agreement.verdict == "fail")
            pareto = not disagrees and not any(_dominates(o, c) for o in agreeing if o is not c)
            out.append(RankedTarget(group, i, c, pareto, disagrees))
    return out
