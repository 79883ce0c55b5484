"""int8 on torch targets (CPU only): the module quantized in the worker, before the target's mode.

  int8-static   PT2E static quantization for x86, then torch.compile (the config requires
                mode = "compile"): torch.export.export(module) with a dynamic batch axis (and one
                per named dimension) -> prepare_pt2e with torchao's X86InductorQuantizer (int8
                weights, a scale per output channel; uint8 activations, per tensor) -> the prepared
                model run on the calibration samples in batches of 8 -> convert_pt2e ->
                torch.compile with inductor's freezing on, so inductor folds the weights, packs
                them for oneDNN and lowers each quantize/conv|linear/dequantize group to one int8
                kernel. Without freezing inductor lowers no int8 kernel: the convolutions run in
                float on dequantized weights (resnet-mini, batch 8, 1 thread, measured once:
                3.8 ms a call against 2.1 ms with freezing, 3.9 ms fp32 eager). Freezing is
                patched in around the compiling calls only, never for the whole process.
                Activation ranges by quantize.method: "minmax" MinMaxObserver; "entropy" and
                "percentile" HistogramObserver (torch has neither an entropy nor a percentile
                observer: HistogramObserver, x86's default, searches the range of least L2 error;
                details say it ran instead). per_channel = false is not honoured: inductor's x86
                lowering packs per-channel weights only (details say so).
  int8-dynamic  torch.ao.quantization.quantize_dynamic on every nn.Linear (int8 weights, per
                channel as quantize.per_channel says; activations quantized per call from their
                observed range), then eager or compile as the target says. torch.compile cannot
                trace the packed weights of a dynamically quantized Linear (a ScriptObject): each
                one breaks the graph, and the Linears run as the eager quantized::linear_dynamic
                kernels between whatever dynamo compiled: on zoo:mlp, nothing (the module runs
                eager under mode = "compile"). details say so: "compiled_graphs", "graph_breaks"
                and "compile_note". No calibration: quantize.method and samples do not apply.

Where PT2E does not apply (torch.export refuses the module, e.g. data-dependent control flow;
torchao is not installed; prepare or convert fails) an int8-static target falls back to the
dynamic quantization of its Linear layers and details["quantization"] says so and why. A module
with nothing to quantize (no nn.Linear for dynamic; nothing the x86 quantizer annotates for PT2E)
runs as fp32 and says "nothing was quantized".

Recorded in the target's details: "quantization" (what ran, and why where it is not what was
asked), "model_precision" (ops in int8 and left in float, as the onnxruntime backend writes it),
"quantize_s" (this worker's one-off time to quantize and calibrate, the torchao import included;
compile time is the scenario's compile_s), and after compiling "int8_kernels" (the int8 kernels
inductor lowered for the first compiled shape) or "compiled_graphs" and "graph_breaks" (int8-dynamic).

The generate scenario: int8-dynamic generates (quantize_dynamic keeps the decoder's module and its
prefill/decode methods, its Linears int8); int8-static refuses the cell ("unsupported"), since
PT2E quantizes the exported forward() alone, not a decoder's prefill and decode steps.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

CALIBRATION_BATCH = 8  # samples per calibration call
# aten ops that carry the FLOPs (what "left in float" counts), by their op names
_COMPUTE = frozenset(("conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d",
                      "conv_transpose3d", "linear", "matmul", "mm", "addmm", "bmm", "baddbmm"))


@dataclass
class Quantized:
    """What quantize() made of the module, and what the target's details say about it."""

    module: torch.nn.Module
    description: str  # details["quantization"]
    model_precision: str  # details["model_precision"]
    seconds: float  # details["quantize_s"]
    compile_watch: CompileWatch | None = None  # the compile mode's first calls run inside it


