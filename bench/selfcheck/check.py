"""What a self-check is: a measurement that prints its figures and the goal they are held to."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.codec import to_json


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


@dataclass(frozen=True)
class Check:
    name: str
    default: bool  # run when --checks is not given
    run: Callable[[int], Any]  # (paired rounds, where the check has rounds) -> its record
    lines: Callable[[Any], list[str]]  # the record, for people
    as_json: Callable[[Any], Any] = to_json
    needs_loadgen: bool = False  # MLPerf LoadGen must be installed
