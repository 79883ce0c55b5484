"""Goodput of generated requests, from their clock marks (numpy only: the worker's rate search
uses it, and a worker does not import the statistics kernels).

A request meets the SLO when its TTFT <= ttft_ms and its TPOT <= tpot_ms (a one-token request
has no TPOT); attainment = the share that meet it, goodput = those requests per second.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.results.records import GenerateLoadPoint

LOGITS_STEPS = 64  # the agreement probe keeps the first sequence's logits for this many steps


@dataclass(frozen=True)
class RequestFigures:
    """Per-request figures in ns (float for TPOT), from the concatenated stream logs."""

    ttft_ns: np.ndarray
    e2e_ns: np.ndarray
    tpot_ns: np.ndarray  # requests of more than one token only
    multi: np.ndarray  # bool per request: made more than one token
    output_lens: np.ndarray

    @classmethod
    def of(cls, start: np.ndarray, first: np.ndarray, end: np.ndarray, output_lens: np.ndarray) -> RequestFigures:
        multi = output_lens > 1
        tpot = (end - first)[multi].astype(np.float64) / (output_lens[multi] - 1)
        return cls(first - start, end - start, tpot, multi, output_lens)

    def good(self, ttft_ms: float | None, tpot_ms: float | None) -> np.ndarray:
        ok = np.ones(self.ttft_ns.size, dtype=bool)
        if ttft_ms is not None:
            ok &= self.ttft_ns <= ttft_ms * 1e6
        if tpot_ms is not None:
            tpot_all = np.zeros(self.ttft_ns.size)
            tpot_all[self.multi] = self.tpot_ns
            ok &= tpot_all <= tpot_ms * 1e6
        return ok


def goodput(req: RequestFigures, window_ns: int, ttft_ms: float | None, tpot_ms: float | None) -> tuple[float, float]:
    """(requests/s that met every limit, their share of all requests)."""
    n = req.ttft_ns.size
    if n == 0 or window_ns <= 0:
        return 0.0, 0.0
    good = int(req.good(ttft_ms, tpot_ms).sum())
    return good / (window_ns / 1e9), good / n


def load_point(offered: float, achieved: float, req: RequestFigures, window_ns: int, limits: dict[str, float],
               min_goodput: float) -> GenerateLoadPoint:
    rate, share = goodput(req, window_ns, limits.get("ttft_ms"), limits.get("tpot_ms"))
    ttft99 = float(np.quantile(req.ttft_ns, 0.99)) / 1e6 if req.ttft_ns.size else 0.0
    tpot99 = float(np.quantile(req.tpot_ns, 0.99)) / 1e6 if req.tpot_ns.size else None
    return GenerateLoadPoint(offered, achieved, rate, share, ttft99, tpot99, int(req.ttft_ns.size),
                             bool(req.ttft_ns.size and share >= min_goodput))


