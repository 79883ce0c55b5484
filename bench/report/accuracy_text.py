"""Accuracy figures as the tables write them (reads records only): the headline a cell shows
beside its speed ("top-1 96.9%"), with its interval where there is room ("top-1 96.9% [89.3,
99.1]"), and the accuracy loss a tolerance bounds and the trade table ranks ("3.1% [0.9, 10.7]").

Shares (top-1 and token agreement, and their losses) are in percent; a cosine is written with
the decimals its distance from 1 needs (0.99998, never 1.0000 for a loss of 2e-5); a relative
error at three significant digits, never as a power of ten (report.model.fmt_sig).
"""
from __future__ import annotations

import math

from bench.report.model import fmt_sig
from bench.results.records import Accuracy

SHORT = {"top1": "top-1", "cosine": "cosine", "abs-error": "rel err", "token": "tokens"}
_SHARE = ("top1", "token")


def _pct(v: float) -> str:
    """A share in percent: one decimal, more for a share under 0.1% (0.04%, never 0.0%)."""
    p = 100 * v
    if p == 0 or p >= 0.1 or p <= -0.1:
        return f"{p:.1f}" if p not in (0.0, 100.0) else f"{p:.0f}"
    return f"{p:.2g}"


def _cosine(v: float, loss: float) -> str:
    """A cosine with the decimals its distance from 1 needs to show (two significant digits of it)."""
    need = 4 if loss <= 0 else max(4, 1 - math.floor(math.log10(loss)) + 1)
    return f"{v:.{min(need, 6)}f}"  # past 6 decimals it is float rounding, not a difference


def _value(metric: str, v: float, loss: float) -> str:
    if metric in _SHARE:
        return _pct(v)
    if metric == "cosine":
        return _cosine(v, loss)
    return fmt_sig(v)


def headline(acc: Accuracy, interval: bool = False) -> str:
    """"top-1 96.9%", with `interval` "top-1 96.9% [89.3, 99.1]"; "cosine 0.99998"; "rel err 0.0123"."""
    f = acc.figures[0] if acc.figures else None
    if f is None:
        return f"{SHORT.get(acc.metric, acc.metric)} loss {loss(acc.metric, acc.loss)}"
    unit = "%" if acc.metric in _SHARE else ""
    text = f"{SHORT.get(acc.metric, acc.metric)} {_value(acc.metric, f.value, acc.loss)}{unit}"
    if interval and f.ci_low is not None and f.ci_high is not None:
        text += f" [{_value(acc.metric, f.ci_low, acc.loss)}, {_value(acc.metric, f.ci_high, acc.loss)}]"
    return text


def loss(metric: str | None, value: float, low: float | None = None, high: float | None = None) -> str:
    """An accuracy loss: "3.1%" for a share's, "0.000021" otherwise; with its interval where given."""
    def one(v: float) -> str:
        if metric in _SHARE:
            return _pct(v)
        # an fp32 target against an fp32 reference differs by rounding alone (~1e-13 in cosine):
        # below a millionth it is written as such, not as a row of zeros
        return "<0.000001" if 0 < v < 1e-6 else fmt_sig(v)

    unit = "%" if metric in _SHARE else ""
    text = f"{one(value)}{unit}"
    if low is not None and high is not None:
        text += f" [{one(low)}, {one(high)}]"
    return text


def loss_words(metric: str | None) -> str:
    """What the loss is, for a caption or an axis: "top-1 loss, % (1 - agreement with the reference)"."""
    return {"top1": "top-1 loss, % (1 - top-1 agreement with the reference)",
            "token": "token loss, % (1 - token agreement with the reference)",
            "cosine": "cosine loss (1 - mean cosine similarity to the reference)",
            "abs-error": "mean relative error against the reference"}.get(metric or "", "accuracy loss")
