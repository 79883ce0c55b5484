"""Harness overhead: a bare `session.run` loop against the harness's own single-stream loop
(bench.scenarios.loops.measure through the onnxruntime backend) on the same tiny ONNX model in
this one process, in paired rounds; medians of the per-call times and of the in-round ratios."""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import stats
from bench.selfcheck.check import Check, met


@dataclass(frozen=True)
class OverheadCheck:
    bare_ns_per_call: float  # median over rounds
    harness_ns_per_call: float  # median over rounds
    rounds: int
    calls_per_round: int
    throughput_ratio: float  # median over rounds of bare / harness time, each pair adjacent in time
    added_ns_per_call: float  # median over rounds of harness - bare
    # a distribution-free 95% interval for that median (binomial order statistics of the rounds'
    # ratios): the goal is judged on it, not on the point
    ratio_low: float | None = None
    ratio_high: float | None = None


def tiny_onnx_model(path: Path) -> Path:
    """Y = X + B on a 1x16 float tensor with a dynamic batch axis: as cheap as ORT gets."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    b = helper.make_tensor("b", TensorProto.FLOAT, [16], [0.5] * 16)
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "tiny", [x], [y], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def check_overhead(rounds: int = 21, seconds_per_round: float = 0.15) -> OverheadCheck:
    """Paired rounds: each round times the bare loop and the harness loop back to back, in
    alternating order (ABBA), and the ratio is taken within the round, so the machine's slow
    drift (frequency, other tenants) cancels instead of landing on one side."""
    from bench.backends.options import OrtOptions
    from bench.backends.ort import OrtBackend
    from bench.config.records import StopSpec, TargetSpec
    from bench.models.inputs import InputSpec, make_inputs
    from bench.models.loader import ModelRef, PreparedModel
    from bench.scenarios.loops import measure
    from bench.scenarios.stopping import FixedStop

    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_onnx_model(Path(tmp) / "tiny.onnx")
        specs = (InputSpec("x", (16,)),)
        model = PreparedModel(ModelRef(str(path), "onnx"), "", specs, str(path))
        target = TargetSpec("self-check", "onnxruntime", "cpu", "fp32",
                            OrtOptions(intra_op_threads=1, inter_op_threads=1))
        backend = OrtBackend()
        backend.load(model, target)
        feeds = make_inputs(specs, 1, 0)
        session = backend.session
        fn = backend.bind(feeds)
        stop = StopSpec(min_seconds=seconds_per_round, max_seconds=seconds_per_round * 2,
                        min_iterations=1, warmup_iterations=1000, warmup_seconds=0.05)
        rule = FixedStop.from_spec(stop)
        # Calibrate the bare loop's call count to the same duration as a harness round.
        t0 = time.perf_counter_ns()
        for _ in range(2000):
            session.run(None, feeds)
        calls = max(1000, int(seconds_per_round * 1e9 / ((time.perf_counter_ns() - t0) / 2000)))
        bare, harness = [], []

        def bare_round() -> float:
            run = session.run
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                run(None, feeds)
            return (time.perf_counter_ns() - t0) / calls

        def harness_round() -> float:
            result = measure(fn, stop, rule)
            return result.window_ns / result.latencies_ns.size

        for r in range(rounds):
            if r % 2 == 0:
                b = bare_round()
                h = harness_round()
            else:
                h = harness_round()
                b = bare_round()
            bare.append(b)
            harness.append(h)
        ratios = sorted(b / h for b, h in zip(bare, harness))
        iv = stats.percentile_interval(np.asarray(ratios), 0.5, 0.95)
        return OverheadCheck(
            statistics.median(bare), statistics.median(harness), rounds, calls,
            statistics.median(ratios),
            statistics.median(h - b for b, h in zip(bare, harness)),
            iv.low, iv.high,
        )


THROUGHPUT_GOAL = 0.98


def throughput_verdict(o: OverheadCheck) -> str:
    """The goal judged on the median's interval, three ways: the harness adds ~100-200 ns to a
    6-8 us call, which puts the point right on the 2% line, so a point verdict flipped at random
    here (3 of 6 runs NOT met beside other work). NOT met only when the whole interval is below
    the goal, met when it is all at or above it, inconclusive otherwise (no verdict: more rounds)."""
    if o.ratio_low is None or o.ratio_high is None:
        return f"inconclusive: {o.rounds} rounds are too few for an interval; rerun with more --rounds"
    span = f"95% interval {o.ratio_low:.2%} to {o.ratio_high:.2%}"
    if o.ratio_low >= THROUGHPUT_GOAL:
        return f"{span}: {met(True)}"
    if o.ratio_high < THROUGHPUT_GOAL:
        return f"{span}: {met(False)}"
    return f"{span}: inconclusive, the goal inside it; rerun with more --rounds"


def lines(o: OverheadCheck) -> list[str]:
    return [
        "harness overhead (tiny ONNX Add model, onnxruntime CPU, 1 thread; medians of "
        f"{o.rounds} paired rounds of ~{o.calls_per_round} calls, ratio and difference taken within each round)",
        f"  bare session.run loop      {o.bare_ns_per_call:9.0f} ns/call",
        f"  harness single-stream loop {o.harness_ns_per_call:9.0f} ns/call",
        f"  harness/bare throughput    {o.throughput_ratio:9.2%}   (target >= 98%; {throughput_verdict(o)})",
        f"  added per call             {o.added_ns_per_call:9.0f} ns      (target <= 1000 ns: {met(o.added_ns_per_call <= 1000)})",
    ]


CHECK = Check("overhead", True, lambda o: check_overhead(rounds=o.rounds), lines)
