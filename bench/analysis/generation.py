"""A generate cell's figures, from what its worker logged, and how they merge, agree and compare.

Per request: TTFT = first token - clock start (the batch's prefill in a closed loop, the scheduled
arrival in an open loop); end-to-end = last token - clock start; TPOT = (last token - first token)
/ (output tokens - 1), for requests of more than one token; ITL = every gap between a request's
consecutive tokens. Output tokens/s in aggregate = the tokens requests asked for (padding steps
excluded) / the measured window; per stream = the mean over requests of tokens / end-to-end time.
Prefill tokens/s = prompt tokens fed (padding included: it is computed) / prefill time.

Within a process, percentile intervals are distribution-free order-statistic intervals over
requests (tokens, for ITL; the gaps of one batch are shared by its rows, so these are narrower
than the truth there); across processes, each figure is the mean of the processes' figures with
the t interval for what a re-run reports (bench.stats.process_interval), as every other cell's.

Goodput: a request meets the SLO when its TTFT <= ttft_ms and its TPOT <= tpot_ms (a one-token
request has no TPOT); attainment = the share that meet it, goodput = those requests per second.
The cell's SLO passes when attainment >= generate.min_goodput (and any latency limit, on the
end-to-end request latency, holds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench import stats
from bench.analysis.compare import CellComparison, CompareContext, cell_verdict, decide, describe
from bench.analysis.figures import cell_metrics
from bench.analysis.goodput import RequestFigures, goodput
from bench.results.records import (Agreement, DecodePoint, Estimate, GenerateInfo, GenerateProcess, Latency, Metrics,
                                   Slo, SloCheck, Throughput)

CURVE_BINS = 16


def _latency(values_ns: np.ndarray, confidence: float, seed: int) -> Latency | None:
    if values_ns.size == 0:
        return None
    x = np.maximum(np.rint(values_ns).astype(np.int64), 1)
    return cell_metrics(x, max(int(x.sum()), 1), 1, confidence, seed)[0].latency_ms


def decode_curve(step_kv: np.ndarray, step_ns: np.ndarray, bins: int = CURVE_BINS) -> tuple[DecodePoint, ...]:
    """The decode step's median latency against the KV length, in up to `bins` equal-width bins."""
    if step_kv.size == 0:
        return ()
    lo, hi = int(step_kv.min()), int(step_kv.max())
    edges = np.unique(np.linspace(lo, hi, min(bins, hi - lo + 1) + 1).round().astype(np.int64))
    if edges.size < 2:
        return (DecodePoint(hi, float(np.median(step_ns)) / 1e6, int(step_ns.size)),)
    which = np.clip(np.searchsorted(edges, step_kv, side="left") - 1, 0, edges.size - 2)
    which[step_kv == edges[0]] = 0
    out = []
    for b in range(edges.size - 1):
        mask = which == b
        if mask.any():
            out.append(DecodePoint(int(edges[b + 1]), float(np.median(step_ns[mask])) / 1e6, int(mask.sum())))
    return tuple(out)


def tokens_throughput(output_tokens: int, requests: int, window_ns: int, confidence: float) -> Throughput:
    value = output_tokens / (window_ns / 1e9) if window_ns > 0 else 0.0
    z = stats.normal_quantile(0.5 + confidence / 2)
    rel = z / math.sqrt(requests) if requests else float("nan")
    return Throughput(value, value * (1 - rel), value * (1 + rel), unit="tokens/s",
                      method="output tokens / window; completed requests as a Poisson count (normal approximation)",
                      confidence=confidence)


def slo_of(req: RequestFigures, window_ns: int, token_limits: dict[str, float], latency_checks: Slo | None,
           min_goodput: float) -> tuple[Slo | None, float | None, float | None]:
    """(the cell's SLO, goodput requests/s, attainment); the token checks state the TTFT and TPOT
    at the min_goodput quantile, which must be within their limits."""
    if not token_limits and latency_checks is None:
        return None, None, None
    ttft_ms, tpot_ms = token_limits.get("ttft_ms"), token_limits.get("tpot_ms")
    checks = list(latency_checks.checks) if latency_checks is not None else []
    rate, share = goodput(req, window_ns, ttft_ms, tpot_ms)
    for key, limit, values in (("ttft_ms", ttft_ms, req.ttft_ns), ("tpot_ms", tpot_ms, req.tpot_ns)):
        if limit is None:
            continue
        value = float(np.quantile(values, min_goodput)) / 1e6 if values.size else 0.0
        checks.append(SloCheck(key, limit, value, value <= limit))
    passed = all(c.passed for c in checks) and (not token_limits or share >= min_goodput)
    return Slo(passed, tuple(checks)), (rate if token_limits else None), (share if token_limits else None)


