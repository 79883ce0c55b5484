"""What a self-check is: a measurement that prints its figures and the goal they are held to."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.codec import to_json


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass(frozen=True)
class Options:
    rounds: int = 21  # paired rounds, where a check has rounds
    runs: int = 2  # runs of the suite, where a check runs one (reproducibility)
    suite: str = "benchmarks.toml"


@dataclass(frozen=True)
class Check:
    name: str
    default: bool  # run when --checks is not given
    run: Callable[[Options], Any]  # -> its record
    lines: Callable[[Any], list[str]]  # the record, for people
    as_json: Callable[[Any], Any] = to_json
    needs_loadgen: bool = False  # MLPerf LoadGen must be installed
