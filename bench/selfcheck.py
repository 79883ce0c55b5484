"""`bench self-check`: what the harness itself costs, measured, not assumed.

1. Harness overhead: a bare `session.run` loop against the harness's own single-stream loop
   (bench.scenarios.loops.measure through the onnxruntime backend) on the same tiny ONNX model
   in this one process, interleaved over several rounds; medians of the per-call times.
2. Timer: perf_counter_ns's stated resolution and the smallest step seen between two reads.
3. Kernel speed: the latency summary over 1,000,000 samples, numba kernel against numpy.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OverheadCheck:
    bare_ns_per_call: float  # median over rounds
    harness_ns_per_call: float  # median over rounds
    rounds: int
    calls_per_round: int
    throughput_ratio: float  # median over rounds of bare / harness time, each pair adjacent in time
    added_ns_per_call: float  # median over rounds of harness - bare


@dataclass(frozen=True)
class TimerCheck:
    stated_resolution_ns: float
    min_step_ns: int
    median_read_ns: float


@dataclass(frozen=True)
class KernelCheck:
    n: int
    kernel_ms: float
    numpy_ms: float


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
    from bench.config import StopSpec, TargetSpec
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
        return OverheadCheck(
            statistics.median(bare), statistics.median(harness), rounds, calls,
            statistics.median(b / h for b, h in zip(bare, harness)),
            statistics.median(h - b for b, h in zip(bare, harness)),
        )


def check_timer(reads: int = 100_000) -> TimerCheck:
    clock = time.perf_counter_ns
    stamps = [0] * reads
    for i in range(reads):
        stamps[i] = clock()
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    positive = steps[steps > 0]
    return TimerCheck(
        stated_resolution_ns=time.get_clock_info("perf_counter").resolution * 1e9,
        min_step_ns=int(positive.min()) if positive.size else 0,
        median_read_ns=float(np.median(steps)),
    )


def check_kernels(n: int = 1_000_000, repeats: int = 5) -> KernelCheck:
    from bench import stats

    x = np.random.default_rng(0).lognormal(13, 0.5, n).astype(np.int64) + 1
    stats.latency_summary(x[:100])  # JIT or cache load outside the timing
    kernel, ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats.latency_summary(x)
        kernel.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.percentile(x, [50, 90, 95, 99, 99.9])
        x.mean(), x.min(), x.max()
        ref.append(time.perf_counter() - t0)
    return KernelCheck(n, statistics.median(kernel) * 1e3, statistics.median(ref) * 1e3)


@dataclass(frozen=True)
class BootstrapCheck:
    n: int
    resamples: int
    ours_s: float
    scipy_s: float | None
    ours_mean_ci: tuple[float, float]
    ours_p99_ci: tuple[float, float]
    scipy_mean_ci: tuple[float, float] | None
    scipy_p99_ci: tuple[float, float] | None
    note: str = ""

    @property
    def speedup(self) -> float | None:
        return None if self.scipy_s is None else self.scipy_s / self.ours_s


def check_bootstrap(n: int = 100_000, resamples: int = 1000, repeats: int = 3) -> BootstrapCheck:
    """95% percentile-bootstrap intervals of the mean and p99: ours against scipy.stats.bootstrap."""
    from bench import stats

    x = np.random.default_rng(0).lognormal(13, 0.5, n)
    stats.warm_kernels()
    ours = []
    for r in range(repeats):
        t0 = time.perf_counter()
        m = stats.bootstrap_mean(x, 0.95, resamples, seed=r, method="percentile")
        q = stats.bootstrap_quantile(x, 0.99, 0.95, resamples, seed=r, method="percentile")
        ours.append(time.perf_counter() - t0)
    try:
        from scipy import stats as sps
    except ImportError:
        return BootstrapCheck(n, resamples, statistics.median(ours), None, (m.low, m.high), (q.low, q.high),
                              None, None, "scipy is not installed (pip install scipy) for the comparison")

    def p99(a, axis=-1):
        return np.percentile(a, 99, axis=axis)

    theirs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sm = sps.bootstrap((x,), np.mean, n_resamples=resamples, method="percentile", rng=np.random.default_rng(r))
        sq = sps.bootstrap((x,), p99, n_resamples=resamples, method="percentile", rng=np.random.default_rng(r))
        theirs.append(time.perf_counter() - t0)
    return BootstrapCheck(
        n, resamples, statistics.median(ours), statistics.median(theirs),
        (m.low, m.high), (q.low, q.high),
        (float(sm.confidence_interval.low), float(sm.confidence_interval.high)),
        (float(sq.confidence_interval.low), float(sq.confidence_interval.high)),
    )


@dataclass(frozen=True)
class JitCheck:
    cold_s: float
    warm_s: float


def check_jit() -> JitCheck:
    """Compile every kernel into an empty cache (a fresh process), then load them from it."""
    import os
    import subprocess
    import sys

    code = ("import time; t = time.perf_counter(); from bench import stats; stats.warm_kernels(); "
            "print(time.perf_counter() - t)")
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        times = []
        for _ in range(2):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"kernel warm-up failed: {done.stderr.strip().splitlines()[-1:]}")
            times.append(float(done.stdout.strip().splitlines()[-1]))
    return JitCheck(times[0], times[1])


@dataclass(frozen=True)
class LoadGenCheck:
    service_us: float
    rate_qps: float
    ours_server_qps: float
    ours_server_p99_ms: float
    ours_server_mean_ms: float
    loadgen_server: Any
    ours_offline_qps: float
    loadgen_offline: Any
    md1_mean_ms: float


def _service_call(service_ns: int, spin_ns: int = 200_000):
    """A near-deterministic service time that leaves the GIL free most of the time, as a runtime
    computing in C does: sleep until spin_ns before the end, then spin. (A pure Python spin holds
    the GIL, which delays LoadGen's issue callback and inflates its latencies by 10-25% here.)"""
    clock = time.perf_counter_ns

    def call() -> None:
        end = clock() + service_ns
        if service_ns > spin_ns:
            time.sleep((service_ns - spin_ns) / 1e9)
        while clock() < end:
            pass
    return call


def check_loadgen(service_us: float = 1000.0, rate_qps: float = 500.0, duration_s: float = 5.0) -> LoadGenCheck:
    """One synthetic target of deterministic service time under our server scenario and LoadGen's,
    and back to back (ours) against LoadGen's Offline."""
    from bench.scenarios import loadgen
    from bench.scenarios.server import md1_mean_latency_s, poisson_schedule, run_server

    call = _service_call(int(service_us * 1000))
    ours = run_server(call, poisson_schedule(rate_qps, duration_s, seed=0))
    lat_ms = ours.latencies_ns / 1e6
    lg_server = loadgen.run_loadgen(call, "server", rate_qps, duration_s, latency_ms=50.0)
    n = int(duration_s * 1e6 / service_us)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        call()
    ours_offline = n / ((time.perf_counter_ns() - t0) / 1e9)
    lg_offline = loadgen.run_loadgen(call, "offline", ours_offline, duration_s)
    return LoadGenCheck(service_us, rate_qps, ours.achieved_qps(), float(np.percentile(lat_ms, 99)),
                        float(lat_ms.mean()), lg_server, ours_offline, lg_offline,
                        md1_mean_latency_s(service_us / 1e6, rate_qps) * 1e3)


@dataclass(frozen=True)
class GeneratorCheck:
    limit_error_us: float
    rates: tuple[float, ...]
    issue_error_p99_us: tuple[float, ...]
    highest_sustained_qps: float | None
    loadgen_null_offline_qps: float | None


def check_generator(rates=(1_000, 10_000, 100_000, 400_000, 800_000, 1_600_000, 3_200_000), seconds: float = 0.5) -> GeneratorCheck:
    """The highest Poisson rate our issuer sustains with a null backend while its issue error stays
    under 50 µs at p99, beside LoadGen's Offline throughput with a null SUT (its own ceiling)."""
    from bench.scenarios import loadgen
    from bench.scenarios.server import ISSUE_ERROR_LIMIT_NS, poisson_schedule, run_server

    p99s = []
    best = None
    for rate in rates:
        run = run_server(lambda: None, poisson_schedule(rate, seconds, seed=1))
        err = run.start_ns - run.scheduled_ns  # null backend: every start is the issuer's own lateness
        p99 = float(np.percentile(err, 99))
        p99s.append(p99 / 1e3)
        if p99 <= ISSUE_ERROR_LIMIT_NS:
            best = rate
    lg_null = None
    if loadgen.available():
        lg_null = loadgen.run_loadgen(lambda: None, "offline", 1e6, seconds, min_queries=100_000).samples_per_s
    return GeneratorCheck(ISSUE_ERROR_LIMIT_NS / 1e3, tuple(float(r) for r in rates), tuple(p99s), best, lg_null)


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
    from bench.backends.torch_backend import TorchBackend
    from bench.config import StopSpec, TargetSpec
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
