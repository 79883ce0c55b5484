"""What a run's answer is: the cells that failed, disagree with their reference, broke their SLO,
or ran an invalid load. One definition, read by `bench run`'s exit code and by every report."""
from __future__ import annotations

from dataclasses import dataclass

from bench.results.records import Cell, Run


@dataclass(frozen=True)
class RunVerdict:
    failed: tuple[Cell, ...]
    disagreeing: tuple[Cell, ...]
    slo_failed: tuple[Cell, ...]
    invalid: tuple[Cell, ...]  # a load that did not count (a server run below its offered rate, ...)
    throttled: tuple[Cell, ...]  # GPU clocks held down during the measured window

    @classmethod
    def of(cls, run: Run) -> RunVerdict:
        cells = run.cells
        return cls(
            failed=tuple(c for c in cells if c.status == "failed"),
            disagreeing=tuple(c for c in cells if c.agreement is not None and c.agreement.verdict == "fail"),
            slo_failed=tuple(c for c in cells if c.slo is not None and not c.slo.passed),
            invalid=tuple(c for c in cells if c.server is not None and not c.server.valid),
            throttled=tuple(c for c in cells if c.gpu is not None and c.gpu.throttled),
        )

    @property
    def answer_is_no(self) -> bool:
        """An SLO failed, outputs disagree, or a load was invalid: exit 1 when nothing failed."""
        return bool(self.disagreeing or self.slo_failed or self.invalid)

    @property
    def passed(self) -> bool:
        return not self.failed and not self.answer_is_no
