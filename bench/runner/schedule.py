"""Which work unit runs next. A unit is one repetition of one cell, run by one worker process.

Today every cell runs once, in plan order; an order that interleaves the repetitions of all cells
in rounds is one more Schedule here, with no change to scenarios, isolation or assembly.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from bench.runner.plan import PlannedCell


@dataclass(frozen=True)
class WorkUnit:
    cell: PlannedCell
    repetition: int  # 0-based


class Schedule(Protocol):
    def units(self, cells: Sequence[PlannedCell]) -> Iterator[WorkUnit]: ...


@dataclass(frozen=True)
class InPlanOrder:
    """One repetition of each cell, cells in plan order (references first): today's order. (Several
    repetitions need their figures merged into one cell, which assembly does not do yet.)"""

    def units(self, cells: Sequence[PlannedCell]) -> Iterator[WorkUnit]:
        for cell in cells:
            yield WorkUnit(cell, 0)
