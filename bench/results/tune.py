"""tune.json: the answer of `bench tune`, as a versioned record (read back by `bench report --tune`).

The search's measurements stay where every run's do: one run.json per session of the search in
the tune directory, and tune.jsonl, the journal of every process's figures, in the order they came
(a resumed search replays it). tune.json is derived from the journal; it is rewritten at the end of
every session.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bench.codec import from_json, to_json
from bench.errors import ResultFileError

TUNE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Figure:
    """A figure over a candidate's processes: geometric mean, t interval at the answer's confidence."""

    value: float
    low: float | None = None
    high: float | None = None
    n: int = 0


@dataclass(frozen=True)
class Ratio:
    """candidate / another on the objective, paired by round (> 1: better for throughput; for a
    latency objective < 1 is better)."""

    ratio: float
    low: float | None = None
    high: float | None = None
    rounds: int = 0


@dataclass(frozen=True)
class TunedCandidate:
    id: str  # TARGET/bN
    target: str  # the target's name in the search's runs
    settings: dict[str, Any]  # target, batch_size and each knob of the space that applies to it
    status: Literal["pick", "tie", "racing", "eliminated", "slo", "failed", "untried"]
    processes: int  # processes counted (clean)
    objective: Figure | None = None
    throughput: Figure | None = None  # samples/s
    p99_ms: Figure | None = None
    meets_slo: bool | None = None  # None: no SLO, or not shown either way
    vs_pick: Ratio | None = None  # at the race's corrected level
    reason: str = ""  # why it left the race
    out_round: int | None = None  # 0-based round after which it left
    pareto: bool = False  # no other candidate has both more throughput and a lower p99
    seconds: float = 0.0  # its processes' wall time


@dataclass(frozen=True)
class LookRecord:
    round: int  # 0-based
    leader: str
    racing: int  # candidates racing after the look
    out: tuple[tuple[str, str], ...] = ()  # (candidate, reason)


@dataclass(frozen=True)
class Confirmation:
    """The pick against the suite's default configuration, paired by round, judged as compare judges."""

    default: str
    pick: str
    verdict: str  # compare's answer for the pick as NEW against the default as BASE: faster | slower | unchanged | inconclusive | same
    ratio: Ratio | None = None  # pick / default on the objective, at the answer's confidence
    p_value: float | None = None
    text: str = ""


@dataclass(frozen=True)
class Cost:
    tried: int  # configurations measured at least once
    space: int  # configurations in the space (valid combinations)
    processes: int  # worker processes the search ran
    seconds: float  # their wall time
    grid_processes: int  # the full grid at the pick's precision: space x the pick's processes
    grid_seconds: float  # estimated from each tried candidate's mean process time (the rest at the mean)
    fraction: float  # seconds / grid_seconds


@dataclass(frozen=True)
class TuneAnswer:
    schema_version: int
    benchmark: str
    scenario: str
    objective: str
    higher_is_better: bool
    slo: dict[str, float]
    confidence: float
    indifference: float
    seed: int
    mode: Literal["race", "proposed", "grid"]  # race: the whole space; proposed: TPE; grid: no elimination
    outcome: Literal["ok", "slo unmet", "no result"]
    pick: str | None
    ties: tuple[str, ...]
    closest: str | None  # when no candidate was shown to meet the SLO: the one nearest it
    end: str  # why the race ended
    guarantee: str  # the statement, in words
    candidates: tuple[TunedCandidate, ...]
    looks: tuple[LookRecord, ...]
    confirmation: Confirmation | None
    cost: Cost
    excluded: tuple[tuple[str, str], ...] = ()  # combinations the targets refused, with why
    runs: tuple[str, ...] = ()  # the run ids of the search's sessions
    created_at: str = ""

    def candidate(self, cid: str) -> TunedCandidate | None:
        return next((c for c in self.candidates if c.id == cid), None)


def write_answer(path: Path, answer: TuneAnswer) -> None:
    from bench.results.files import atomic_write_text

    atomic_write_text(path, json.dumps(to_json(answer), indent=1, allow_nan=False) + "\n")


def read_answer(path: Path) -> TuneAnswer:
    from bench.codec import DecodeError

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ResultFileError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"{path}: not a tune answer: {exc}") from None
    if not isinstance(data, dict) or data.get("schema_version") != TUNE_SCHEMA_VERSION:
        raise ResultFileError(f"{path}: not a tune answer of schema {TUNE_SCHEMA_VERSION}")
    try:
        return from_json(TuneAnswer, data)
    except DecodeError as exc:
        raise ResultFileError(f"{path}: {exc.path}: {exc.message}") from None
