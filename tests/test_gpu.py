"""GPU targets, tested without a GPU: device timing through fake events, device checks, OOM
sweeps, torch modes and ONNX Runtime IOBinding / fp16 on the CPU, and a run whose GPU backend is
a plugin. The tests that need a real CUDA device are marked `gpu` and skipped here."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from bench import backends
from bench.analysis.agreement import compare_outputs
from bench.backends import BoundCall, DeviceEvents
from bench.backends.devices import check_index, check_precision, is_out_of_memory, out_of_memory_reason
from bench.backends.options import OrtOptions, TorchOptions
from bench.config.records import StopSpec, TargetSpec
from bench.config.suite import parse_suite
from bench.errors import CellFailure, ConfigError
from bench.measure.timing import EventClock, synchronized
from bench.models.inputs import make_inputs
from bench.models.loader import ModelRef, prepare
from bench.scenarios.base import timing_boundary
from bench.scenarios.loops import Window, measure
from bench.scenarios.stopping import rule_for
from tests.helpers import FAST_STOP, TINY_MLP, load_run_json, run_cli, tiny_suite, write_suite

TINY = (("classes", 4), ("depth", 1), ("in_features", 8), ("width", 16))
CUDA = torch.cuda.is_available()


class FakeDevice:
    """A device clock the fake events read: each call queued on the 'GPU' takes `call_ns`."""

    def __init__(self, call_ns: int):
        self.call_ns = call_ns
        self.now_ns = 0
        self.synced = 0
        self.pending = 0  # events recorded since the last synchronize

    def new_event(self):
        device = self

        class Event:
            def record(self):
                self.t_ns = device.now_ns
                device.pending += 1

            def elapsed_time(self, other):
                assert device.pending == 0, "an event was read before the device was synchronized"
                return (other.t_ns - self.t_ns) / 1e6  # ms, as torch.cuda.Event gives

        return Event()

    def synchronize(self):
        self.synced += 1
        self.pending = 0

    def launch(self):  # the measured call: queue one call's work
        self.now_ns += self.call_ns

    def events(self) -> DeviceEvents:
        return DeviceEvents(self.new_event, self.synchronize)


def test_event_clock_reads_device_time_after_one_synchronize_per_chunk():
    dev = FakeDevice(call_ns=250_000)
    clock = EventClock(dev.events())
    stamps = [None] * 4
    tick = clock.clock_for(3)
    assert dev.synced == 1  # new events were recorded once (CUDA creates them then), outside any chunk
    stamps[0] = tick()
    for i in range(1, 4):
        dev.launch()
        stamps[i] = tick()
    assert dev.synced == 1  # nothing in the chunk waits for the device
    np.testing.assert_array_equal(clock.latencies_ns(stamps), [250_000] * 3)
    assert dev.synced == 2
    # The pool is reused chunk to chunk, not grown per call.
    clock.clock_for(2)
    assert len(clock._pool) == 4


def test_measure_with_events_times_the_device_not_the_host():
    dev = FakeDevice(call_ns=1_000_000)  # the GPU takes 1 ms; the host call returns at once
    spec = StopSpec(min_seconds=0.05, max_seconds=0.05, min_iterations=10, warmup_iterations=3, warmup_seconds=0.0,
                    ci_figures=())
    marks = []
    result = measure(BoundCall(dev.launch), spec, rule_for(spec), events=dev.events(),
                     window_marks=Window(lambda: marks.append("start"), lambda: marks.append("end")))
    assert set(result.latencies_ns.tolist()) == {1_000_000}
    assert result.window_ns == result.latencies_ns.size * 1_000_000 >= 50_000_000
    assert result.stop_reason.startswith("min_seconds")  # judged on device time
    # warm-up waited for the device after every call; each chunk waited once before reading events
    assert dev.synced >= result.warmup_latencies_ns.size + 1
    assert marks == ["start", "end"]


def test_single_stream_on_the_device_times_each_call_by_its_own_event_pair():
    dev = FakeDevice(call_ns=400_000)
    spec = StopSpec(min_seconds=0.02, max_seconds=0.02, min_iterations=5, warmup_iterations=2, warmup_seconds=0.0,
                    ci_figures=())
    before = dev.synced
    result = measure(BoundCall(dev.launch), spec, rule_for(spec), events=dev.events(), wait_each_call=True)
    # each call between its own start and end: the device's 0.4 ms, not the host's wait after it
    assert set(result.latencies_ns.tolist()) == {400_000}
    # warm-up waits after each call, the timed loop after each call too, plus one per chunk to read
    assert dev.synced - before >= result.warmup_latencies_ns.size + result.latencies_ns.size


def test_synchronized_waits_after_every_call():
    order = []
    call = synchronized(BoundCall(order.append, ("call",)), lambda: order.append("sync"))
    call.fn(*call.args)
    call.fn(*call.args)
    assert order == ["call", "sync", "call", "sync"]


def test_device_checks_name_what_exists_and_what_is_allowed():
    with pytest.raises(CellFailure, match=r"^no CUDA device$"):
        check_index("cuda", 0)
    with pytest.raises(CellFailure, match=r"device 'cuda:3' does not exist: this machine shows 1 CUDA device \(allowed: cuda:0\)"):
        check_index("cuda:3", 1)
    with pytest.raises(CellFailure, match=r"\(allowed: cuda:0 \.\. cuda:1\)"):
        check_index("cuda:2", 2)
    check_index("cuda:1", 2)
    with pytest.raises(CellFailure, match=r"bf16 is not supported on Tesla V100-SXM2-16GB \(compute capability 7.0; "
                                          r"bf16 needs 8.0 or newer\): use fp16 or fp32"):
        check_precision("bf16", (7, 0), "Tesla V100-SXM2-16GB")
    check_precision("bf16", (8, 0), "NVIDIA A100")
    check_precision("fp16", (7, 0), "Tesla V100-SXM2-16GB")


def test_out_of_memory_is_recognised_across_runtimes():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned "
                                         "while running Conv node. Failed to allocate memory for requested buffer"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("device lost"))
    try:  # re-raised as something else (e.g. leaving a graph capture): the chain is read
        try:
            raise torch.OutOfMemoryError("CUDA out of memory")
        except torch.OutOfMemoryError as inner:
            raise RuntimeError("capture failed") from inner
    except RuntimeError as outer:
        assert is_out_of_memory(outer)
    reason = out_of_memory_reason(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"), 512)
    assert reason == "out of memory at batch 512: CUDA out of memory. Tried to allocate 2 GiB"


# --- config ------------------------------------------------------------------------------------

GPU_TARGETS = """
[targets.t-eager]
backend = "torch"
device = "cuda"
precision = "fp16"
channels_last = true

