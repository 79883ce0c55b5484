"""What a self-check is: a measurement that prints its figures and the goals they are held to,
and the verdict `bench self-check`'s exit code follows (0 every goal met, 1 a goal NOT met, 2 a
check that could not run; the worst wins)."""
from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from bench.codec import to_json
from bench.errors import EXIT_BAD_INPUT, EXIT_NO, EXIT_OK, BenchError

# While a check's lines are drawn (judge), met() collects each verdict here, in the order given.
_VERDICTS: ContextVar[list[bool] | None] = ContextVar("bench_selfcheck_verdicts", default=None)
# ... and marks the word it returns with the verdict's index, so that each verdict is tied to the
# line that prints it (a line may hold several, or none) without parsing the words back out of
# prose. NUL never occurs in a line of figures; the marks are removed before anything is shown.
_MARK = re.compile("\x00(\\d+)\x00")


def met(ok: bool) -> str:
    """The word a line prints for a goal ("met" or "NOT met"). Every goal a check states goes
    through here: it is what the command's exit code follows, so a goal printed is a goal judged."""
    word = "met" if ok else "NOT met"
    verdicts = _VERDICTS.get()
    if verdicts is None:
        return word
    verdicts.append(bool(ok))
    return f"\x00{len(verdicts) - 1}\x00{word}"


@dataclass(frozen=True)
class Goal:
    met: bool
    line: str  # the printed line that states it: its figure and its target


def judge(lines: Callable[[Any], list[str]], record: Any) -> tuple[list[str], tuple[Goal, ...]]:
    """A check's lines for people, and the goals they state, each with its verdict and its line."""
    verdicts: list[bool] = []
    token = _VERDICTS.set(verdicts)
    try:
        marked = lines(record)
    finally:
        _VERDICTS.reset(token)
    shown, goals = [], []
    for line in marked:
        clean = _MARK.sub("", line)
        shown.append(clean)
        goals.extend(Goal(verdicts[int(i)], clean.strip()) for i in _MARK.findall(line))
    return shown, tuple(goals)


@dataclass(frozen=True)
class Options:
    rounds: int = 21  # paired rounds, where a check has rounds
    runs: int = 2  # runs of the suite, where a check runs one (reproducibility)
    suite: str = "benchmarks.toml"
    slowdown: float = 0.20  # reproducibility: the planted slowdown of its ONNX Runtime CPU targets


@dataclass(frozen=True)
class Check:
    name: str
    default: bool  # run when --checks is not given
    run: Callable[[Options], Any]  # -> its record
    lines: Callable[[Any], list[str]]  # the record, for people; each goal's verdict through met()
    as_json: Callable[[Any], Any] = to_json
    needs_loadgen: bool = False  # MLPerf LoadGen must be installed
    # Why the record's goals could not be judged (no CUDA device, scipy absent), or None: a check
    # that measured nothing it could hold to its goal did not pass it.
    missing: Callable[[Any], str | None] = lambda record: None


@dataclass(frozen=True)
class Outcome:
    """One check as run: its lines, its goals, its figures as JSON, or why it could not run."""

    name: str
    lines: tuple[str, ...]
    goals: tuple[Goal, ...]
    figures: dict[str, Any]
    could_not_run: str = ""

    @property
    def verdict(self) -> str:
        if self.could_not_run:
            return "could not run"
        if not self.goals:
            return "no goal"  # figures only (the timer, the kernels' speed)
        return "met" if all(g.met for g in self.goals) else "NOT met"

    @property
    def exit_code(self) -> int:
        return {"could not run": EXIT_BAD_INPUT, "NOT met": EXIT_NO}.get(self.verdict, EXIT_OK)

    def as_json(self) -> dict[str, Any]:
        out = {**self.figures, "verdict": self.verdict, "goals": [to_json(g) for g in self.goals]}
        if self.could_not_run:
            out["reason"] = self.could_not_run
        return out


def run_check(check: Check, options: Options) -> Outcome:
    """Run one check. One that raises could not run: the command goes on with the others and
    exits 2, with the reason in one line (a harness bug also names where it was raised)."""
    try:
        record = check.run(options)
        shown, goals = judge(check.lines, record)
        figures = check.as_json(record)
        missing = check.missing(record)
    except BenchError as exc:  # a part the user can add (Ray, a suite): its own message says how
        return Outcome(check.name, (), (), {}, str(exc))
    except Exception as exc:  # noqa: BLE001 - said as the check's one line, and exit 2; never "met"
        return Outcome(check.name, (), (), {}, _describe(exc))
    return Outcome(check.name, tuple(shown), goals, figures, missing or "")


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
