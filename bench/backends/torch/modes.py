"""How a torch target executes: eager, torch.compile, or CUDA-graph replay.

Each runner turns device tensors into the call the measured loop makes, and gives outputs for the
agreement check. The one-off work per input shape (the first calls of a compiled module, which
compile; a CUDA graph's warm-up and capture) happens when the call is made, and ends with a device
synchronize, so the scenario that times bind() (bench.scenarios.base) sees the GPU's work in it.

CUDA graphs follow the recipe in torch's documentation ("CUDA Graphs", whole-network capture):
static input buffers, a few warm-up iterations on a side stream (so lazy initialisation and
cuBLAS workspace allocation stay out of the graph), capture once per input shape, replay. The
replay reads the static inputs and writes the static outputs in place.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from bench.measure.timing import BoundCall

GRAPH_WARMUP_ITERATIONS = 3  # side-stream iterations before capture, as torch's docs do


def flatten(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in flatten(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten(o)]
    return []


def _shape_key(inputs: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.stride()) for t in inputs)


class Runner:
    """Eager: the module itself is the call."""

    mode = "eager"

    def __init__(self, module: torch.nn.Module, device: torch.device, context: Callable[[], Any]):
        self.module = module
        self.device = device
        self.context = context

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def call(self, inputs: tuple[torch.Tensor, ...]) -> BoundCall:
        return BoundCall(self.module, inputs)

    def run(self, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """Outputs on these inputs, copied out of any buffer a later call would overwrite."""
        fn, args = self.call(inputs)
        with self.context():
            out = fn(*args)
        return [t.detach().clone() for t in flatten(out)]


class CompileRunner(Runner):
    """torch.compile(mode=...), compiled per input shape on first use (the scenario's compile_s)."""

    mode = "compile"

    def __init__(self, module, device, context, compile_mode: str,
                 compile_context: Callable[[], Any] | None = None):
        super().__init__(module, device, context)
        # Entered around the compiling calls only (an int8 target's inductor settings and what
        # the compile did: bench.backends.torch.quantize.CompileWatch).
        self.compile_context = compile_context
        # One graph per batch size: dynamo's default limit (8) would silently run the ninth
        # shape eagerly (the server's dynamic batching binds up to max_batch shapes).
        import torch._dynamo

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.compiled = torch.compile(module, mode=compile_mode, dynamic=False)
        self.compile_mode = compile_mode
        self._seen: set[tuple] = set()

    def call(self, inputs):
        key = _shape_key(inputs)
        if key not in self._seen:
            # The first call compiles; reduce-overhead also records its CUDA graphs on the next
            # ones, so run two more before calling this shape compiled.
            with self.context(), (self.compile_context or contextlib.nullcontext)():
                for _ in range(3):
                    self.compiled(*inputs)
            self.synchronize()
            self._seen.add(key)
        return BoundCall(self.compiled, inputs)


class GraphRunner(Runner):
    """One CUDA graph per input shape, captured after side-stream warm-up; the call is replay()."""

    mode = "cudagraph"

    def __init__(self, module, device, context):
        super().__init__(module, device, context)
        self._graphs: dict[tuple, tuple[Any, tuple[torch.Tensor, ...], list[torch.Tensor]]] = {}

    def _capture(self, inputs: tuple[torch.Tensor, ...]):
        # no_grad, not inference_mode: tensors made under inference_mode (the static outputs,
        # the graph's RNG state) cannot be updated in place outside it later (pytorch#166792);
        # replay itself runs no autograd, so the measured call is the same either way. (Capture
        # may be asked for inside the target's inference_mode context: leave it explicitly.)
        with torch.inference_mode(False), torch.no_grad():
            static_in = tuple(t.clone() for t in inputs)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP_ITERATIONS):
                    self.module(*static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = flatten(self.module(*static_in))
        self.synchronize()
        return graph, static_in, static_out

    def graph_for(self, inputs: tuple[torch.Tensor, ...]):
        key = _shape_key(inputs)
        if key not in self._graphs:
            self._graphs[key] = self._capture(inputs)
        graph, static_in, static_out = self._graphs[key]
        for buf, t in zip(static_in, inputs):
            if buf.data_ptr() != t.data_ptr():
                buf.copy_(t)
        return graph, static_in, static_out

    def call(self, inputs):
        graph, _, _ = self.graph_for(inputs)
        return BoundCall(graph.replay, ())

    def run(self, inputs):
        graph, _, static_out = self.graph_for(inputs)
        graph.replay()
        self.synchronize()
        return [t.detach().clone() for t in static_out]


def make_runner(mode: str, module, device: torch.device, context, compile_mode: str = "default",
                compile_context: Callable[[], Any] | None = None) -> Runner:
    if mode == "compile":
        return CompileRunner(module, device, context, compile_mode, compile_context)
    if mode == "cudagraph":
        return GraphRunner(module, device, context)
    return Runner(module, device, context)


def host_round_trip(runner: Runner, host_inputs: tuple[torch.Tensor, ...]) -> BoundCall:
    """The end-to-end call: copy host inputs to the device, run, copy every output back.

    Host tensors are pageable (not pinned), as a client's arrays usually are, and already in the
    target's precision. The copies back (.cpu()) wait for the GPU, so a host timer around this
    call leaves out no unfinished work.
    """
    device = runner.device
    if isinstance(runner, GraphRunner):
        dev_inputs = tuple(t.to(device) for t in host_inputs)
        graph, static_in, static_out = runner.graph_for(dev_inputs)

        def graph_round_trip() -> list[torch.Tensor]:
            for buf, h in zip(static_in, host_inputs):
                buf.copy_(h)
            graph.replay()
            return [t.cpu() for t in static_out]

        return BoundCall(graph_round_trip, ())
    dev_inputs = tuple(t.to(device) for t in host_inputs)
    fn, _ = runner.call(dev_inputs)  # compiles this shape now, outside the measured loop

    def round_trip() -> list[torch.Tensor]:
        return [t.cpu() for t in flatten(fn(*(h.to(device) for h in host_inputs)))]

    return BoundCall(round_trip, ())
