"""The result file: typed, frozen records and their versioned JSON form.

Format history (bump SCHEMA_VERSION, add `update_to_N` in migrations.py and a test loading a
committed file of the old version):
  1  (2026-11) first version: run, environment, cells with throughput, latency percentiles,
     memory, agreement, warm-up and stop reason. Intervals (ci_low/ci_high) and the histogram
     are present but may be null.
  2  (2026-11) intervals filled: `method` on each estimate and on throughput, `confidence` on
     throughput and latency; the histogram stores `first_bucket` and the counts from it;
     `throughput_series` per cell; `warmup.steady_state_cut`. A v1 file upgrades by its version
     alone (its histograms were always null; every new field has a default).
  3  (2026-11) the server and multi-stream scenarios: `server` per cell (target, offered and
     achieved rates, validity and its reasons, the generator's issue error, queue depth over
     time); `concurrency` and `clients` (per-client figures); `loadgen`, what MLPerf LoadGen measured. A v2 file upgrades by its version
     alone (no v2 cell is a server or multi-stream cell; concurrency defaults to 1).
  4  (2026-11) GPU targets: `gpu` per cell is a typed NVML telemetry record (was an untyped
     object, always null); `roofline` (FLOPs per sample, achieved FLOP/s, fraction of the device's
     measured peak); `compile_s` and `capture_s` apart from `load_s`; `memory.gpu_peak_source`;
     the timing boundary `device_resident`; `target.details` (what the backend ran with); GPU
     fingerprints add index, compute capability, clocks, MIG and ECC modes. A v3 file upgrades by its version alone (its `gpu` was always null).

The JSON Schema committed beside this file (run.schema.json) is generated from these records
by `json_schema()`; a test keeps the two equal.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 4

CellStatus = Literal["ok", "failed", "skipped"]
# How a cell that ran out of memory starts its reason ("out of memory at batch N: ..."): the
# runner writes it, the sweep planner and the reports read it.
OUT_OF_MEMORY = "out of memory at batch"
RunStatus = Literal["running", "complete", "interrupted"]
Verdict = Literal["pass", "fail", "reference", "unchecked"]
# end_to_end: host timer around the call, host inputs copied in and outputs copied out, the call
#   returning only after the GPU finished. device: CUDA events on the stream the work runs on,
#   inputs and outputs resident on the device. device_resident: inputs and outputs resident on the
#   device, host timer around a call that returns only after the GPU finished (ONNX Runtime's
#   synchronous run_with_iobinding: its stream is not ours to put events on).
TimingBoundary = Literal["end_to_end", "device", "device_resident"]


@dataclass(frozen=True)
class Estimate:
    """A figure with its confidence interval; the interval is null where not computed."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = ""  # how the interval was computed, or why there is none


@dataclass(frozen=True)
class Throughput:
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = "samples/s"
    method: str = ""
    confidence: float | None = None


@dataclass(frozen=True)
class Histogram:
    """Log-bucketed latency counts in ns (kernels/histogram.py); merge by adding counts of equal
    (base_ns, growth) after aligning first_bucket."""

    base_ns: float
    growth: float  # bucket i >= 1 spans [base * growth**(i-1), base * growth**i); 0 is below base
    relative_error: float
    counts: tuple[int, ...]  # buckets first_bucket, first_bucket + 1, ...
    first_bucket: int = 0


@dataclass(frozen=True)
class Series:
    """A figure over consecutive windows of measured time."""

    window_s: float
    values: tuple[float, ...]


@dataclass(frozen=True)
class Latency:
    """Per-request (per-batch) latency in milliseconds."""

    n: int
    mean: Estimate
    p50: Estimate
    p90: Estimate
    p95: Estimate
    p99: Estimate
    p999: Estimate
    min: Estimate
    max: Estimate
    histogram: Histogram | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class Metrics:
    throughput: Throughput
    latency_ms: Latency


@dataclass(frozen=True)
class Memory:
    peak_rss_bytes: int
    gpu_peak_bytes: int | None = None
    # torch.cuda.max_memory_allocated (the caching allocator's tensors), or NVML's per-process
    # used memory (ONNX Runtime's arena and the CUDA context included): which one, in words.
    gpu_peak_source: str = ""


