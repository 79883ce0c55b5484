"""Stopping rules: when a measured window ends, as one replaceable piece.

A rule sees the elapsed time and the samples so far between chunks of the measured loop (never
inside one) and returns the stop reason, or None to go on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bench.config import StopSpec


class StopRule(Protocol):
    def check(self, elapsed_ns: int, latencies_ns: list[np.ndarray]) -> str | None:
        """The stop reason, or None to keep measuring."""


@dataclass(frozen=True)
class FixedStop:
    """Stop once min_seconds and min_iterations are both met, or at max_seconds regardless."""

    min_seconds: float
    max_seconds: float
    min_iterations: int

    @classmethod
    def from_spec(cls, spec: StopSpec) -> "FixedStop":
        return cls(spec.min_seconds, spec.max_seconds, spec.min_iterations)

    def check(self, elapsed_ns: int, latencies_ns: list[np.ndarray]) -> str | None:
        n = sum(a.size for a in latencies_ns)
        elapsed_s = elapsed_ns / 1e9
        if elapsed_s >= self.min_seconds and n >= self.min_iterations:
            return f"min_seconds ({self.min_seconds:g} s) and min_iterations ({self.min_iterations}) met"
        if elapsed_s >= self.max_seconds:
            return f"max_seconds ({self.max_seconds:g} s) reached with {n} of {self.min_iterations} min_iterations"
        return None
