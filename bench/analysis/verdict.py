"""What a run's answer is: the cells that failed, disagree with their reference, broke their SLO,
or ran an invalid load; and the cells whose figures it should be read with care for (unstable
between worker processes, or measured while other processes took the machine). One definition,
read by `bench run`'s exit code and by every report's headline.

A pass over unstable or interfered cells is not a plain pass (issue 27): the headline says how many
there were and what that does to the answer (amber), and `bench run --fail-on-unstable` makes it
exit 1. It stays 0 by default: the figures are still the best this machine gave, with intervals
as wide as their spread."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bench.results.records import Cell, Run

# "pass": green; "caution": a pass whose figures may not repeat (amber); "fail": the answer is no,
# or a cell failed (red).
Headline = Literal["pass", "caution", "fail"]


@dataclass(frozen=True)
class RunVerdict:
    failed: tuple[Cell, ...]
    disagreeing: tuple[Cell, ...]
    slo_failed: tuple[Cell, ...]
    invalid: tuple[Cell, ...]  # a load that did not count (a server run below its offered rate, ...)
    throttled: tuple[Cell, ...]  # GPU clocks held down during the measured window
    measured: int = 0  # ok cells
    unstable: tuple[Cell, ...] = ()  # figures vary over 10% between worker processes (Cell.unstable)
    interfered: tuple[Cell, ...] = ()  # a repetition measured while other processes took the CPU (or GPU)
    interfered_used: tuple[Cell, ...] = ()  # ... and kept in the figures (fewer than 2 clean ones remained)

    @classmethod
    def of(cls, run: Run) -> RunVerdict:
        cells = run.cells
        ok = [c for c in cells if c.status == "ok"]
        return cls(
            failed=tuple(c for c in cells if c.status == "failed"),
            disagreeing=tuple(c for c in cells if c.agreement is not None and c.agreement.verdict == "fail"),
            slo_failed=tuple(c for c in cells if c.slo is not None and not c.slo.passed),
            invalid=tuple(c for c in cells if c.server is not None and not c.server.valid),
            throttled=tuple(c for c in cells if c.gpu is not None and c.gpu.throttled),
            measured=len(ok),
            unstable=tuple(c for c in ok if c.unstable),
            interfered=tuple(c for c in ok if any(r.interfered for r in c.repetitions)),
            interfered_used=tuple(c for c in ok if any(r.interfered and r.used for r in c.repetitions)),
        )

    @property
    def answer_is_no(self) -> bool:
        """An SLO failed, outputs disagree, or a load was invalid: exit 1 when nothing failed."""
        return bool(self.disagreeing or self.slo_failed or self.invalid)

    @property
    def passed(self) -> bool:
        return not self.failed and not self.answer_is_no

    @property
    def shaky(self) -> tuple[Cell, ...]:
        """The cells unstable or interfered, each once."""
        return tuple({c.id: c for c in (*self.unstable, *self.interfered)}.values())

    @property
    def headline(self) -> Headline:
        if not self.passed:
            return "fail"
        return "caution" if self.shaky else "pass"

    @property
    def word(self) -> str:
        """The headline's word: "pass", "pass with caveats" or "FAIL"."""
        return {"pass": "pass", "caution": "pass with caveats", "fail": "FAIL"}[self.headline]

    def caveat(self) -> str:
        """What the unstable and interfered cells do to the answer, in one sentence ("" when none)."""
        if not self.shaky:
            return ""
        parts = []
        if self.unstable:
            parts.append(f"{len(self.unstable)} of {self.measured} measured cells unstable (a figure varies over 10% "
                         "between worker processes)")
        if self.interfered:
            used = (f", {len(self.interfered_used)} with interfered processes in their figures (fewer than 2 clean "
                    "ones remained: those figures read slow)" if self.interfered_used else
                    ", the interfered processes left out of the figures")
            parts.append(f"{len(self.interfered)} of {self.measured} measured under interference from other "
                         f"processes{used}")
        effect = ("their figures may not repeat: an SLO pass there holds for this run's figures only, and a compare "
                  "against this run calls their changes smaller than that spread inconclusive; re-run on a quiet "
                  "machine (bench run --fail-on-unstable exits 1 on this)")
        return "; ".join(parts) + ": " + effect
