"""The speed-accuracy trade of one run as a row model (reads bench.analysis.tradeoff; runs
nothing): per workload, each target's throughput and p99, its throughput over the reference's
paired by round, its accuracy and accuracy loss with their intervals, the Pareto front of
throughput against loss marked; and the front in words, so that "int8-static x2.9 the
reference's throughput for 0.4% top-1" is one glance."""
from __future__ import annotations

import math

from bench.analysis.tradeoff import Tradeoff, TradePoint, has_accuracy, tradeoffs
from bench.report import accuracy_text
from bench.report.model import Column, Num, Table, Text, fmt_sig, settle
from bench.report.run_tables import throughput_units
from bench.results.records import Run


def _ratio(p: TradePoint) -> str:
    if p.is_reference:
        return "reference"
    v = p.vs_reference
    if v is None:
        return "-"
    return _times(v)


def _sig2(value: float) -> str:
    """An interval's end at two significant digits ("2.6", "0.018", "66"), never a power of ten."""
    if value == 0 or not math.isfinite(value):
        return fmt_sig(value) if math.isfinite(value) else "-"
    return f"{value:,.{max(0, 1 - math.floor(math.log10(abs(value))))}f}"


def _times(v) -> str:
    """"x2.90 [2.6, 3.2]": a paired ratio at three significant digits, its interval's ends at two."""
    return f"x{fmt_sig(v.ratio)} [{_sig2(v.low)}, {_sig2(v.high)}]"


def _accuracy(p: TradePoint) -> str:
    if p.is_reference:
        return "reference"
    return "-" if p.accuracy is None else accuracy_text.headline(p.accuracy, interval=True)


def _loss(t: Tradeoff, p: TradePoint) -> str:
    if p.loss is None:
        return "-"
    if p.is_reference:
        return "0"
    return accuracy_text.loss(t.metric, p.loss, p.loss_low, p.loss_high)


def _mark(p: TradePoint) -> str | Text:
    if p.fails:
        return Text("fails agreement", "bad")
    return "★" if p.pareto else ""


def front_sentence(t: Tradeoff) -> str:
    """The front of one workload in words: "rn/b4/single-stream: ort (reference); ort-static x2.90
    [2.61, 3.22] the reference's throughput for top-1 loss 3.1% [0.9, 10.7]"."""
    parts = []
    for p in t.front:
        if p.is_reference:
            parts.append(f"{p.cell.target.name} (reference)")
            continue
        speed = (f"{_times(p.vs_reference)} the reference's throughput" if p.vs_reference is not None else
                 f"{p.cell.metrics.throughput.value:,.4g} {p.cell.metrics.throughput.unit}")
        words = accuracy_text.SHORT.get(t.metric or "", "accuracy")
        parts.append(f"{p.cell.target.name} {speed} for {words} loss {_loss(t, p)}")
    return f"{t.workload}: " + "; ".join(parts)


def tradeoff_table(run: Run) -> Table | None:
    """None where the run has no accuracy figure, or no workload with two ok targets."""
    if not has_accuracy(run):
        return None
    trades = tradeoffs(run)
    if not trades:
        return None
    units = throughput_units(p.cell for t in trades for p in t.points)
    rows = []
    for t in trades:
        for p in t.points:
            tp, p99 = p.cell.metrics.throughput, p.cell.metrics.latency_ms.p99
            speed = tuple(Num(tp.value, tp.ci_low, tp.ci_high) if tp.unit == u else "-" for u in units)
            rows.append((t.workload, p.cell.target.name, p.cell.target.precision, p.cell.target.backend, *speed,
                         Num(p99.value, p99.ci_low, p99.ci_high), _ratio(p), _accuracy(p), _loss(t, p), _mark(p)))
    confidence = next((p.accuracy.confidence for t in trades for p in t.points if p.accuracy is not None), 0.95)
    samples = sorted({p.accuracy.samples for t in trades for p in t.points if p.accuracy is not None})
    fronts = "; ".join(front_sentence(t) for t in trades if t.front)
    caption = (f"★ Pareto front of throughput (higher) against accuracy loss (lower): no other target of the workload "
               f"is as fast and as accurate, and better at one; a target that fails agreement is never on it · "
               f"vs reference = throughput over the reference target's, paired by round, {confidence:.0%} interval · "
               f"accuracy on {'/'.join(str(n) for n in samples)} samples apart from the measured batch, "
               f"{confidence:.0%} intervals; loss = 1 - agreement (top-1, tokens), 1 - cosine, or the mean relative "
               f"error · front: {fronts or 'none'}")
    columns = (Column("workload"), Column("target"), Column("precision"), Column("backend"),
               *(Column(u, numeric=True) for u in units), Column("p99 ms", numeric=True),
               Column("vs reference", numeric=True), Column("accuracy"), Column("loss", numeric=True), Column("front"))
    return Table("speed against accuracy · per workload, fastest first", columns, settle(rows), caption)