[targets.t-graph]
backend = "torch"
device = "cuda:0"
mode = "cudagraph"
precision = "bf16"

[targets.t-compile]
backend = "torch"
device = "cuda"
mode = "compile"
compile_mode = "max-autotune"
io = "host"

[targets.o-cuda]
backend = "onnxruntime"
device = "cuda"
precision = "fp16"
providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
allow_fallback = true
"""


def test_gpu_targets_parse_with_their_knobs():
    suite = parse_suite(tiny_suite(targets='["ort", "t-eager", "t-graph", "t-compile", "o-cuda"]',
                                   extra_targets=GPU_TARGETS))
    t = suite.targets
    assert t["t-eager"].options.channels_last and t["t-eager"].precision == "fp16" and t["t-eager"].is_cuda
    assert t["t-graph"].options.mode == "cudagraph"
    assert t["t-compile"].options.compile_mode == "max-autotune" and t["t-compile"].options.io == "host"
    assert t["o-cuda"].options.allow_fallback and t["o-cuda"].options.uses_io_binding("cuda")
    assert not t["ort"].options.uses_io_binding("cpu")


@pytest.mark.parametrize("target, expected", [
    ('backend = "torch"\nmode = "cudagraph"', "targets.x.mode: 'cudagraph' captures CUDA graphs; set device = \"cuda\""),
    ('backend = "torch"\nio = "host"', "targets.x.io: 'host' copies inputs to a GPU on every call; it applies to cuda"),
    ('backend = "torch"\ndevice = "cuda"\nio = "pinned"', "targets.x.io: 'pinned' is not allowed (allowed: device, host)"),
    ('backend = "torch"\ncompile_mode = "max-autotune"', 'targets.x.compile_mode: applies to mode = "compile" only'),
    ('backend = "torch"\nmode = "compile"\ncompile_mode = "fast"', "targets.x.compile_mode: 'fast' is not allowed"),
    ('backend = "onnxruntime"\ndevice = "cuda"\nprecision = "bf16"', "targets.x.precision: 'bf16' is not supported on onnxruntime"),
    ('backend = "onnxruntime"\ndevice = "cuda"\nproviders = ["CPUExecutionProvider"]',
     "targets.x.providers: device 'cuda' needs a GPU provider first"),
    ('backend = "torch"\ndevice = "gpu0"', "targets.x.device: 'gpu0' is not allowed (allowed: cpu, cuda, cuda:N)"),
    ('backend = "onnxruntime"\nallow_fallback = "yes"', "targets.x.allow_fallback: 'yes' is not allowed; expected true or false"),
])
def test_bad_gpu_target_knobs(target, expected):
    text = tiny_suite(targets='["ort", "x"]', extra_targets=f"[targets.x]\n{target}\n")
    with pytest.raises(ConfigError) as err:
        parse_suite(text, "gpu.toml")
    assert str(err.value).startswith("gpu.toml: ") and expected in str(err.value)


def test_cudagraph_target_cannot_serve_concurrent_clients():
    extra = '[targets.g]\nbackend = "torch"\ndevice = "cuda"\nmode = "cudagraph"\n'
    text = tiny_suite(targets='["torch", "g"]', extra_targets=extra, scenarios='["multi-stream"]',
                      bench_extra="concurrency = [1, 4]")
    with pytest.raises(ConfigError, match=r"benchmark\[0\] \(m\)\.targets\[1\]: 'g' replays one CUDA graph"):
        parse_suite(text)
    parse_suite(text.replace("concurrency = [1, 4]", "concurrency = [1]"))


# --- torch modes and ORT IOBinding / fp16, on the CPU ---------------------------------------------


@pytest.fixture(scope="module")
def mlp():
    return prepare(ModelRef("zoo:mlp", "zoo", TINY, seed=0), need_onnx=True, need_torch=True, need_fp16=True)


@pytest.fixture(scope="module")
def cnn():
    args = (("blocks", "1"), ("width", 8), ("image", 16), ("classes", 4))
    return prepare(ModelRef("zoo:resnet-mini", "zoo", args, seed=0), need_onnx=False, need_torch=True)


def _target(backend, options, precision="fp32", device="cpu"):
    return TargetSpec("t", backend, device, precision, options)


def test_channels_last_runs_nhwc_and_agrees(cnn):
    feeds = make_inputs(cnn.inputs, 3, 0)
    plain = backends.create("torch")
    plain.load(cnn, _target("torch", TorchOptions(threads=1)))
    nhwc = backends.create("torch")
    nhwc.load(cnn, _target("torch", TorchOptions(threads=1, channels_last=True)))
    fn, args = nhwc.bind(feeds)
    assert args[0].is_contiguous(memory_format=torch.channels_last) and not args[0].is_contiguous()
    agreement = compare_outputs(nhwc.outputs(feeds), plain.outputs(feeds), "plain", 1e-4)
    assert agreement.verdict == "pass"
    assert timing_boundary(nhwc, device_timed=True) == "end_to_end"
    assert nhwc.events() is None and nhwc.gpu_memory() is None and not nhwc.resident_on_device()


def _session(backend, model, batch: int = 2, clock=None, keep=None):
    from bench.config.records import BenchmarkSpec
    from bench.results.records import CellKey
    from bench.scenarios.base import Session

    bench = BenchmarkSpec("m", "zoo:mlp", (batch,), ("offline",), ("t",), "t", StopSpec())
    kw = {} if clock is None else {"clock": clock}
    session = Session(bench, CellKey("m", "", "t", batch, "offline"), model.inputs, backend, device_timed=True, **kw)
    session.start(keep or (lambda outputs: None))
    return session


def test_torch_compile_on_cpu_compiles_in_bind_which_the_scenario_times_apart(mlp):
    feeds = make_inputs(mlp.inputs, 2, 0)
    eager = backends.create("torch")
    eager.load(mlp, _target("torch", TorchOptions(threads=1)))
    compiled = backends.create("torch")
    compiled.load(mlp, _target("torch", TorchOptions(threads=1, mode="compile")))
    assert compiled.setup_cost() == "compile" and eager.setup_cost() is None
    assert not compiled.runner._seen  # nothing compiled until a shape is seen
    session = _session(compiled, mlp)  # binds the cell's call: compiles this shape
    assert set(session.setup_s) == {"compile"} and session.setup_s["compile"] > 0
    assert compiled.info().details["mode"] == "compile" and len(compiled.runner._seen) == 1
    fn, args = session.call
    with compiled.context():
        out = fn(*args)
    assert compare_outputs([out.double().numpy()], eager.outputs(feeds), "eager", 1e-4).verdict == "pass"
    fn(*args)
    session.bind(feeds)
    assert len(compiled.runner._seen) == 1  # the same shape does not compile again


class _SetupBackend:
    """A backend whose first outputs take 0.5 s, bind 1.5 s and its device work 0.25 s more, on a
    fake clock; work queued before setup (0.1 s) is waited for before the clock starts."""

    def __init__(self, cost):
        self.now = 0.0
        self.cost = cost
        self.waits = 0
        self.queued = 0.1

    def outputs(self, feeds):
        self.now += 0.5
        return []

    def bind(self, feeds):
        self.now += 1.5
        self.queued = 0.25
        return lambda: None

    def wait(self):
        self.waits += 1
        self.now += self.queued
        self.queued = 0.0

    def device_wait(self):
        return self.wait

    def setup_cost(self):
        return self.cost

    def events(self):
        return None

    def resident_on_device(self):
        return True


@pytest.mark.parametrize("cost", ["compile", "capture", None])
def test_the_scenario_times_the_first_call_on_a_shape_as_the_backends_setup_cost(mlp, cost):
    backend = _SetupBackend(cost)

    def keep(outputs):  # writing the outputs down (0.3 s) is the harness's, not setup
        backend.now += 0.3

    session = _session(backend, mlp, clock=lambda: backend.now, keep=keep)
    assert session.boundary == "device_resident" and backend.waits == 2  # before and after the setup
    # outputs, then bind, then the device finishing: not the 0.1 s queued before
    assert session.setup_s == ({} if cost is None else {cost: 2.25})
    session.bind(session.inputs(4))
    assert session.setup_s == ({} if cost is None else {cost: pytest.approx(4.0)})  # another shape adds its own
    session.bind(session.feeds)
    assert session.setup_s == ({} if cost is None else {cost: pytest.approx(4.0)})  # the same shape again adds none
    waits = backend.waits
    session.call.fn()
    assert backend.waits == waits + 1  # device_resident: the call itself waits for the device too


def test_ort_io_binding_reuses_bound_buffers(mlp):
    feeds = make_inputs(mlp.inputs, 4, 0)
    backend = backends.create("onnxruntime")
    backend.load(mlp, _target("onnxruntime", OrtOptions(intra_op_threads=1, io_binding=True)))
    fn, args = backend.bind(feeds)
    assert fn == backend.session.run_with_iobinding
    (binding,) = args
    before = [v.data_ptr() for v in binding.get_outputs()]
    fn(binding)
    after = binding.get_outputs()
    assert [v.data_ptr() for v in after] == before  # outputs written in place, nothing allocated
    np.testing.assert_allclose(after[0].numpy(), backend.outputs(feeds)[0], rtol=1e-6)
    assert backend.info().details["io_binding"] is True and timing_boundary(backend, device_timed=True) == "end_to_end"


def test_ort_fp16_target_runs_the_converted_model(mlp):
    import onnx

    model16 = onnx.load(mlp.onnx_fp16_path)
    assert model16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(i.data_type != onnx.TensorProto.FLOAT for i in model16.graph.initializer)
    feeds = make_inputs(mlp.inputs, 4, 0)
    ref = backends.create("onnxruntime")
    ref.load(mlp, _target("onnxruntime", OrtOptions(intra_op_threads=1)))
    half = backends.create("onnxruntime")
    half.load(mlp, _target("onnxruntime", OrtOptions(intra_op_threads=1), precision="fp16"))
    fn, (names, fed) = half.bind(feeds)
    assert fed["x"].dtype == np.float16
    agreement = compare_outputs(half.outputs(feeds), ref.outputs(feeds), "ort", 1e-2)
    assert agreement.verdict == "pass" and agreement.max_rel_error > 1e-6  # really ran in fp16
    assert half.info().details["model_precision"].startswith("fp16")


def test_ort_allowed_fallback_runs_and_records_it(mlp, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["XnnpackExecutionProvider", "CPUExecutionProvider"])
    backend = backends.create("onnxruntime")
    backend.load(mlp, _target("onnxruntime", OrtOptions(providers=("XnnpackExecutionProvider", "CPUExecutionProvider"),
                                                        allow_fallback=True)))
    info = backend.info()
    assert info.providers == ("CPUExecutionProvider",) and info.details["fell_back_from"] == ["XnnpackExecutionProvider"]


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA: with a device torch.cuda.is_available() is True "
                                  "and the target loads")
def test_cuda_torch_target_without_cuda_fails_with_the_reason(mlp):
    backend = backends.create("torch")
    with pytest.raises(CellFailure, match=r"no CUDA device \(torch.cuda.is_available\(\) is False"):
        backend.load(mlp, _target("torch", TorchOptions(), device="cuda"))


# --- whole runs: a GPU-shaped plugin backend, OOM sweeps, device indices --------------------------

PLUGINS = '''
import numpy as np
import torch
from bench.backends import Backend, BackendInfo, DeviceEvents


class FakeGpu(Backend):
    """Behaves as a GPU backend does: inputs resident on the device, timing through events (each
    call 0.25 ms of 'device' time, whatever the host takes), a device wait, an allocator peak, and
    a one-off cost of binding (a graph capture)."""

    def load(self, model, target):
        self.t_ns = 0
        self.waits = 0

    def bind(self, feeds):
        return lambda: None

    def outputs(self, feeds):
        return [np.zeros((next(iter(feeds.values())).shape[0], 4))]  # the mlp's shape; tolerance is lax

    def info(self):
        return BackendInfo(runtime="fake-gpu", details={"mode": "fake"})

    def setup_cost(self):
        return "capture"

    def resident_on_device(self):
        return True

    def events(self):
        backend = self

        class Event:
            def record(self):
                backend.t_ns += 250_000
                self.t_ns = backend.t_ns

            def elapsed_time(self, other):
                return (other.t_ns - self.t_ns) / 1e6

        return DeviceEvents(Event, self.synchronize)

    def synchronize(self):
        self.waits += 1

    def device_wait(self):
        return self.synchronize

    def gpu_memory(self):
        return 123456, "fake allocator"


class OomAbove2(FakeGpu):
    def bind(self, feeds):
        batch = next(iter(feeds.values())).shape[0]
        if batch > 2:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {batch} GiB")
        return super().bind(feeds)
'''


@pytest.fixture
def gpu_plugins(tmp_path, monkeypatch):
    (tmp_path / "bench_gpu_plugins.py").write_text(textwrap.dedent(PLUGINS))
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path


def _plugin_suite(cls: str, batch_sizes: str, scenarios: str = '["single-stream", "offline"]') -> str:
    return f"""
        [suite]
        name = "gpu-shaped"

        [targets.torch]
        backend = "torch"
        threads = 1

        [targets.fake]
        backend = "bench_gpu_plugins:{cls}"

        [[benchmark]]
        name = "m"
        model = "zoo:mlp"
        model_args = {TINY_MLP}
        batch_sizes = {batch_sizes}
        scenarios = {scenarios}
        targets = ["torch", "fake"]
        tolerance = 1e9
        stop = {FAST_STOP}
    """


def test_device_timed_cells_report_device_time_boundary_memory_and_setup(tmp_path, capsys, gpu_plugins):
    suite = write_suite(tmp_path, _plugin_suite("FakeGpu", "[2]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cells = {(c["target"]["name"], c["scenario"]): c for c in load_run_json(tmp_path / "r")["cells"]}
    for scenario in ("single-stream", "offline"):
        cell = cells[("fake", scenario)]
        assert cell["timing_boundary"] == "device"
        lat = cell["metrics"]["latency_ms"]
        assert lat["p50"]["value"] == lat["max"]["value"] == 0.25  # the events' time, not the host's
        assert cell["metrics"]["throughput"]["value"] == pytest.approx(2 / 0.25e-3)
        assert cell["memory"]["gpu_peak_bytes"] == 123456 and cell["memory"]["gpu_peak_source"] == "fake allocator"
        # bind's time (the fake-clock test above checks the arithmetic), apart from steady state
        assert cell["compile_s"] is None and 0 <= cell["capture_s"] <= cell["load_s"]
        assert cell["target"]["runtime"] == "fake-gpu" and cell["target"]["details"] == {"mode": "fake"}
        # FLOPs per sample from torch's counter; no peak for a cpu device
        roof = cell["roofline"]
        assert roof["flops_per_sample"] == 2 * (16 * 32 + 32 * 32 + 32 * 4)
        assert roof["achieved_flops_per_s"] == pytest.approx(roof["flops_per_sample"] * 8000)
        assert roof["fraction_of_peak"] is None and roof["peak_source"].startswith("no peak")
    assert cells[("torch", "offline")]["timing_boundary"] == "end_to_end"
    assert cells[("torch", "offline")]["gpu"] is None and cells[("torch", "offline")]["memory"]["gpu_peak_bytes"] is None


def test_out_of_memory_fails_its_cell_stops_the_sweep_and_names_the_largest_batch(tmp_path, capsys, gpu_plugins):
    suite = write_suite(tmp_path, _plugin_suite("OomAbove2", "[1, 2, 4, 8]", '["offline"]'))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 3, err
    cells = {c["id"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["m/fake/b1/offline"]["status"] == cells["m/fake/b2/offline"]["status"] == "ok"
    b4 = cells["m/fake/b4/offline"]
    assert b4["status"] == "failed" and b4["reason"] == "out of memory at batch 4: CUDA out of memory. Tried to allocate 4 GiB"
    assert cells["m/fake/b8/offline"]["status"] == "skipped"
    assert cells["m/fake/b8/offline"]["reason"] == "sweep stopped: out of memory at batch 4"
    assert all(cells[f"m/torch/b{b}/offline"]["status"] == "ok" for b in (1, 2, 4, 8))  # the others complete
    assert "m/fake offline: out of memory at batch 4; largest batch that fit: 2" in err


def test_device_index_that_does_not_exist_fails_its_cell(tmp_path, capsys, monkeypatch):
    from bench.measure import nvml_devices

    # a one-GPU machine, as the local executor sees it
    monkeypatch.setattr(nvml_devices, "visible_device_count", lambda: (1, ""))
    extra = '\n[targets.gpu3]\nbackend = "torch"\ndevice = "cuda:3"\n'
    suite = write_suite(tmp_path, tiny_suite(targets='["torch", "gpu3"]', extra_targets=extra, batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 3, err
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["torch"]["status"] == "ok"
    assert cells["gpu3"]["status"] == "failed"
    assert cells["gpu3"]["reason"] == ("target 'gpu3': device 'cuda:3' does not exist: this machine shows 1 CUDA "
                                       "device (allowed: cuda:0)")


# --- on a real GPU (skipped here) -----------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_real_gpu_modes_agree_and_time_on_the_device(tmp_path, capsys):
    targets = """
        [targets.cuda-eager]
        backend = "torch"
        device = "cuda"
        precision = "fp16"
        channels_last = true

        [targets.cuda-graph]
        backend = "torch"
        device = "cuda"
        mode = "cudagraph"
        precision = "fp16"
        channels_last = true

        [targets.cuda-host]
        backend = "torch"
        device = "cuda"
        io = "host"
    """
    body = tiny_suite(model="zoo:resnet-mini", targets='["torch", "cuda-eager", "cuda-graph", "cuda-host"]',
                      extra_targets=textwrap.dedent(targets), batch_sizes="[1, 8]",
                      scenarios='["single-stream", "offline"]')
    suite = write_suite(tmp_path, body)
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cells = load_run_json(tmp_path / "r")["cells"]
    for c in cells:
        if c["target"]["device"].startswith("cuda"):
            assert c["status"] == "ok" and c["agreement"]["verdict"] == "pass", c["reason"]
            assert c["memory"]["gpu_peak_bytes"] > 0
            assert c["timing_boundary"] == ("end_to_end" if c["target"]["name"] == "cuda-host" else "device")
            assert c["roofline"]["fraction_of_peak"] > 0
    graph = [c for c in cells if c["target"]["name"] == "cuda-graph"]
    assert all(c["capture_s"] > 0 for c in graph)


def test_fidelity_check_compares_harness_and_hand_loop_on_one_module():
    import statistics

    from bench.selfcheck.fidelity import check_fidelity

    # The CPU form of the GPU check (eager, tiny model): the same code path, real figures. Their
    # size is the machine's business; what is checked is that each figure is the median it claims.
    f = check_fidelity(model="zoo:mlp", device="cpu", mode="eager", precision="fp32", channels_last=False,
                       batch_sizes=(1, 8), rounds=3, seconds_per_round=0.05, model_args=TINY)
    assert [p.batch_size for p in f.points] == [1, 8] and not f.note
    for p in f.points:
        assert p.rounds == 3 and len(p.hand_ns_rounds) == 3 and len(p.harness_ns_rounds) == 3
        assert all(math.isfinite(t) and t > 0 for t in p.hand_ns_rounds + p.harness_ns_rounds)
        assert p.hand_ms_per_batch == statistics.median(p.hand_ns_rounds) / 1e6
        assert p.harness_ms_per_batch == statistics.median(p.harness_ns_rounds) / 1e6
        assert p.ratio == statistics.median(h / m for h, m in zip(p.hand_ns_rounds, p.harness_ns_rounds))


def test_fidelity_ratio_is_the_median_of_paired_ratios_not_a_ratio_of_medians():
    from bench.selfcheck.fidelity import fidelity_point

    # Round by round (ns per call): the harness 10% slower than the hand loop in every round.
    hand, harness = [100.0, 200.0, 400.0], [110.0, 220.0, 440.0]
    # The same harness times paired with other rounds: each loop's median is unchanged (so is the
    # ratio of medians, 200/220), but the within-round ratios are 100/440, 200/110 and 400/220.
    harness_drifted = [440.0, 110.0, 220.0]
    p = fidelity_point(256, hand, harness)
    assert (p.batch_size, p.rounds, p.hand_ns_rounds, p.harness_ns_rounds) == (256, 3, (100.0, 200.0, 400.0),
                                                                                (110.0, 220.0, 440.0))
    assert p.hand_ms_per_batch == 200.0 / 1e6 and p.harness_ms_per_batch == 220.0 / 1e6
    assert p.ratio == 100.0 / 110.0
    q = fidelity_point(256, hand, harness_drifted)
    assert q.hand_ms_per_batch == 200.0 / 1e6 and q.harness_ms_per_batch == 220.0 / 1e6  # the same medians
    assert q.ratio == 200.0 / 110.0 != 200.0 / 220.0  # the median of the paired ratios
    with pytest.raises(ValueError, match="paired rounds expected: 3 hand, 2 harness"):
        fidelity_point(1, hand, harness[:2])


@pytest.mark.skipif(CUDA, reason="needs a machine without CUDA: with a device the fidelity check runs")
def test_fidelity_self_check_without_cuda_says_skipped(capsys):
    import json

    code, out, err = run_cli(capsys, "self-check", "--checks", "fidelity", "--json")
    assert code == 2 and "self-check fidelity could not run: no CUDA device" in err  # not a goal met (issue 27)
    report = json.loads(out)["fidelity"]
    assert report["note"] == "skipped: no CUDA device" and report["points"] == []
    assert report["model"] == "zoo:resnet50-like" and report["mode"] == "cudagraph" and report["precision"] == "fp16"


def test_multi_stream_clients_get_their_own_io_binding(tmp_path, capsys):
    extra = '[targets.bound]\nbackend = "onnxruntime"\nintra_op_threads = 1\nio_binding = true\n'
    body = tiny_suite(targets='["ort", "bound"]', extra_targets=extra, scenarios='["multi-stream"]',
                      bench_extra="concurrency = [3]", batch_sizes="[2]")
    code, _, err = run_cli(capsys, "run", str(write_suite(tmp_path, body)), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cell = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}["bound"]
    assert cell["status"] == "ok" and cell["target"]["details"]["io_binding"] is True
    assert len(cell["clients"]["throughput_per_client"]) == 3 and min(cell["clients"]["throughput_per_client"]) > 0


def test_gpu_report_shows_boundary_telemetry_throttling_and_fraction_of_peak():
    from dataclasses import replace
    from pathlib import Path

    from rich.console import Console

    from bench.report import markdown, terminal
    from bench.report.run_tables import gpu_table
    from bench.results.files import read_run
    from bench.results.records import GpuTelemetry, Memory, Roofline

    run = read_run(Path(__file__).parent / "data/run_v4.json")
    assert gpu_table(run) is None and "### GPU" not in markdown.run_summary(run)  # a CPU-only run has none
    cell = next(c for c in run.cells if c.status == "ok")
    gpu = GpuTelemetry(device_index=0, uuid="GPU-x", samples=30, interval_ms=100, window_s=3.0,
                       utilization_mean_pct=97.0, sm_clock_min_mhz=1410, sm_clock_max_mhz=1980, power_mean_w=612.0,
                       energy_j=1836.0, energy_per_sample_j=0.0125, throttle_reasons=("SwPowerCap",), throttled=True)
    gpu_cell = replace(cell, target=replace(cell.target, device="cuda:0"), timing_boundary="device", gpu=gpu,
                       memory=Memory(1 << 30, 3 << 30, "torch.cuda.max_memory_allocated"), capture_s=0.25,
                       roofline=Roofline(8.2e9, "torch", 4.1e14, 8.0e14, 0.5125))
    run = replace(run, cells=(gpu_cell,))
    console = Console(width=250, record=True)
    console.print(terminal.render(gpu_table(run)))
    text = console.export_text()
    for expected in ("device", "0.250", "3,072", "97", "1410-1980", "612", "0.0125", "THROTTLED: SwPowerCap", "410",
                     "51.2%"):
        assert expected in text, expected
    md = markdown.run_summary(run)
    assert "### GPU" in md and "| `" + gpu_cell.id + "` | device |" in md and "51.2%" in md
    assert "**THROTTLED: SwPowerCap**" in md  # the same row model, its emphasis rendered in Markdown


# --- failure kinds and what a backend reports, in the worker (in this process) ---------------


WRAPPING = """
from bench.backends import Backend, BackendInfo
from bench.errors import CellFailure
import numpy as np