def _process(info: GenerateInfo, tokens_per_s: float) -> GenerateProcess:
    return GenerateProcess(tokens_per_s, info.ttft_ms.p50.value, info.ttft_ms.p99.value,
                           info.tpot_ms.p50.value if info.tpot_ms else None,
                           info.tpot_ms.p99.value if info.tpot_ms else None, info.requests)


def with_process(info: GenerateInfo, tokens_per_s: float) -> GenerateInfo:
    return replace(info, per_process=(_process(info, tokens_per_s),))


def _merge_latency(per: list[Latency | None], confidence: float, prior: dict | None) -> Latency | None:
    from bench.analysis.repetitions import merge

    if any(lat is None for lat in per):
        return None
    dummy = Throughput(1.0)
    return merge([Metrics(dummy, lat) for lat in per], [], confidence, prior).metrics.latency_ms


def _merge_estimate(per: list[Estimate], confidence: float, prior: Any) -> Estimate:
    if len(per) < 2:  # one process: no re-run interval (bench.analysis.repetitions.ONE_PROCESS)
        from bench.analysis.repetitions import ONE_PROCESS

        return Estimate(per[0].value, None, None, ONE_PROCESS)
    iv = stats.process_interval([e.value for e in per], confidence, prior, rerun=True)
    return Estimate(float(np.mean([e.value for e in per])), iv.low, iv.high, iv.method)