class CompileWatch:
    """A context for the compile mode's compiling calls (bench.backends.torch.modes.CompileRunner):
    inductor's freezing on where PT2E needs it, and what the first compile did, from dynamo's and
    inductor's counters (int8 kernels lowered; graphs captured and graph breaks)."""

    def __init__(self, freezing: bool, int8_ops: int):
        self.freezing = freezing
        self.int8_ops = int8_ops  # what the notes expect: nothing to say of a module left in fp32
        self.int8_kernels: int | None = None
        self.graphs: int | None = None
        self.graph_breaks: int | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        from torch._dynamo.utils import counters

        kernels, graphs, breaks = _lowered(counters), _graphs(counters), sum(counters["graph_break"].values())
        with contextlib.ExitStack() as stack:
            if self.freezing:
                import warnings

                import torch._inductor.config as inductor_config

                stack.enter_context(inductor_config.patch(freezing=True))
                # inductor's oneDNN lowering warns about its own torch.tensor(tensor) calls
                stack.enter_context(warnings.catch_warnings())
                warnings.simplefilter("ignore", UserWarning)
            yield
        if self.int8_kernels is None:
            self.int8_kernels = _lowered(counters) - kernels
            self.graphs = _graphs(counters) - graphs
            self.graph_breaks = sum(counters["graph_break"].values()) - breaks

    def details(self) -> dict[str, Any]:
        if self.int8_kernels is None:  # not compiled (yet)
            return {}
        if self.freezing:
            out: dict[str, Any] = {"int8_kernels": self.int8_kernels}
            if self.int8_ops and not self.int8_kernels:
                out["int8_kernels_note"] = ("inductor lowered no int8 kernel: the graph runs float reference ops "
                                            "around int8 weights")
            return out
        out = {"compiled_graphs": self.graphs, "graph_breaks": self.graph_breaks}
        if not self.int8_ops:
            pass
        elif not self.graphs:
            out["compile_note"] = ("torch.compile captured no graph: dynamo cannot trace a dynamically quantized "
                                   "Linear's packed weights (a ScriptObject), so the module ran eager under "
                                   "mode = \"compile\"")
        elif self.graph_breaks:
            out["compile_note"] = ("the dynamically quantized Linears run eager (graph breaks: dynamo cannot trace "
                                   "their packed weights), the ops between them compiled")
        return out


def _graphs(counters: Any) -> int:
    return int(counters["stats"].get("unique_graphs", 0))


def _lowered(counters: Any) -> int:
    # inductor counts each int8 kernel it lowers as q{conv,linear}*_lower_count (x86 passes)
    return sum(v for k, v in counters["inductor"].items() if k.startswith("q") and k.endswith("_lower_count"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # torchao prints "Failed to load ... _C_mxfp8 ... .so" on a CPU-only build, torch.export
    # and the quantizers warn and log; what matters is reported in details or one line
    from bench.models.quiet import quiet

    with quiet():
        yield


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def quantize(module: torch.nn.Module, model: Any, target: Any,
             tensors: Callable[[dict[str, np.ndarray]], tuple[torch.Tensor, ...]]) -> Quantized:
    """`module` (fp32, CPU, eval) quantized for `target` (its precision and quantize table);
    `tensors` turns arrays into the module's positional inputs as the backend feeds them."""
    t0 = time.perf_counter()
    spec = target.quantize
    if target.precision == "int8-static":
        why, done = _pt2e(module, model, spec, tensors)
        if done is not None:
            return dataclasses.replace(done, seconds=time.perf_counter() - t0)
        out = _dynamic(module, spec, target.precision, f"PT2E did not apply: {why}")
    else:
        out = _dynamic(module, spec, target.precision, "")
    return dataclasses.replace(out, seconds=time.perf_counter() - t0)


def _describe(precision: str, settings: str, int8: int, left: int, note: str) -> str:
    if not int8:
        return f"{precision} ({settings}): {note}"
    return f"{precision} ({settings}): {int8} ops int8, {left} left in float"


# --- dynamic: quantize_dynamic on nn.Linear ------------------------------------------------------

def _dynamic(module: torch.nn.Module, spec: Any, precision: str, fell_back: str) -> Quantized:
    import warnings

    from torch import nn

    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        qconfig = per_channel_dynamic_qconfig if spec.per_channel else default_dynamic_qconfig
        quantized = quantize_dynamic(module, {nn.Linear: qconfig}, dtype=torch.qint8)
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    int8 = sum(isinstance(m, DynamicLinear) for m in quantized.modules())
    float_types = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                   nn.ConvTranspose3d)
    left = sum(isinstance(m, float_types) for m in quantized.modules())
    weights = "per-channel" if spec.per_channel else "per-tensor"
    what = (f"dynamic Linear int8 ({weights} weights, activations quantized per call; torch.ao quantize_dynamic, "
            f"engine {torch.backends.quantized.engine})")
    nothing = "nothing was quantized: the module has no nn.Linear; it runs as fp32"
    if not int8:
        what = f"{what}: {nothing}"
    if fell_back:
        what = f"{what} ({fell_back})"
    ran = "int8-dynamic" if precision == "int8-dynamic" else "int8-dynamic, int8-static fell back"
    return Quantized(quantized, what, _describe(ran, spec.key(), int8, left, nothing), 0.0,
                     CompileWatch(freezing=False, int8_ops=int8))


# --- static: PT2E with the x86 inductor quantizer ------------------------------------------------

def _example_and_shapes(model: Any, feeds: dict[str, np.ndarray],
                        tensors: Callable[[dict[str, np.ndarray]], tuple[torch.Tensor, ...]]):
    """Export's example inputs (up to one calibration batch, at least 2 samples: a batch of 1
    would specialise the axis) and its dynamic shapes: the batch axis and every named dimension
    whose example size is over 1, as the ONNX export does (bench.models.loader)."""
    count = len(next(iter(feeds.values())))
    take = max(1, min(CALIBRATION_BATCH, count))
    example = {n: a[:take] for n, a in feeds.items()}
    if take == 1:
        example = {n: np.concatenate([a, a]) for n, a in example.items()}
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    named: dict[str, Any] = {}
    dynamic = []
    specs = {s.name: s for s in model.inputs}
    for name, arr in example.items():
        axes: dict[int, Any] = {0: batch}
        spec = specs.get(name)
        for axis, d in enumerate(spec.shape if spec is not None else (), start=1):
            if isinstance(d, str) and axis < arr.ndim and arr.shape[axis] > 1:
                axes[axis] = named.setdefault(d, torch.export.Dim(d, min=1, max=1 << 24))
        dynamic.append(axes)
    return tensors(example), tuple(dynamic)


def _has_vnni() -> bool:
    """VNNI's u8 x s8 dot product: without it x86 int8 kernels can saturate, and torch's x86
    config asks for reduce_range (7-bit activations). Unknown (no /proc/cpuinfo): assumed."""
    from bench.measure.environment import cpu_isa

    isa = cpu_isa()
    return not isa or bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(isa))