class WrappedOom(Backend):
    # ONNX Runtime's loader wraps every session error in a CellFailure, allocation failures too
    def load(self, model, target):
        raise CellFailure("onnxruntime cannot load the model: Fail: [ONNXRuntimeError] : 1 : FAIL : "
                          "Failed to allocate memory for requested buffer of size 1073741824")

    def bind(self, feeds):
        return lambda: None

    def outputs(self, feeds):
        return [np.zeros(1)]


class NumpyDetails(WrappedOom):
    def load(self, model, target):
        pass

    def info(self):
        return BackendInfo(runtime="np", details={"threads": np.int64(4), "ok": True, "shape": (2, 3),
                                                  "obj": object(), "mixed": [1, object()]})
"""


@pytest.fixture
def unit_job(tmp_path, monkeypatch):
    from bench.config.suite import parse_suite
    from bench.runner.plan import plan
    from bench.runner.unit import UnitJob

    (tmp_path / "bench_wrapping.py").write_text(WRAPPING)
    monkeypatch.syspath_prepend(str(tmp_path))

    def job(cls: str, model):
        extra = f'[targets.x]\nbackend = "bench_wrapping:{cls}"\n'
        suite = parse_suite(tiny_suite(targets='["x"]', extra_targets=extra, batch_sizes="[8]"))
        (cell,) = plan(suite)
        return UnitJob(cell.key, 0, suite.benchmarks[0], cell.target, model, str(tmp_path / "out.npz"))

    return job


def test_an_allocation_failure_inside_a_cell_failure_is_out_of_memory(unit_job, mlp):
    from bench.runner.unit import run_unit

    with pytest.raises(CellFailure) as failure:
        run_unit(unit_job("WrappedOom", mlp))
    assert failure.value.kind == "out_of_memory"
    assert str(failure.value).startswith("out of memory at batch 8: onnxruntime cannot load the model")


def test_backend_details_keep_only_what_run_json_can_hold(unit_job, mlp):
    from bench.runner.assemble import json_details
    from bench.runner.unit import run_unit

    import json

    out = run_unit(unit_job("NumpyDetails", mlp))
    with pytest.raises(TypeError):
        json.dumps(out.info.details)  # as reported: run.json could not be written
    details = json_details(out.info.details)
    assert details == {"threads": 4, "ok": True, "shape": [2, 3]} and type(details["threads"]) is int
    assert json.loads(json.dumps(details)) == details