def merge_infos(infos: list[GenerateInfo], median: GenerateInfo, confidence: float,
                prior: dict | None = None) -> GenerateInfo:
    """The cell's GenerateInfo from its used processes': each figure merged over them, the rest
    (curve, cache, load) from the median process. `prior`: the run's typical between-process
    spread per figure (bench.analysis.repetitions.priors), which moderates each interval as it
    does the cell's other figures: a token latency's percentile by the run's spread of that
    percentile, a rate by the run's spread of throughput."""
    prior = prior or {}

    def mean_of(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else float(np.mean(values))

    return replace(
        median,
        ttft_ms=_merge_latency([i.ttft_ms for i in infos], confidence, prior),
        tpot_ms=_merge_latency([i.tpot_ms for i in infos], confidence, prior),
        itl_ms=_merge_latency([i.itl_ms for i in infos], confidence, prior),
        tokens_per_s_per_stream=_merge_estimate([i.tokens_per_s_per_stream for i in infos], confidence,
                                                prior.get("throughput")),
        prefill_tokens_per_s=_merge_estimate([i.prefill_tokens_per_s for i in infos], confidence,
                                             prior.get("throughput")),
        goodput_qps=mean_of([i.goodput_qps for i in infos]),
        attainment=mean_of([i.attainment for i in infos]),
        achieved_qps=mean_of([i.achieved_qps for i in infos]),
        per_process=tuple(p for i in infos for p in i.per_process),
    )


def merge_slo(slos: list[Slo | None], attainment: float | None, min_goodput: float | None) -> Slo | None:
    """Each check's value the mean over processes; passed as one process's rule."""
    if not slos or any(s is None for s in slos):
        return None
    checks = []
    for parts in zip(*(s.checks for s in slos)):
        value = float(np.mean([c.value_ms for c in parts]))
        checks.append(SloCheck(parts[0].metric, parts[0].limit_ms, value, value <= parts[0].limit_ms))
    passed = all(c.passed for c in checks)
    if attainment is not None and min_goodput is not None:
        passed = passed and attainment >= min_goodput
    return Slo(passed, tuple(checks))


# --- agreement -------------------------------------------------------------------------------


def token_agreement(own: list[np.ndarray], ref: list[np.ndarray], reference: str, tolerance: float,
                    precision: str) -> Agreement:
    """Generated token ids against the reference's (outputs: [tokens [B, O] int64, logits [S, V]]).

    fp32: the ids must be equal. fp16/bf16: equality is not expected (a near-tie flips an
    arg-max), so the verdict is on the logits' relative error over the steps before the first
    divergence (after it the two sequences differ and their logits are not comparable); the first
    divergence is reported either way."""
    metric = ("generated token ids equal (greedy); logits max|out-ref|/max|ref| over the steps before the first "
              "divergence")
    if len(own) != 2 or len(ref) != 2:
        return Agreement("fail", reference, tolerance=tolerance, metric=metric,
                         reason=f"{len(own)} outputs, the reference has {len(ref)}; expected token ids and logits")
    tokens, ref_tokens = own[0], ref[0]
    if tokens.shape != ref_tokens.shape:
        return Agreement("fail", reference, tolerance=tolerance, metric=metric,
                         reason=f"token ids of shape {tokens.shape}, the reference's {ref_tokens.shape}")
    differs = np.nonzero((tokens != ref_tokens).any(axis=0))[0]
    first = int(differs[0]) if differs.size else None
    logits, ref_logits = own[1], ref[1]
    steps = min(logits.shape[0], ref_logits.shape[0], first if first is not None else logits.shape[0])
    abs_err = rel_err = None
    if not np.all(np.isfinite(logits[:steps])):
        return Agreement("fail", reference, tolerance=tolerance, metric=metric, first_divergence=first,
                         reason="logits hold NaN or infinity")
    if steps > 0 and logits.shape[1:] == ref_logits.shape[1:]:
        diff = np.abs(logits[:steps] - ref_logits[:steps])
        abs_err = float(diff.max())
        scale = float(np.abs(ref_logits[:steps]).max())
        rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
    where = "" if first is None else f"the first token that differs is at output position {first}"
    if precision == "fp32":
        if first is not None:
            return Agreement("fail", reference, abs_err, rel_err, tolerance, metric,
                             f"generated tokens differ from the reference's: {where}", first)
        return Agreement("pass", reference, abs_err, rel_err, tolerance, metric, "", None)
    if rel_err is not None and rel_err > tolerance:
        return Agreement("fail", reference, abs_err, rel_err, tolerance, metric,
                         f"logits' relative error {rel_err:.3g} exceeds tolerance {tolerance:g}"
                         + (f"; {where}" if where else ""), first)
    note = f"{precision}: {where} (expected: a near-tie flips an arg-max)" if where else f"{precision}: every token equal"
    return Agreement("pass", reference, abs_err, rel_err, tolerance, metric, note, first)


# --- comparing two runs' generate cells ------------------------------------------------------

FIGURES = (("output tokens/s", "tokens_per_s", True), ("TTFT p50", "ttft_p50_ms", False),
           ("TPOT p50", "tpot_p50_ms", False))


@dataclass(frozen=True)
class GenerateCompare:
    """Generate cells compare on three figures over processes: output tokens/s, TTFT p50 and TPOT
    p50 (Welch's t on the logs, bench.stats.log_ratio), each with compare's three answers
    (bench.analysis.compare.decide: slower or faster, unchanged within the threshold, or
    inconclusive). Their difference tests join the comparison's Holm correction, one test per
    figure; the cell's verdict is its figures' worst."""

    def compare(self, key: str, base: Any, new: Any, ctx: CompareContext) -> CellComparison:
        gb, gn = base.generate, new.generate
        if gb is None or gn is None:
            return CellComparison(key, "not comparable", "a generate cell without its token figures")
        pb, pn = gb.per_process, gn.per_process
        if len(pb) < 2 or len(pn) < 2:
            return CellComparison(key, "not comparable", "fewer than 2 processes on a side: rerun with repeats >= 2")
        figures = []
        for label, attr, higher in FIGURES:
            a = [getattr(p, attr) for p in pb]
            b = [getattr(p, attr) for p in pn]
            if any(v is None or v <= 0 for v in (*a, *b)):
                continue
            figures.append(decide(attr, label, stats.log_ratio(a, b), higher, ctx.threshold, ctx.alpha))
        if not figures:
            return CellComparison(key, "not comparable", "no token figures on both sides")
        got = tuple(figures)
        verdict = cell_verdict(got)
        reason = f"over {len(pb)} -> {len(pn)} processes: " + "; ".join(describe(f, ctx.threshold, ctx.alpha) for f in got)
        deciding = next((f for f in got if f.answer == verdict), None)
        if verdict in ("slower", "faster") and deciding is not None:
            reason = f"{deciding.label} decides: " + reason
        tp = next((f.ratio for f in got if f.figure == "tokens_per_s"), None)
        # The table's p50/p99 columns are request latency's; the token figures' ratios are in the reason.
        return CellComparison(key, verdict, reason, tp, p_value=min(f.p_value for f in got), method="processes",
                              detectable=max(f.detectable for f in got), figures=got)
