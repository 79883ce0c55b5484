"""GPU fidelity: the CUDA-graph harness against a hand-written graph-replay loop over the same
module, in one process (ResNet-50-like fp16 channels_last at batch 1 and 256 by default)."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from bench.selfcheck.check import Check, met


@dataclass(frozen=True)
class FidelityPoint:
    batch_size: int
    hand_ms_per_batch: float  # median over rounds
    harness_ms_per_batch: float  # median over rounds
    ratio: float  # median over rounds of hand / harness time: the harness's share of the hand loop's throughput
    rounds: int
    hand_ns_rounds: tuple[float, ...] = ()  # ns per call of the hand loop, round by round
    harness_ns_rounds: tuple[float, ...] = ()  # ns per call of the harness, round by round (paired with the above)


def fidelity_point(batch_size: int, hand_ns: list[float], harness_ns: list[float]) -> FidelityPoint:
    """The figures of one batch size from its paired rounds (ns per call): medians of each loop's
    times, and the median of the within-round ratios hand / harness (not the ratio of medians)."""
    if len(hand_ns) != len(harness_ns) or not hand_ns:
        raise ValueError(f"paired rounds expected: {len(hand_ns)} hand, {len(harness_ns)} harness")
    return FidelityPoint(batch_size, statistics.median(hand_ns) / 1e6, statistics.median(harness_ns) / 1e6,
                         statistics.median(h / m for h, m in zip(hand_ns, harness_ns)), len(hand_ns),
                         tuple(float(v) for v in hand_ns), tuple(float(v) for v in harness_ns))


@dataclass(frozen=True)
class FidelityCheck:
    model: str
    device: str
    mode: str
    precision: str
    channels_last: bool
    points: tuple[FidelityPoint, ...]
    note: str = ""


def _hand_loop(module, inputs: tuple, mode: str, device: str):
    """The loop a careful engineer writes by hand, sharing nothing with the harness but the module:
    for a CUDA graph, torch's documented recipe (side-stream warm-up, capture, replay)."""
    import torch

    if mode != "cudagraph":
        return lambda: module(*inputs)
    with torch.inference_mode(False), torch.no_grad():
        static = tuple(t.clone() for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                module(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            module(*static)
    return graph.replay


def check_fidelity(model: str = "zoo:resnet50-like", device: str = "cuda", mode: str = "cudagraph",
                   precision: str = "fp16", channels_last: bool = True, batch_sizes: tuple[int, ...] = (1, 256),
                   rounds: int = 7, seconds_per_round: float = 0.5,
                   model_args: tuple = ()) -> FidelityCheck:
    """Harness throughput against a hand-written loop over the same module, in one process.

    Each round times the hand loop (n back-to-back calls between two CUDA events; the host clock
    on a CPU) and the harness's offline loop (bench.scenarios.loops.measure through the torch backend: CUDA
    events, one synchronize per chunk) back to back, in alternating order; the ratio is taken
    within each round and its median reported, so drift of clocks and tenants cancels.
    """
    import torch

    from bench.backends.options import TorchOptions
    from bench.backends.torch.backend import TorchBackend
    from bench.config.records import StopSpec, TargetSpec
    from bench.models.inputs import make_inputs
    from bench.models.loader import ModelRef, classify, prepare

    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        return FidelityCheck(model, device, mode, precision, channels_last, (), note="skipped: no CUDA device")
    prepared = prepare(ModelRef(model, classify(model), model_args), need_onnx=False, need_torch=True)
    target = TargetSpec("fidelity", "torch", device, precision,
                        TorchOptions(mode=mode, channels_last=channels_last, threads=0 if cuda else 1))
    backend = TorchBackend()
    backend.load(prepared, target)
    events = backend.events()
    stop = StopSpec(min_seconds=seconds_per_round, max_seconds=seconds_per_round * 2, min_iterations=1,
                    warmup_iterations=3, warmup_seconds=0.0, ci_figures=())
    from bench.scenarios.loops import measure
    from bench.scenarios.stopping import FixedStop

    points = []
    for batch in batch_sizes:
        feeds = make_inputs(prepared.inputs, batch, 0)
        fn = backend.bind(feeds)  # captures (or compiles) this shape now
        inputs = backend._tensors(feeds, backend.device)
        with backend.context():
            hand = _hand_loop(backend.runner.module, inputs, mode, device)
            backend.synchronize()
            t0 = time.perf_counter_ns()
            for _ in range(3):
                hand()
            backend.synchronize()
            per_call_ns = max((time.perf_counter_ns() - t0) / 3, 1.0)
            calls = max(3, int(seconds_per_round * 1e9 / per_call_ns))

            def hand_round() -> float:
                # The same clock as the harness's: CUDA events on the GPU, around the whole loop.
                backend.synchronize()
                if events is None:
                    start = time.perf_counter_ns()
                    for _ in range(calls):
                        hand()
                    return (time.perf_counter_ns() - start) / calls
                first, last = events.new_event(), events.new_event()
                first.record()
                for _ in range(calls):
                    hand()
                last.record()
                events.synchronize()
                return first.elapsed_time(last) * 1e6 / calls

            def harness_round() -> float:
                result = measure(fn, stop, FixedStop.from_spec(stop), events=events)
                return result.window_ns / result.latencies_ns.size

            hand_ns, harness_ns = [], []
            for r in range(rounds):
                pair = (hand_round(), harness_round()) if r % 2 == 0 else tuple(reversed((harness_round(), hand_round())))
                hand_ns.append(pair[0])
                harness_ns.append(pair[1])
        points.append(fidelity_point(batch, hand_ns, harness_ns))
    return FidelityCheck(model, device, mode, precision, channels_last, tuple(points))


def lines(f: FidelityCheck) -> list[str]:
    out = [f"GPU fidelity: harness vs a hand-written loop ({f.model}, {f.mode}, {f.precision}"
           f"{', channels_last' if f.channels_last else ''}, {f.device}; medians of paired rounds)"]
    if f.note:
        out.append(f"  {f.note}")
    for p in f.points:
        goal = 0.98 if p.batch_size >= 256 else 0.95
        out.append(f"  batch {p.batch_size:>4}: hand loop {p.hand_ms_per_batch:8.3f} ms   harness "
                   f"{p.harness_ms_per_batch:8.3f} ms   harness/hand throughput {p.ratio:7.2%}   "
                   f"(target >= {goal:.0%}: {met(p.ratio >= goal)})")
    return out


CHECK = Check("fidelity", False, lambda o: check_fidelity(), lines,
              missing=lambda f: (f.note.removeprefix("skipped: ") or "no batch size measured") if not f.points else None)
