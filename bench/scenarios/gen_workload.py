"""The generate scenario's workload: prompt and output lengths (fixed, uniform, normal; seeded), a
trace file of (arrival, prompt_len, output_len) rows, and the requests drawn from them.

Lengths in the suite: `prompt_len = 32` (fixed), `{ uniform = [16, 64] }` (every integer in the
range equally likely, both ends included), or `{ mean = 32, std = 8 }` (normal, rounded, clipped
to [1, max]; max defaults to mean + 4 std). A trace is JSON Lines, one request per line:
{"arrival_s": 0.25, "prompt_len": 32, "output_len": 64}, arrivals in seconds from the start,
non-decreasing. Prompt token ids are drawn uniformly from the vocabulary, per request from the
benchmark's seed and the request's index, so every target of a benchmark gets the same prompts.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAX_TRACE_ROWS = 1_000_000
MAX_TRACE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LengthSpec:
    """A length distribution in tokens."""

    kind: str  # "fixed" | "uniform" | "normal"
    low: int  # fixed: the length; uniform: lowest; normal: 1 (the clip)
    high: int  # fixed: the length; uniform, normal: the largest it draws
    mean: float = 0.0
    std: float = 0.0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "fixed":
            return np.full(n, self.low, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, size=n).astype(np.int64)
        return np.clip(np.rint(rng.normal(self.mean, self.std, size=n)), self.low, self.high).astype(np.int64)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.low}"
        if self.kind == "uniform":
            return f"uniform {self.low}-{self.high}"
        return f"normal mean {self.mean:g} std {self.std:g}, clipped to {self.low}-{self.high}"


def parse_length(reader: Any, value: Any, path: str) -> LengthSpec:
    """An integer, { uniform = [LOW, HIGH] } or { mean = M, std = S[, max = N] }."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise reader.fail(path, f"{value!r} is not allowed; expected a length of at least 1 token")
        return LengthSpec("fixed", value, value)
    allowed = "an integer >= 1, { uniform = [LOW, HIGH] } or { mean = M, std = S }"
    reader.expect(value, (dict,), path, allowed)
    if "uniform" in value:
        reader.check_keys(value, ("uniform",), path)
        pair = value["uniform"]
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
            raise reader.fail(f"{path}.uniform", f"{pair!r} is not allowed; expected [LOW, HIGH], two integers")
        low, high = pair
        if not 1 <= low <= high:
            raise reader.fail(f"{path}.uniform", f"{pair!r} is not allowed; expected 1 <= LOW <= HIGH")
        return LengthSpec("uniform", low, high)
    reader.check_keys(value, ("mean", "std", "max"), path)
    if "mean" not in value or "std" not in value:
        raise reader.fail(path, f"{value!r} is not allowed; expected {allowed}")
    mean = float(reader.expect(value["mean"], (int, float), f"{path}.mean", "a number >= 1"))
    std = float(reader.expect(value["std"], (int, float), f"{path}.std", "a number >= 0"))
    if not (math.isfinite(mean) and mean >= 1):
        raise reader.fail(f"{path}.mean", f"{value['mean']!r} is not allowed; expected a number >= 1")
    if not (math.isfinite(std) and std >= 0):
        raise reader.fail(f"{path}.std", f"{value['std']!r} is not allowed; expected a number >= 0")
    high = value.get("max", int(math.ceil(mean + 4 * std)))
    if isinstance(high, bool) or not isinstance(high, int) or high < mean:
        raise reader.fail(f"{path}.max", f"{high!r} is not allowed; expected an integer >= the mean ({mean:g})")
    return LengthSpec("normal", 1, high, mean, std)


@dataclass(frozen=True)
class TraceRow:
    arrival_s: float
    prompt_len: int
    output_len: int


def read_trace(path: Path, shown: str) -> tuple[TraceRow, ...]:
    """Rows of a JSON Lines trace; a bad row raises ValueError naming file, line and what is wrong."""
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_BYTES:
            raise ValueError(f"{shown}: {size:,} bytes, over the {MAX_TRACE_BYTES:,}-byte limit for a trace")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{shown}: no such trace file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{shown}: cannot read the trace: {exc}") from None
    rows: list[TraceRow] = []
    last = 0.0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{shown}:{number}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not a JSON object ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: not a JSON object; expected {{\"arrival_s\": S, \"prompt_len\": N, \"output_len\": N}}")
        unknown = sorted(set(doc) - {"arrival_s", "prompt_len", "output_len"})
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (allowed: arrival_s, prompt_len, output_len)")
        for key in ("arrival_s", "prompt_len", "output_len"):
            if key not in doc:
                raise ValueError(f"{where}: missing {key!r}")
        arrival = doc["arrival_s"]
        if isinstance(arrival, bool) or not isinstance(arrival, (int, float)) or not math.isfinite(arrival) or arrival < 0:
            raise ValueError(f"{where}: arrival_s {arrival!r} is not allowed; expected seconds >= 0")
        if arrival < last:
            raise ValueError(f"{where}: arrival_s {arrival!r} is before the previous row's {last!r}; "
                             "rows must be in arrival order")
        for key in ("prompt_len", "output_len"):
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{where}: {key} {v!r} is not allowed; expected an integer >= 1")
        rows.append(TraceRow(float(arrival), doc["prompt_len"], doc["output_len"]))
        last = float(arrival)
        if len(rows) > MAX_TRACE_ROWS:
            raise ValueError(f"{shown}: over {MAX_TRACE_ROWS:,} rows")
    if not rows:
        raise ValueError(f"{shown}: the trace holds no rows")
    return tuple(rows)


@dataclass(frozen=True)
class Request:
    index: int
    prompt_len: int
    output_len: int
    arrival_ns: int | None = None  # offset from the start of the schedule (open loop); None: closed loop


def prompt_ids(seed: int, index: int, length: int, vocab: int) -> np.ndarray:
    """Request `index`'s prompt token ids: the same in every process and on every target."""
    return np.random.default_rng([seed, 7, index]).integers(0, vocab, size=length, dtype=np.int64)


def draw_requests(prompt: LengthSpec, output: LengthSpec, n: int, seed: int,
                  arrivals_ns: np.ndarray | None = None) -> list[Request]:
    rng = np.random.default_rng([seed, 11])
    p, o = prompt.draw(rng, n), output.draw(rng, n)
    return [Request(i, int(p[i]), int(o[i]), None if arrivals_ns is None else int(arrivals_ns[i])) for i in range(n)]


def trace_requests(rows: tuple[TraceRow, ...]) -> list[Request]:
    return [Request(i, r.prompt_len, r.output_len, int(round(r.arrival_s * 1e9))) for i, r in enumerate(rows)]
