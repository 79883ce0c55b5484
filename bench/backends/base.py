"""The backend contract: what a runtime gives the harness, with every optional capability declared.

A backend loads a prepared model for a target, binds input arrays into the call the measured
loop makes, and returns host outputs for the agreement check. It never times itself and never
writes results: the scenario owns the clock (it times bind(), which is where compilation or graph
capture happen, and reports them as compile_s / capture_s by what `setup_cost()` says they are).

Required: load, bind, outputs. Every other method has a default here that is right for a CPU
runtime whose calls return when their work is done; a GPU backend overrides what applies. A
user backend named as `package.module:Class` gets the same contract: it may subclass Backend, or
define the three required methods only, and the missing capabilities take these defaults
(bench.backends.registry.backend_class).
"""
from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

import numpy as np

from bench.measure.timing import BoundCall, DeviceEvents

REQUIRED_METHODS = ("load", "bind", "outputs")
# What bind() spends once per input shape: "compile" (torch.compile) or "capture" (a CUDA graph).
SetupCost = Literal["compile", "capture"]
# Which prepared form of the model a backend loads (bench.models.loader.PreparedModel).
ModelForm = Literal["onnx", "onnx-fp16", "torch"]
DetailValue = str | int | float | bool | list | None


@dataclass(frozen=True)
class BackendInfo:
    """What actually ran, as the result file records it in `target`."""

    runtime: str | None = None  # e.g. "onnxruntime 1.22.0", "torch 2.13.0 (CUDA 12.8)"
    providers: tuple[str, ...] | None = None  # the execution providers that ran (onnxruntime)
    # Beyond the knobs: threads in effect, torch mode and how precision was applied, IOBinding,
    # providers fallen back from, the GPU's name (JSON scalars and lists only).
    details: dict[str, DetailValue] = field(default_factory=dict)


class Backend:
    """Base of every backend: subclass it and implement load, bind and outputs."""

    # The prepared form of the model a user backend loads; the registry's backends say it through
    # their options record, by precision (bench.backends.options).
    model_form: ModelForm = "onnx"

    def load(self, model: Any, target: Any) -> None:
        """Load `model` (bench.models.loader.PreparedModel) for `target` (bench.config.records.TargetSpec).
        Raise bench.errors.CellFailure when the target cannot run here (it names why)."""
        raise NotImplementedError

    def bind(self, feeds: dict[str, np.ndarray]) -> BoundCall | Callable[[], Any]:
        """One batch's call on these inputs: a BoundCall (fn, args), or a zero-argument callable.
        Any one-off work for this input shape (compiling, capturing a graph) happens here."""
        raise NotImplementedError

    def outputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Host float64 outputs on these inputs, flattened to a list, for the agreement check."""
        raise NotImplementedError

    # --- optional capabilities, with the defaults of a CPU runtime ----------------------------

    def context(self) -> AbstractContextManager:
        """Entered around warm-up and measurement on every thread that calls (e.g. torch.inference_mode)."""
        return contextlib.nullcontext()

    def info(self) -> BackendInfo:
        return BackendInfo(runtime=type(self).__name__)

    def setup_cost(self) -> SetupCost | None:
        """What the time bind() takes is, when it is more than binding: "compile" or "capture"."""
        return None

    def resident_on_device(self) -> bool:
        """Whether inputs and outputs stay on a device (no host copies in the call)."""
        return False

    def events(self) -> DeviceEvents | None:
        """Timing events on the device's stream, for the `device` boundary; None: host timing only."""
        return None

    def device_wait(self) -> Callable[[], None] | None:
        """How to wait for work this backend queued on a device; None when a call returns only
        after its work is done (a CPU runtime, or one that synchronizes itself)."""
        return None

    def gpu_memory(self) -> tuple[int, str] | None:
        """The framework allocator's peak device memory in bytes, and where the figure comes from."""
        return None

    def cuda_index(self) -> int | None:
        """The CUDA ordinal this backend runs on, for NVML telemetry; None off CUDA."""
        return None

    def requester(self) -> Requester | None:
        """A served target's asynchronous request path (bench.served.driver drives it from one
        asyncio loop, many requests in flight); None for an in-process runtime. A backend with a
        requester is measured by the driver in every scenario: its requests' latencies run from
        each one's scheduled send, and its failed requests are counted, never timed as successes."""
        return None

    def endpoint_options(self) -> Any:
        """A served target's endpoint knobs (bench.served.endpoint.EndpointOptions): what scrapes
        the server's metrics beside it reads (metrics_url, credentials, TLS); None in-process."""
        return None

    def streamer(self) -> Streamer | None:
        """A served generator's streaming path (the OpenAI-compatible /v1/completions and
        /v1/chat/completions with Server-Sent Events); None where the backend has none."""
        return None

    def generator(self, batch_size: int) -> Generator:
        """Greedy generation with the loaded decoder (bench.models.decoder) for `batch_size`
        sequences at once, with its own KV cache. Raise CellFailure when the backend or model cannot."""
        from bench.errors import CellFailure

        raise CellFailure(f"backend {type(self).__name__} cannot generate (it has no generator())", kind="unsupported")


class Generator(Protocol):
    """One stream of greedy generation: `batch` sequences decoded together over one KV cache.

    Each call returns the next token of every sequence on the host (the arg-max of its logits), so
    a host clock around it sees the token as a client would; the cache stays where the runtime
    keeps it between calls. Compiling or capturing happens on the first calls (the scenario's
    warm-up), never inside a measured one."""

    cache_source: str  # how cache_bytes is counted
    vocab: int  # the logits' width: prompt ids are drawn below it

    def prefill(self, input_ids: np.ndarray) -> np.ndarray:
        """[B, P] int64 prompt ids -> [B] int64 next tokens; the cache restarts from this prompt."""

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """[B] int64 tokens at the next position -> [B] int64 next tokens."""

    def last_logits(self) -> np.ndarray:
        """The first sequence's logits of the last call, on the host as float64 (the agreement check)."""

    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now."""


class Requester(Protocol):
    """One served target's request path, used from a single asyncio event loop (bench.served.driver).

    prepare() turns one batch's arrays into what goes on the wire (an encoded body, a gRPC
    request), once and outside any timing; send() puts it on the wire and returns when the whole
    response has arrived and been checked, or raises bench.errors.RequestFailed with its kind.
    Connections are opened in open() and reused by every send (a pool sized for the driver's
    concurrency); close() releases them."""

    async def open(self, concurrency: int) -> None: ...

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any: ...

    async def send(self, prepared: Any) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class StreamTrace:
    """What one streamed generation gave the client: when each event arrived and how many tokens
    it carried (servers may pack several into one event: the counts come from the server's usage
    or the tokenizer, never from counting events alone)."""

    sent_ns: int  # when the request left (perf_counter_ns)
    event_ns: tuple[int, ...]  # when each event carrying tokens arrived
    event_tokens: tuple[int, ...]  # tokens in each of those events
    output_tokens: int  # the whole answer's tokens (usage where the server reports it)
    prompt_tokens: int | None = None
    finish_reason: str | None = None


class Streamer(Protocol):
    """A served generator's streaming path, used from one asyncio event loop."""

    async def open(self, concurrency: int) -> None: ...

    async def stream(self, prompt: str, max_tokens: int) -> StreamTrace:
        """One request streamed to its end; raises bench.errors.RequestFailed (a stall past the
        timeout is a "timeout", a broken event stream "malformed")."""

    async def close(self) -> None: ...
