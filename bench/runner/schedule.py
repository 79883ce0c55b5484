"""Which work unit runs next. A unit is one repetition of one cell, run by one worker process.

Rounds: every cell that still needs a repetition gets one per round, and each round runs its
cells in a seeded shuffled order, so the machine's slow drift and its per-process modes spread
over all cells instead of landing on one, and the targets of a benchmark share each round (their
per-round ratios cancel drift: bench.analysis.ranking). Within a sweep (one benchmark, target and
scenario) the cells keep ascending batch size and concurrency in every round: a sweep stops at
the first batch that ran out of memory or the first concurrency that broke the SLO, so the
smaller one must run first. The seed is fixed, so two runs of one suite use the same orders and
a position effect cancels in their comparison.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bench.runner.plan import PlannedCell

ROUNDS_SEED = 20261128


class Schedule(Protocol):
    def order(self, cells: Sequence[PlannedCell], round_index: int) -> list[PlannedCell]:
        """The order in which round `round_index` runs `cells` (those that still need a repetition)."""


def _sweep(c: PlannedCell) -> tuple[str, str, str]:
    return c.key.benchmark, c.key.target, c.key.scenario


def _within(c: PlannedCell) -> tuple[int, int, int]:
    return c.key.batch_size, c.key.concurrency or 0, c.index


@dataclass(frozen=True)
class ShuffledRounds:
    seed: int = ROUNDS_SEED

    def order(self, cells: Sequence[PlannedCell], round_index: int) -> list[PlannedCell]:
        rng = np.random.default_rng([self.seed, round_index])
        slots = [cells[i] for i in rng.permutation(len(cells))]
        # Each sweep keeps the slots the shuffle gave it, filled in ascending order.
        queues: dict[tuple[str, str, str], list[PlannedCell]] = {}
        for c in sorted(cells, key=_within):
            queues.setdefault(_sweep(c), []).append(c)
        return [queues[_sweep(c)].pop(0) for c in slots]


@dataclass(frozen=True)
class InPlanOrder:
    """Plan order in every round (references first): for tests that need a known order."""

    def order(self, cells: Sequence[PlannedCell], round_index: int) -> list[PlannedCell]:
        return sorted(cells, key=lambda c: c.index)