@dataclass(frozen=True)
class GpuTelemetry:
    """NVML, sampled by a thread during the measured window (bench/measure/nvml.py).

    Figures are null where the device or driver does not report them. `energy_j` is the delta of
    NVML's total-energy counter over the window; the counter updates coarsely, so a window under
    ENERGY_MIN_WINDOW_S gives no energy figure, and `notes` says why.
    """

    device_index: int
    uuid: str
    samples: int
    interval_ms: float
    window_s: float
    utilization_mean_pct: float | None = None
    utilization_max_pct: float | None = None
    memory_used_max_bytes: int | None = None  # the whole device, every process
    process_memory_max_bytes: int | None = None  # this worker alone, as NVML accounts it
    sm_clock_mean_mhz: float | None = None
    sm_clock_min_mhz: float | None = None
    sm_clock_max_mhz: float | None = None
    power_mean_w: float | None = None
    power_max_w: float | None = None
    energy_j: float | None = None
    energy_per_sample_j: float | None = None
    temperature_max_c: float | None = None
    throttle_reasons: tuple[str, ...] = ()  # every clock-event reason seen, by NVML name
    throttled: bool = False  # a reason that lowers clocks (power cap, thermal, HW slowdown) was seen
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Roofline:
    """Where a cell sits against what its device can do."""

    flops_per_sample: float  # multiply-add = 2 FLOPs
    flops_source: str  # "torch FlopCounterMode" or "onnx graph (MatMul, Gemm, Conv, ...)"
    achieved_flops_per_s: float  # flops_per_sample * throughput
    peak_flops_per_s: float | None = None  # the probe's GEMM rate at the cell's precision
    fraction_of_peak: float | None = None
    peak_copy_bytes_per_s: float | None = None  # the probe's device-to-device copy rate
    peak_source: str = ""  # what probe, when, cached where; or why there is no peak


@dataclass(frozen=True)
class Agreement:
    """Outputs against the reference target's on the same inputs.

    metric: max |out - ref| / max |ref| over all outputs (rel), and max |out - ref| (abs).
    """

    verdict: Verdict
    reference: str
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    tolerance: float | None = None
    metric: str = "max|out-ref| / max|ref|"
    reason: str = ""


@dataclass(frozen=True)
class Warmup:
    iterations: int
    seconds: float
    rule: str
    steady_state_cut: int = 0  # measured calls dropped as warm-up by the steady-state rule


@dataclass(frozen=True)
class SloCheck:
    metric: str
    limit_ms: float
    value_ms: float
    passed: bool


@dataclass(frozen=True)
class Slo:
    passed: bool
    checks: tuple[SloCheck, ...]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    ref: str
    kind: str
    sha256: str


@dataclass(frozen=True)
class TargetInfo:
    name: str
    backend: str
    device: str
    precision: str
    knobs: dict[str, Any]
    providers: tuple[str, ...] | None = None  # what actually ran (onnxruntime)
    runtime: str | None = None
    # What the backend reports it ran with beyond the knobs: threads in effect, torch mode and how
    # precision was applied, IOBinding, the providers ORT fell back from, the GPU's name.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadPoint:
    """One offered rate of a peak search: the latency-against-load curve."""

    offered_qps: float
    achieved_qps: float
    p50_ms: float
    p99_ms: float
    requests: int
    good: bool  # kept up with the rate and met the SLO


@dataclass(frozen=True)
class ServerInfo:
    """What the server scenario offered, what the target achieved, and whether the run counts."""

    target_qps: float  # the nominal rate of the served schedule (a peak search: the peak found)
    offered_qps: float  # the Poisson schedule's own rate (n / last arrival): the target, give or take 1/sqrt(n)
    achieved_qps: float  # completions / (last completion)
    requests: int
    valid: bool
    validity: tuple[str, ...]  # why it is invalid; empty when valid
    issue_error_p99_us: float | None  # the generator's lateness on requests that found the server idle
    queue_depth: Series
    mean_batch: float = 1.0  # dynamic batching: requests per call on average
    max_qps: float | None = None  # peak search: the highest rate that met the SLO (None: none did)
    curve: tuple[LoadPoint, ...] = ()  # peak search: every rate tried, in order


@dataclass(frozen=True)
class ClientsInfo:
    """Multi-stream: per-client figures of N closed-loop clients."""

    concurrency: int
    throughput_per_client: tuple[float, ...]  # samples/s
    p99_ms_per_client: tuple[float, ...]


@dataclass(frozen=True)
class LoadGenInfo:
    """What MLPerf LoadGen itself measured and concluded (from its summary log)."""

    scenario: str
    valid: bool
    samples_per_s: float
    scheduled_per_s: float | None = None
    mean_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None


@dataclass(frozen=True)
class Cell:
    id: str
    benchmark: str
    model: ModelInfo
    target: TargetInfo
    batch_size: int
    scenario: str
    status: CellStatus
    reason: str = ""
    timing_boundary: TimingBoundary = "end_to_end"
    metrics: Metrics | None = None
    memory: Memory | None = None
    gpu: GpuTelemetry | None = None
    agreement: Agreement | None = None
    warmup: Warmup | None = None
    duration_s: float | None = None
    load_s: float | None = None
    compile_s: float | None = None  # torch.compile: the first calls, which compile
    capture_s: float | None = None  # cudagraph: side-stream warm-up and capture
    roofline: Roofline | None = None
    stop_reason: str | None = None
    inputs_sha256: str | None = None
    samples_file: str | None = None
    slo: Slo | None = None
    stderr_tail: str | None = None
    throughput_series: Series | None = None
    server: ServerInfo | None = None
    concurrency: int = 1
    clients: ClientsInfo | None = None
    loadgen: LoadGenInfo | None = None