def _pt2e(module: torch.nn.Module, model: Any, spec: Any,
          tensors: Callable[[dict[str, np.ndarray]], tuple[torch.Tensor, ...]]) -> tuple[str, Quantized | None]:
    """(why PT2E did not apply, None) or ("", the compiled-to-be quantized module)."""
    from bench.models.calibration import calibration_feeds

    try:
        with _quiet():
            from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
    except ImportError as exc:
        return f"torchao is not installed ({_first_line(exc)})", None
    feeds = calibration_feeds(model, spec)
    example, dynamic = _example_and_shapes(model, feeds, tensors)
    try:
        with _quiet():
            exported = torch.export.export(module, example, dynamic_shapes=dynamic).module()
    except Exception as exc:  # export's refusals are many types (UserError, GuardOnDataDependent, ...)
        return f"torch.export failed: {_first_line(exc)}", None
    vnni = _has_vnni()
    config = xiq.get_default_x86_inductor_quantization_config(reduce_range=not vnni)
    observer = MinMaxObserver if spec.method == "minmax" else HistogramObserver
    act = dataclasses.replace(config.input_activation,
                              observer_or_fake_quant_ctr=observer.with_args(eps=2 ** -12))
    config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(config)
    count = len(next(iter(feeds.values())))
    try:
        with _quiet():
            prepared = prepare_pt2e(exported, quantizer)
            with torch.no_grad():
                for start in range(0, count, CALIBRATION_BATCH):
                    prepared(*tensors({n: a[start:start + CALIBRATION_BATCH] for n, a in feeds.items()}))
            converted = convert_pt2e(prepared)
    except Exception as exc:  # the quantizer's and observers' failures are about the graph
        return f"PT2E prepare/convert failed: {_first_line(exc)}", None
    int8, left = _count_graph(converted)
    ranges = {"minmax": "MinMaxObserver",
              "entropy": "HistogramObserver (torch has no entropy observer: it ran instead)",
              "percentile": "HistogramObserver (torch has no percentile observer: it ran instead)"}[spec.method]
    weights = ("per-channel weights" if spec.per_channel
               else "per-channel weights: per_channel = false is not honoured, inductor's x86 lowering packs "
                    "per-channel weights only")
    what = (f"pt2e x86-inductor static ({weights}, {spec.method} activation ranges by {ranges}, {count} calibration "
            f"samples{'' if vnni else ', reduce_range (no VNNI)'}; compiled with inductor freezing)")
    nothing = "nothing was quantized: no op the x86 quantizer annotates (conv, linear, ...); it runs as fp32"
    if not int8:
        what = f"{what}: {nothing}"
    return "", Quantized(converted, what, _describe("int8-static", spec.key(), int8, left, nothing), 0.0,
                         CompileWatch(freezing=True, int8_ops=int8))


def _count_graph(gm: torch.fx.GraphModule) -> tuple[int, int]:
    """(compute ops fed by a dequantized input or weight, compute ops left in float)."""
    int8 = left = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or getattr(node.target, "_opname", None) not in _COMPUTE:
            continue
        fed = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if any("dequantize" in str(a.target) for a in fed):
            int8 += 1
        else:
            left += 1
    return int8, left
