"""Accuracy as a figure: a target's outputs against the fp32 reference's on the same samples,
as the metric that fits the output, each figure with an interval over the samples.

Metrics (on the benchmark's first output; per sample, then over samples):
  top1       classifier logits (the class axis last; a decoder's logits count per position):
             top-1 agreement (share of samples, or positions, whose argmax is the reference's;
             Wilson interval) and the max probability difference (max over classes of
             |softmax(out) - softmax(ref)| per sample; mean with a bootstrap interval).
  cosine     embeddings: cosine similarity of each sample's vector with the reference's (mean,
             bootstrap interval; the worst sample as well).
  abs-error  regression outputs: each sample's max |out - ref| over the reference's max |ref| (the
             mean relative error, bootstrap interval; the worst sample as the max), and the max
             absolute error.
  token      integer outputs (token ids): share of equal ids per sample (mean, bootstrap interval).

`loss` is the one number a tolerance bounds and a Pareto front trades against speed: 1 - top-1
agreement, 1 - mean cosine, the mean relative error, 1 - token agreement (0: the reference's answers).
"""
from __future__ import annotations

import math

import numpy as np

from bench.results.records import Accuracy, AccuracyFigure

CONFIDENCE = 0.95
METRIC_WORDS = {"top1": "top-1 agreement", "cosine": "cosine similarity", "abs-error": "mean relative error",
                "token": "token agreement"}


def resolve_metric(declared: str, model_kind: str, ref: np.ndarray) -> str:
    """The metric to use: the suite's, else the model's own kind (the zoo's), else by the output:
    integer ids -> token; anything else -> abs-error (safe for any float output)."""
    if declared != "auto":
        return declared
    if model_kind:
        return model_kind
    if ref.dtype.kind in "iub":
        return "token"
    return "abs-error"


def _z(confidence: float) -> float:
    from bench.stats.checks import normal_quantile

    return normal_quantile(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a proportion: holds near 0 and 1, where the normal one does not."""
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends where the share is 0 or 1 (rounding would put the point estimate outside)
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == n else min(1.0, max(p, centre + half))
    return low, high


def _mean_figure(name: str, values: np.ndarray, confidence: float) -> AccuracyFigure:
    from bench.stats.bootstrap import bootstrap_mean

    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return AccuracyFigure(name, max(0.0, float(values.mean())))
    ci = bootstrap_mean(values, confidence, seed=0)
    return AccuracyFigure(name, max(0.0, float(values.mean())), max(0.0, ci.low), max(0.0, ci.high))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _rows(a: np.ndarray) -> np.ndarray:
    """(samples, features): everything after the batch axis flattened."""
    return a.reshape(a.shape[0], -1).astype(np.float64)


def measure(out: np.ndarray, ref: np.ndarray, metric: str, confidence: float = CONFIDENCE) -> Accuracy:
    """The accuracy of `out` against `ref` (same shape, samples on axis 0) by `metric`."""
    n = int(ref.shape[0])
    if metric == "top1":
        o = out.astype(np.float64).reshape(n, -1, ref.shape[-1]) if ref.ndim > 1 else out.reshape(n, 1, 1)
        r = ref.astype(np.float64).reshape(n, -1, ref.shape[-1]) if ref.ndim > 1 else ref.reshape(n, 1, 1)
        same = (o.argmax(-1) == r.argmax(-1))  # (samples, positions)
        agree, total = int(same.sum()), int(same.size)
        lo, hi = wilson(agree, total, confidence)
        share = agree / total
        prob = np.abs(_softmax(o) - _softmax(r)).max(axis=-1).max(axis=-1)
        figures = (AccuracyFigure("top1_agreement", share, lo, hi), _mean_figure("max_prob_diff", prob, confidence))
        return Accuracy("top1", n, 1 - share, 1 - hi, 1 - lo, confidence, 0, figures)
    if metric == "cosine":
        o, r = _rows(out), _rows(ref)
        norms = np.linalg.norm(o, axis=1) * np.linalg.norm(r, axis=1)
        cos = np.where(norms > 0, (o * r).sum(axis=1) / np.where(norms > 0, norms, 1), (o == r).all(axis=1) * 1.0)
        cos = np.clip(cos, -1.0, 1.0)
        mean = _mean_figure("cosine", cos, confidence)
        figures = (mean, AccuracyFigure("min_cosine", float(max(cos.min(), 0.0))))
        return Accuracy("cosine", n, max(0.0, 1 - mean.value),
                        None if mean.ci_high is None else max(0.0, 1 - mean.ci_high),
                        None if mean.ci_low is None else max(0.0, 1 - mean.ci_low), confidence, 0, figures)
    if metric == "token":
        same = (_rows(out) == _rows(ref)).mean(axis=1)
        mean = _mean_figure("token_agreement", same, confidence)
        return Accuracy("token", n, max(0.0, 1 - mean.value),
                        None if mean.ci_high is None else max(0.0, 1 - mean.ci_high),
                        None if mean.ci_low is None else max(0.0, 1 - mean.ci_low), confidence, 0, (mean,))
    o, r = _rows(out), _rows(ref)
    abs_err = np.abs(o - r).max(axis=1) if o.size else np.zeros(n)
    scale = float(np.abs(r).max()) if r.size else 0.0
    rel = abs_err / scale if scale > 0 else np.where(abs_err == 0, 0.0, np.inf)
    rel = np.where(np.isfinite(rel), rel, 1.0)
    mean = _mean_figure("mean_rel_error", rel, confidence)
    figures = (mean, AccuracyFigure("max_rel_error", float(rel.max(initial=0.0))),
               AccuracyFigure("max_abs_error", float(abs_err.max(initial=0.0))))
    return Accuracy("abs-error", n, mean.value, mean.ci_low, mean.ci_high, confidence, 0, figures)


def headline(acc: Accuracy) -> AccuracyFigure:
    """The figure a table shows for this metric (top-1 agreement, mean cosine, ...)."""
    return acc.figures[0]


def describe(acc: Accuracy) -> str:
    """One line: 'top-1 agreement 98.4% [91.7, 99.7] over 64 samples'."""
    f = headline(acc)
    pct = acc.metric in ("top1", "token")
    value = f"{100 * f.value:.1f}%" if pct else f"{f.value:.4g}"
    ci = ""
    if f.ci_low is not None and f.ci_high is not None:
        ci = f" [{100 * f.ci_low:.1f}, {100 * f.ci_high:.1f}]" if pct else f" [{f.ci_low:.4g}, {f.ci_high:.4g}]"
    return f"{METRIC_WORDS[acc.metric]} {value}{ci} over {acc.samples} samples"