@dataclass(frozen=True)
class SuiteInfo:
    name: str
    path: str
    sha256: str


@dataclass(frozen=True)
class GpuInfo:
    name: str
    uuid: str
    driver: str
    memory_total_bytes: int
    power_limit_w: float | None = None
    cuda: str | None = None  # the CUDA version the driver supports
    index: int | None = None  # NVML index (PCI bus order)
    compute_capability: str | None = None
    sm_clock_max_mhz: int | None = None
    memory_clock_max_mhz: int | None = None
    sm_clock_app_mhz: int | None = None  # application clock, when set
    mig_mode: str | None = None  # "enabled" | "disabled" | None where not supported
    ecc_mode: str | None = None
    persistence_mode: str | None = None


@dataclass(frozen=True)
class Environment:
    host: str
    os: str
    kernel: str
    machine: str
    cpu_model: str
    cpu_cores_physical: int | None
    cpu_cores_logical: int | None
    cpu_governor: str | None
    memory_total_bytes: int
    python: str
    packages: dict[str, str | None]
    gpus: tuple[GpuInfo, ...] = ()
    gpu_note: str = ""
    harness_commit: str | None = None
    harness_dirty: bool | None = None
    env_vars: dict[str, str] = field(default_factory=dict)  # allow-listed names only


@dataclass(frozen=True)
class Run:
    schema_version: int
    run_id: str
    created_at: str  # UTC ISO 8601
    status: RunStatus
    suite: SuiteInfo
    environment: Environment
    cells: tuple[Cell, ...]
    finished_at: str | None = None
    harness_version: str = ""
    argv: tuple[str, ...] = ()


# --- codec -----------------------------------------------------------------------------------


def to_json(obj: Any) -> Any:
    """Records -> JSON-ready dicts and lists (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


class DecodeError(ValueError):
    pass


def from_json(tp: Any, data: Any, path: str = "run") -> Any:
    """JSON -> records, checking types as it goes; errors name the key path."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_json(arg, data, path)
            except DecodeError as exc:
                errors.append(str(exc))
        raise DecodeError(errors[0] if errors else f"{path}: unexpected null")
    if origin is Literal:
        if data not in typing.get_args(tp):
            raise DecodeError(f"{path}: {data!r} is not one of {typing.get_args(tp)}")
        return data
    if origin is tuple:
        if not isinstance(data, list):
            raise DecodeError(f"{path}: expected a list")
        inner = typing.get_args(tp)[0]
        return tuple(from_json(inner, v, f"{path}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise DecodeError(f"{path}: expected an object")
        inner = typing.get_args(tp)[1]
        return {k: from_json(inner, v, f"{path}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise DecodeError(f"{path}: expected an object")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = set(data) - names
        if unknown:
            raise DecodeError(f"{path}: unknown keys {sorted(unknown)}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = from_json(hints[f.name], data[f.name], f"{path}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DecodeError(f"{path}: missing key {f.name!r}")
        return tp(**kwargs)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise DecodeError(f"{path}: expected a number, got {data!r}")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise DecodeError(f"{path}: expected {tp.__name__}, got {data!r}")
        return data
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of run.json, derived from the records above."""
    defs: dict[str, Any] = {}

    def of(tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        if tp is Any:
            return {}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [of(a) for a in typing.get_args(tp)]}
        if tp is type(None):
            return {"type": "null"}
        if origin is Literal:
            return {"enum": list(typing.get_args(tp))}
        if origin is tuple:
            return {"type": "array", "items": of(typing.get_args(tp)[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": of(typing.get_args(tp)[1])}
        if dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in defs:
                defs[name] = {}  # placeholder against recursion
                hints = typing.get_type_hints(tp)
                fields = dataclasses.fields(tp)
                defs[name] = {
                    "type": "object",
                    "properties": {f.name: of(hints[f.name]) for f in fields},
                    "required": [
                        f.name for f in fields
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                    ],
                    "additionalProperties": False,
                }
            return {"$ref": f"#/$defs/{name}"}
        return {float: {"type": "number"}, int: {"type": "integer"}, str: {"type": "string"},
                bool: {"type": "boolean"}}[tp]

    root = of(Run)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"bench-run-v{SCHEMA_VERSION}",
        "title": "bench run.json",
        **root,
        "$defs": defs,
    }
    defs["Run"]["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return schema
