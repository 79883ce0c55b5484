"""The result file's records: typed, frozen, versioned (their JSON form comes from bench.codec).

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
     time); `concurrency` and `clients` (per-client figures); `loadgen`, what MLPerf LoadGen
     measured. A v2 file upgrades by its version alone (no v2 cell is a server or multi-stream
     cell; concurrency defaults to 1).
  4  (2026-11) GPU targets: `gpu` per cell is a typed NVML telemetry record (was an untyped
     object, always null); `roofline` (FLOPs per sample, achieved FLOP/s, fraction of the device's
     measured peak); `compile_s` and `capture_s` apart from `load_s`; `memory.gpu_peak_source`;
     the timing boundary `device_resident`; `target.details` (what the backend ran with); GPU
     fingerprints add index, compute capability, clocks, MIG and ECC modes. A v3 file upgrades by
     its version alone (its `gpu` was always null).
  5  (2026-11) one cell identity and typed failures: `failure_kind` on failed cells
     (out_of_memory, timeout, crash, unsupported, error) in place of reading a reason's prefix;
     `concurrency` is null where the scenario has no concurrency axis (it was 1 everywhere but
     multi-stream). update_to_5 derives both from a v4 file (see migrations.py).
  6  (2026-11) repetitions: a cell is measured in several worker processes, interleaved with the
     other cells' in rounds. `repetitions` per cell (each process's figures, warm-up cut, stop
     reason, the CPU share other processes took, whether it was interfered and used); each
     figure is the mean over the used repetitions, its interval Student's t over them (`method`
     says so); `variance` (between- and within-process CV per figure); `unstable` (the reason,
     when the between-process spread is large); the samples file holds the used repetitions'
     samples one after another (`n` each). A v5 file upgrades by its version alone: one process
     per cell, `repetitions` empty, which compare reads as "within-process figures only".

  7-9 (2026-11) `unstable` reasons, GPU telemetry series, `monitor` (see migrations.py).
  10 (2026-11) the generate scenario: `generate` per cell (time to first token, time per output
     token, inter-token latency, tokens/s, the decode step against KV length, KV-cache bytes,
     goodput under an SLO, each process's figures) and `agreement.first_divergence`. A v9 file
     upgrades by its version alone (no v9 cell generated).
  11 (2026-11) fleet runs: `executor` ("local" or "ray"); `nodes`, one environment per machine
     that measured cells, each with its machine kind; `node` on each cell and repetition (which
     node measured it; null: the run's own `environment`). A v10 file upgrades by its version
     alone (every cell was measured where the run ran).
  12 (2026-12) inputs as the user means them: `dims` per cell (the named dynamic dimensions it
     ran at, e.g. {"seq": 128}; a sweep axis, in the cell id as /seq=128 after the batch);
     `inputs` per cell (where its input tensors came from, each tensor's shape with the batch,
     dtype and values); `model.prepare_s` and `model.export_s` (the one-off cost of building
     and exporting the model in this run). A v11 file upgrades by its version alone (no dims,
     inputs unrecorded). Later in 2026-12, with the version kept: each figure's domain is
     declared (a count >= 0, a batch size >= 1, a measured latency > 0), checked on reading and
     stated as minimums in the JSON Schema; no file the harness wrote lies outside them, and one
     that does (a hand edit) is refused with one line naming the field.
  13 (2026-12) served targets: `requests` per cell (what a served target's requests did in the
     measured window: sent, ok, failed, the error rate and counts by kind with an example reason
     each, the driver's lag and whether the driver limited the load). A v12 file upgrades by its
     version alone (no v12 cell was served: requests null). Still 13, before release: `server_metrics` per cell (the
     server's Prometheus figures around the window and our latency split against them; null
     without a metrics_url).

The JSON Schema committed beside this file (run.schema.json) is generated from these records
(bench.results.schema.run_schema); a test keeps the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 14

# The domain of a figure is declared on its field, in JSON Schema's words ({"minimum": 0}: a count,
# a size, a duration; {"exclusiveMinimum": 0}: a rate or a latency a cell measured). A result file
# may come from anywhere (a hand edit, another tool, a bug), and a negative count or a zero p50
# makes compare divide by nothing or test nonsense: the codec runs each record's validate(), which
# checks these (one line naming the field), and bench.results.schema states them as minimums in
# run.schema.json, from this one declaration. Intervals, changes and slopes may be negative and
# carry none. Adding one is no format change: a file outside a domain was never a valid result.
_COUNT = {"minimum": 0}  # also sizes, durations, shares, indices
_ONE_UP = {"minimum": 1}  # a batch size, a concurrency, a dimension's size
_POSITIVE = {"exclusiveMinimum": 0}

CellStatus = Literal["ok", "failed", "skipped"]
# "failed": the run could not go on (its results could not be written: a full disk); its
# `end_reason` says why, and the cells completed before are kept.
RunStatus = Literal["running", "complete", "interrupted", "failed"]
Verdict = Literal["pass", "fail", "reference", "unchecked"]
# Why a failed cell failed, as readers act on it (a batch sweep stops after out_of_memory):
#   out_of_memory  the device or host ran out of memory (torch, ONNX Runtime, MemoryError);
#   timeout        the worker gave no answer within the cell's time limit and was killed;
#   crash          the worker died without an answer (a signal, an exit): its stderr tail is kept;
#   unsupported    the target cannot run here as configured (a provider, device index, precision
#                  or library this machine lacks): fix the target or the machine;
#   error          any other exception in the model or runtime: its traceback is kept.
FailureKind = Literal["out_of_memory", "timeout", "crash", "unsupported", "error"]
# end_to_end: host timer around the call, host inputs copied in and outputs copied out, the call
#   returning only after the GPU finished. device: CUDA events on the stream the work runs on,
#   inputs and outputs resident on the device. device_resident: inputs and outputs resident on the
#   device, host timer around a call that returns only after the GPU finished (ONNX Runtime's
#   synchronous run_with_iobinding: its stream is not ours to put events on).
TimingBoundary = Literal["end_to_end", "device", "device_resident"]


def out_of_domain(record: Any) -> tuple[str, str] | None:
    """(field, what is wrong) for the first value outside its field's declared domain (each item
    of a list or table field); None when every one is inside."""
    for f in fields(record):
        low = f.metadata.get("minimum", f.metadata.get("exclusiveMinimum"))
        if low is None:
            continue
        strict = "exclusiveMinimum" in f.metadata
        value = getattr(record, f.name)
        items = (value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, tuple)
                 else [(None, value)])
        for key, v in items:
            if v is None or (v > low if strict else v >= low):
                continue
            where = f.name if key is None else f"{f.name}.{key}" if isinstance(value, dict) else f"{f.name}[{key}]"
            kind = "an integer" if isinstance(v, int) else "a number"
            return where, f"{v!r} is not allowed; expected {kind} {'>' if strict else '>='} {low}"
    return None


class _Checked:
    """A record whose figures the codec checks against their declared domains when it decodes one."""

    def validate(self) -> tuple[str, str] | None:
        return out_of_domain(self)


@dataclass(frozen=True)
class CellKey:
    """What a cell measured: the one identity that cell ids, compare, history and the stores use.

    `concurrency` is the client count of a scenario with a concurrency axis (multi-stream), and
    None for one without. Two forms: `id` names a cell within a run (BENCH/TARGET/bN/SCENARIO,
    /cN appended on a concurrency axis; what --only matches), and `stable_id` names it across
    runs (the model's hash included, so a changed model is a different series).
    """

    benchmark: str
    model_sha256: str
    target: str
    batch_size: int
    scenario: str
    concurrency: int | None = None
    # The benchmark's named dynamic dimensions at this cell (sorted (name, size) pairs, e.g.
    # (("seq", 128),)): a sweep axis like the batch size; () where the benchmark names none.
    dims: tuple[tuple[str, int], ...] = ()

    @property
    def dims_label(self) -> str:
        """"seq=128,image=224" (empty without dims)."""
        return ",".join(f"{name}={size}" for name, size in self.dims)

    @property
    def id(self) -> str:
        tail = "" if self.concurrency is None else f"/c{self.concurrency}"
        shape = f"/{self.dims_label}" if self.dims else ""
        return f"{self.benchmark}/{self.target}/b{self.batch_size}{shape}/{self.scenario}{tail}"

    @property
    def stable_id(self) -> str:
        tail = "" if self.concurrency is None else f"|c{self.concurrency}"
        shape = f"|{self.dims_label}" if self.dims else ""
        return (f"{self.benchmark}|{self.model_sha256[:12]}|{self.target}|b{self.batch_size}{shape}|"
                f"{self.scenario}{tail}")


@dataclass(frozen=True)
class Estimate:
    """A figure with its confidence interval; the interval is null where not computed."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = ""  # how the interval was computed, or why there is none


@dataclass(frozen=True)
class Throughput:
    value: float  # > 0: bench.results.safe_read.check_domain says so, for files and for the stores alike
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = "samples/s"
    method: str = ""
    confidence: float | None = None


@dataclass(frozen=True)
class Histogram(_Checked):
    """Log-bucketed latency counts in ns (kernels/histogram.py); merge by adding counts of equal
    (base_ns, growth) after aligning first_bucket."""

    base_ns: float = field(metadata=_POSITIVE)
    growth: float  # bucket i >= 1 spans [base * growth**(i-1), base * growth**i); 0 is below base
    relative_error: float = field(metadata=_COUNT)
    counts: tuple[int, ...] = field(metadata=_COUNT)  # buckets first_bucket, first_bucket + 1, ...
    first_bucket: int = field(default=0, metadata=_COUNT)


@dataclass(frozen=True)
class Series(_Checked):
    """A figure over consecutive windows of measured time."""

    window_s: float = field(metadata=_COUNT)
    values: tuple[float, ...]


@dataclass(frozen=True)
class Latency(_Checked):
    """Per-request (per-batch) latency in milliseconds."""

    n: int = field(metadata=_COUNT)
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

    FIGURES = ("mean", "p50", "p90", "p95", "p99", "p999", "min", "max")

    def validate(self) -> tuple[str, str] | None:
        # No latency is negative; a zero one is possible here (two tokens that arrived in one
        # event have no gap between them), and Metrics refuses it where a cell measured it.
        for name in self.FIGURES:
            value = getattr(self, name).value
            if value < 0:
                return f"{name}.value", f"{value!r} is not allowed; expected a number >= 0 (a latency in ms)"
        return out_of_domain(self)


@dataclass(frozen=True)
class Metrics:
    throughput: Throughput
    latency_ms: Latency

    def validate(self) -> tuple[str, str] | None:
        # A cell's request latencies: a call takes time, and compare divides by these figures.
        for name in Latency.FIGURES:
            value = getattr(self.latency_ms, name).value
            if name != "min" and not value > 0:
                return f"latency_ms.{name}.value", f"{value!r} is not allowed; expected a number > 0 (a latency in ms)"
        return None


@dataclass(frozen=True)
class Memory(_Checked):
    peak_rss_bytes: int = field(metadata=_COUNT)
    gpu_peak_bytes: int | None = field(default=None, metadata=_COUNT)
    # torch.cuda.max_memory_allocated (the caching allocator's tensors), or NVML's per-process
    # used memory (ONNX Runtime's arena and the CUDA context included): which one, in words.
    gpu_peak_source: str = ""


@dataclass(frozen=True)
class GpuSeries(_Checked):
    """Telemetry over the measured window, in consecutive windows of `window_s` seconds from its
    start: each value the mean of the samples taken in that window; null where a window holds no
    sample or the device does not report the figure."""

    window_s: float = field(metadata=_COUNT)
    utilization_pct: tuple[float | None, ...]
    sm_clock_mhz: tuple[float | None, ...]
    power_w: tuple[float | None, ...]
    temperature_c: tuple[float | None, ...]


@dataclass(frozen=True)
class GpuTelemetry(_Checked):
    """NVML, sampled by a thread during the measured window (bench/measure/nvml_sampler.py).

    Figures are null where the device or driver does not report them. `energy_j` is the delta of
    NVML's total-energy counter over the window; the counter updates coarsely, so a window under
    ENERGY_MIN_WINDOW_S gives no energy figure, and `notes` says why.
    """

    device_index: int = field(metadata=_COUNT)
    uuid: str
    samples: int = field(metadata=_COUNT)
    interval_ms: float = field(metadata=_COUNT)
    window_s: float = field(metadata=_COUNT)
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
    # other processes NVML listed computing on the device during the window (interference)
    other_processes: int = field(default=0, metadata=_COUNT)
    series: GpuSeries | None = None  # the window's course (schema 8); the figures above are over all of it


@dataclass(frozen=True)
class Roofline(_Checked):
    """Where a cell sits against what its device can do."""

    flops_per_sample: float = field(metadata=_COUNT)  # multiply-add = 2 FLOPs
    flops_source: str  # "torch FlopCounterMode" or "onnx graph (MatMul, Gemm, Conv, ...)"
    achieved_flops_per_s: float = field(metadata=_COUNT)  # flops_per_sample * throughput
    peak_flops_per_s: float | None = None  # the probe's GEMM rate at the cell's precision
    fraction_of_peak: float | None = None
    peak_copy_bytes_per_s: float | None = None  # the probe's device-to-device copy rate
    peak_source: str = ""  # what probe, when, cached where; or why there is no peak


@dataclass(frozen=True)
class AccuracyFigure(_Checked):
    """One accuracy figure over the samples, with its interval (None where it has none: a max)."""

    name: str  # top1_agreement, max_prob_diff, cosine, mean_rel_error, max_rel_error, token_agreement
    value: float = field(metadata=_COUNT)
    ci_low: float | None = field(default=None, metadata=_COUNT)
    ci_high: float | None = field(default=None, metadata=_COUNT)


@dataclass(frozen=True)
class Accuracy(_Checked):
    """A target's outputs against the reference's on the accuracy samples, as the metric that fits
    the output (schema 14; bench.analysis.accuracy). `loss` is 0 where every answer is the
    reference's: 1 - top-1 agreement, 1 - mean cosine similarity, the mean relative error, or
    1 - token agreement; an int8 target passes when it is within its tolerance."""

    metric: str  # top1 | cosine | abs-error | token
    samples: int = field(metadata=_COUNT)
    loss: float = field(metadata=_COUNT)
    loss_ci_low: float | None = field(default=None, metadata=_COUNT)
    loss_ci_high: float | None = field(default=None, metadata=_COUNT)
    confidence: float = field(default=0.95, metadata=_COUNT)
    output: int = field(default=0, metadata=_COUNT)  # the output it was computed on
    figures: tuple[AccuracyFigure, ...] = ()


@dataclass(frozen=True)
class Agreement(_Checked):
    """Outputs against the reference target's on the same inputs.

    metric: max |out - ref| / max |ref| over all outputs (rel), and max |out - ref| (abs).
    """

    verdict: Verdict
    reference: str
    max_abs_error: float | None = field(default=None, metadata=_COUNT)
    max_rel_error: float | None = field(default=None, metadata=_COUNT)
    tolerance: float | None = field(default=None, metadata=_COUNT)
    metric: str = "max|out-ref| / max|ref|"
    reason: str = ""
    # generate: the first output position (0-based) whose token differs from the reference's;
    # None where every token is equal (schema 10)
    first_divergence: int | None = field(default=None, metadata=_COUNT)
    accuracy: Accuracy | None = None  # schema 14; None where no accuracy samples were run


@dataclass(frozen=True)
class Warmup(_Checked):
    iterations: int = field(metadata=_COUNT)
    seconds: float = field(metadata=_COUNT)
    rule: str
    # measured calls dropped as warm-up by the steady-state rule
    steady_state_cut: int = field(default=0, metadata=_COUNT)


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
class ModelInfo(_Checked):
    name: str
    ref: str
    kind: str
    sha256: str
    # One-off costs of this run, paid once per model whatever the cell count (schema 12; null in
    # older files): building, hashing and exporting it in the parent, and the export or precision
    # conversion part of that (0 when a cached export was reused; null when none was needed).
    prepare_s: float | None = field(default=None, metadata=_COUNT)
    export_s: float | None = field(default=None, metadata=_COUNT)
    # An int8 target's quantization (and calibration) of the ONNX model in the parent (schema 14;
    # 0 when a cached one was reused); a torch int8 target's, in its worker, is in target.details.
    quantize_s: float | None = field(default=None, metadata=_COUNT)


@dataclass(frozen=True)
class InputTensor(_Checked):
    """One input as a cell fed it: the batch axis included."""

    name: str
    shape: tuple[int, ...] = field(metadata=_COUNT)
    dtype: str
    values: str  # how its values were made: "normal(0, 1)", "integers in [0, 30522)", "fixed 1", "file"


@dataclass(frozen=True)
class InputsInfo(_Checked):
    """Where a cell's input tensors came from (schema 12)."""

    source: Literal["generated", "file"]
    tensors: tuple[InputTensor, ...]
    file: str | None = None  # the user's .npz or directory of .npy files, as resolved
    # samples the file holds; a batch takes the first batch_size, cycling
    samples: int | None = field(default=None, metadata=_COUNT)
    # generated inputs: the benchmark's seed (the same arrays in every process)
    seed: int | None = field(default=None, metadata=_COUNT)


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
class LoadPoint(_Checked):
    """One offered rate of a peak search: the latency-against-load curve."""

    offered_qps: float = field(metadata=_COUNT)
    achieved_qps: float = field(metadata=_COUNT)
    p50_ms: float = field(metadata=_COUNT)
    p99_ms: float = field(metadata=_COUNT)
    requests: int = field(metadata=_COUNT)
    good: bool  # kept up with the rate and met the SLO


@dataclass(frozen=True)
class ServerInfo(_Checked):
    """What the server scenario offered, what the target achieved, and whether the run counts."""

    # the nominal rate of the served schedule (a peak search: the peak found)
    target_qps: float = field(metadata=_COUNT)
    # the Poisson schedule's own rate (n / last arrival): the target, give or take 1/sqrt(n)
    offered_qps: float = field(metadata=_COUNT)
    achieved_qps: float = field(metadata=_COUNT)  # completions / (last completion)
    requests: int = field(metadata=_COUNT)
    valid: bool
    validity: tuple[str, ...]  # why it is invalid; empty when valid
    issue_error_p99_us: float | None  # the generator's lateness on requests that found the server idle
    queue_depth: Series
    mean_batch: float = field(default=1.0, metadata=_COUNT)  # dynamic batching: requests per call on average
    # peak search: the highest rate that met the SLO (None: none did)
    max_qps: float | None = field(default=None, metadata=_COUNT)
    curve: tuple[LoadPoint, ...] = ()  # peak search: every rate tried, in order


@dataclass(frozen=True)
class RequestStats(_Checked):
    """What a served target's requests did in a cell's measured window (bench.served.driver), summed
    over the processes in the figures. The cell's figures come from the ok requests alone: a failed
    one is counted here by its kind (bench.errors.REQUEST_ERROR_KINDS), never timed as a success."""

    load: str  # "open loop, Poisson at 200/s" or "closed loop, 4 in flight"
    sent: int = field(metadata=_COUNT)
    ok: int = field(metadata=_COUNT)
    failed: int = field(metadata=_COUNT)
    error_rate: float = field(metadata=_COUNT)  # failed / sent
    errors: dict[str, int] = field(default_factory=dict, metadata=_COUNT)  # by kind, the kinds seen
    error_examples: dict[str, str] = field(default_factory=dict)  # one reason per kind, free of secrets
    # The driver's lag: open loop, each send's actual - scheduled time; closed loop, the event
    # loop's lag (how long a ready callback waited), sampled. Over processes: the median one's p50
    # and the worst one's p99 (lag_measure says which).
    send_lag_p50_us: float | None = field(default=None, metadata=_COUNT)
    send_lag_p99_us: float | None = field(default=None, metadata=_COUNT)
    lag_measure: str = ""
    # the driver, not the server, limited the load: its lag p99 over 1 ms
    # (bench.served.driver.DRIVER_LAG_LIMIT_NS); why, in words
    driver_limited: bool = False
    driver_limited_why: str = ""
    cut_at_end: int = field(default=0, metadata=_COUNT)  # closed loop: in flight when the window ended, not counted


@dataclass(frozen=True)
class ServerMetrics(_Checked):
    """A served target's own figures over a measured window: its Prometheus metrics (the target's
    metrics_url) scraped just before and just after the window, the deltas of what is recognised
    (bench.served.server_metrics lists what each server exposes) filtered to the target's model,
    and our mean latency split against them. None: the server does not expose it (not_exposed
    names those); a scrape that failed leaves `server` empty and says why in `note`."""

    metrics_url: str  # shown without credentials
    server: str  # "Triton", "MLServer", "KServe"; "" when nothing was recognised or the scrape failed
    model: str = ""  # the model label filtered on ("" : every model)
    window_s: float = field(default=0.0, metadata=_COUNT)  # between the two scrapes
    requests: int | None = field(default=None, metadata=_COUNT)  # the server's count in the window
    succeeded: int | None = field(default=None, metadata=_COUNT)
    failed: int | None = field(default=None, metadata=_COUNT)
    request_mean_ms: float | None = field(default=None, metadata=_COUNT)  # the server's request duration
    queue_mean_ms: float | None = field(default=None, metadata=_COUNT)
    compute_mean_ms: float | None = field(default=None, metadata=_COUNT)
    client_mean_ms: float | None = field(default=None, metadata=_COUNT)  # ours: the ok requests' mean latency
    client_sent: int | None = field(default=None, metadata=_COUNT)  # ours: requests sent in the window
    network_client_mean_ms: float | None = None  # ours - the server's request duration (may be < 0 by noise)
    outside_compute_mean_ms: float | None = None  # ours - the server's compute
    sources: tuple[str, ...] = ()  # which metric gave which figure
    not_exposed: tuple[str, ...] = ()  # "queue", "request duration", ...
    note: str = ""  # one line: a failed scrape, counters that went back


@dataclass(frozen=True)
class ClientsInfo(_Checked):
    """Multi-stream: per-client figures of N closed-loop clients."""

    concurrency: int = field(metadata=_ONE_UP)
    throughput_per_client: tuple[float, ...] = field(metadata=_COUNT)  # samples/s
    p99_ms_per_client: tuple[float, ...] = field(metadata=_COUNT)


@dataclass(frozen=True)
class LoadGenInfo(_Checked):
    """What MLPerf LoadGen itself measured and concluded (from its summary log)."""

    scenario: str
    valid: bool
    samples_per_s: float = field(metadata=_COUNT)
    scheduled_per_s: float | None = field(default=None, metadata=_COUNT)
    mean_ms: float | None = field(default=None, metadata=_COUNT)
    p50_ms: float | None = field(default=None, metadata=_COUNT)
    p99_ms: float | None = field(default=None, metadata=_COUNT)


@dataclass(frozen=True)
class Alarm(_Checked):
    """What a monitor's detector raised: which figure moved, from which window, by how much."""

    kind: Literal["drift", "leak", "error_rate"]
    figure: str  # "p99", "throughput", "rss", "gpu_memory", "errors"
    window: int = field(metadata=_COUNT)  # 0-based index of the window that raised it
    at_s: float = field(metadata=_COUNT)  # seconds into the monitor's measured time
    change: float  # drift: relative change against the baseline; leak: slope in MiB per hour; error_rate: the share
    message: str


@dataclass(frozen=True)
class MonitorInfo(_Checked):
    """A monitor's course: one value per window of `window_s` seconds, never the raw latencies,
    and the alarms its detectors raised (bench.analysis.drift, bench.analysis.leak)."""

    load: str  # "open loop, Poisson at 200 requests/s" or "4 closed-loop clients"
    qps: float | None = field(metadata=_COUNT)
    concurrency: int | None = field(metadata=_ONE_UP)
    window_s: float = field(metadata=_COUNT)
    windows: int = field(metadata=_COUNT)
    requests: int = field(metadata=_COUNT)
    errors: int = field(metadata=_COUNT)
    throughput: Series  # samples/s per window
    p50_ms: Series
    p99_ms: Series
    rss_bytes: Series
    errors_per_window: tuple[int, ...] = field(metadata=_COUNT)
    baseline: str  # what the drift detector compared with
    detector: str  # the drift detector and its settings
    alarms: tuple[Alarm, ...] = ()
    leak_slope_mib_per_h: float | None = None  # RSS slope after warm-up (Theil-Sen)
    leak_slope_low: float | None = None
    leak_slope_high: float | None = None
    gpu_memory_bytes: Series | None = None
    end_reason: str = ""  # the duration ended, a signal, an alarm with --fail-on-alarm
    # A served target's monitor (schema 13): the error-rate alarm's limit (a window whose failed share
    # of requests is over it alarms), each window's errors by kind, and the server's figures per
    # window where metrics_url is set (the cell's server_metrics holds them over all windows).
    error_rate_limit: float | None = field(default=None, metadata=_COUNT)
    errors_by_kind: tuple[dict[str, int], ...] = ()  # counts by kind (bench.errors.REQUEST_ERROR_KINDS)
    server_per_window: tuple[ServerMetrics, ...] = ()


@dataclass(frozen=True)
class DecodePoint(_Checked):
    """Decode steps whose KV length fell in one bin: their median latency."""

    kv_len: int = field(metadata=_COUNT)  # the bin's upper edge (tokens in the cache, the step's own included)
    p50_ms: float = field(metadata=_COUNT)
    steps: int = field(metadata=_COUNT)


@dataclass(frozen=True)
class GenerateProcess(_Checked):
    """One worker process's headline figures of a generate cell (what compare tests over processes)."""

    tokens_per_s: float = field(metadata=_COUNT)
    ttft_p50_ms: float = field(metadata=_COUNT)
    ttft_p99_ms: float = field(metadata=_COUNT)
    tpot_p50_ms: float | None = field(metadata=_COUNT)  # None where no request made more than one token
    tpot_p99_ms: float | None = field(metadata=_COUNT)
    requests: int = field(metadata=_COUNT)


@dataclass(frozen=True)
class GenerateLoadPoint(_Checked):
    """One offered rate of a generate rate search."""

    offered_qps: float = field(metadata=_COUNT)
    achieved_qps: float = field(metadata=_COUNT)
    goodput_qps: float = field(metadata=_COUNT)
    attainment: float = field(metadata=_COUNT)  # share of requests that met every limit
    ttft_p99_ms: float = field(metadata=_COUNT)
    tpot_p99_ms: float | None = field(metadata=_COUNT)
    requests: int = field(metadata=_COUNT)
    good: bool  # attainment at least the target


@dataclass(frozen=True)
class GenerateInfo(_Checked):
    """What a generate cell measured (bench.scenarios.generate): per request, time to first token
    (prefill, from the request's scheduled start), time per output token after the first, the gaps
    between tokens, and the tokens made; the cell's metrics hold the end-to-end request latency and
    the output tokens/s in aggregate. Each figure is the mean over processes with its interval."""

    load: str  # "static batch, closed loop", "2 streams", "Poisson 4 requests/s", "trace replay"
    streams: int = field(metadata=_COUNT)
    requests: int = field(metadata=_COUNT)  # per process, in the median process
    prompt_len: str  # the distribution, in words
    output_len: str
    prompt_tokens: int = field(metadata=_COUNT)  # per process (padding excluded)
    output_tokens: int = field(metadata=_COUNT)
    ttft_ms: Latency
    tpot_ms: Latency | None  # None where no request made more than one token
    itl_ms: Latency | None
    tokens_per_s_per_stream: Estimate  # a request's output tokens over its end-to-end time, mean over requests
    prefill_tokens_per_s: Estimate  # prompt tokens (padding included) over prefill time
    decode_curve: tuple[DecodePoint, ...]
    kv_cache_bytes: int = field(metadata=_COUNT)  # the cache's largest size in the cell
    kv_cache_source: str
    padding: str = ""  # what static batching padded: prompts to the batch's longest, steps to its longest output
    offered_qps: float | None = field(default=None, metadata=_COUNT)
    achieved_qps: float | None = field(default=None, metadata=_COUNT)
    goodput_qps: float | None = field(default=None, metadata=_COUNT)  # requests/s that met every SLO limit
    attainment: float | None = field(default=None, metadata=_COUNT)  # their share of all requests
    min_attainment: float | None = field(default=None, metadata=_COUNT)  # the target share (generate.min_goodput)
    # rate search: the highest rate whose attainment met the target
    max_qps: float | None = field(default=None, metadata=_COUNT)
    curve: tuple[GenerateLoadPoint, ...] = ()
    per_process: tuple[GenerateProcess, ...] = ()


@dataclass(frozen=True)
class Cell(_Checked):
    id: str
    benchmark: str
    model: ModelInfo
    target: TargetInfo
    batch_size: int = field(metadata=_ONE_UP)
    scenario: str
    status: CellStatus
    reason: str = ""
    failure_kind: FailureKind | None = None  # on failed cells: what kind of failure (see FailureKind)
    timing_boundary: TimingBoundary = "end_to_end"
    metrics: Metrics | None = None
    memory: Memory | None = None
    gpu: GpuTelemetry | None = None
    agreement: Agreement | None = None
    warmup: Warmup | None = None
    duration_s: float | None = field(default=None, metadata=_COUNT)
    load_s: float | None = field(default=None, metadata=_COUNT)
    compile_s: float | None = field(default=None, metadata=_COUNT)  # torch.compile: the first calls, which compile
    capture_s: float | None = field(default=None, metadata=_COUNT)  # cudagraph: side-stream warm-up and capture
    roofline: Roofline | None = None
    stop_reason: str | None = None
    inputs_sha256: str | None = None
    samples_file: str | None = None
    slo: Slo | None = None
    stderr_tail: str | None = None
    throughput_series: Series | None = None
    server: ServerInfo | None = None
    # clients, on a scenario with a concurrency axis (multi-stream)
    concurrency: int | None = field(default=None, metadata=_ONE_UP)
    clients: ClientsInfo | None = None
    loadgen: LoadGenInfo | None = None
    repetitions: tuple[Repetition, ...] = ()  # empty in runs before schema 6 (one process per cell)
    variance: tuple[VarianceSplit, ...] = ()
    unstable: str | None = None  # why the figures are not stable across processes (None: stable)
    monitor: MonitorInfo | None = None  # a `bench monitor` cell's windows and alarms (schema 9)
    generate: GenerateInfo | None = None  # a generate cell's token figures (schema 10)
    node: str | None = None  # the Node.id that measured it (schema 11); None: the run's environment
    dims: dict[str, int] = field(default_factory=dict, metadata=_ONE_UP)  # named dynamic dimensions (schema 12)
    inputs: InputsInfo | None = None  # what it was fed (schema 12; null on older files and unrun cells)
    requests: RequestStats | None = None  # a served target's requests (schema 13; null in-process)
    server_metrics: ServerMetrics | None = None  # the server's own figures where metrics_url is set (schema 13)

    @property
    def used_repetitions(self) -> tuple[Repetition, ...]:
        return tuple(r for r in self.repetitions if r.used)

    @property
    def key(self) -> CellKey:
        return CellKey(self.benchmark, self.model.sha256, self.target.name, self.batch_size, self.scenario,
                       self.concurrency, tuple(sorted(self.dims.items())))


@dataclass(frozen=True)
class Repetition(_Checked):
    """One worker process's measurement of a cell (one work unit)."""

    index: int = field(metadata=_COUNT)  # 0-based, in the order the rounds ran it
    status: Literal["ok", "failed"]
    reason: str = ""  # why it failed, or why it was left out of the figures
    failure_kind: FailureKind | None = None
    used: bool = False  # whether the cell's figures include it
    # its own figures (ok repetitions), each over its kept window
    throughput: float | None = field(default=None, metadata=_POSITIVE)
    mean_ms: float | None = field(default=None, metadata=_POSITIVE)
    p50_ms: float | None = field(default=None, metadata=_POSITIVE)
    p90_ms: float | None = field(default=None, metadata=_POSITIVE)
    p95_ms: float | None = field(default=None, metadata=_POSITIVE)
    p99_ms: float | None = field(default=None, metadata=_POSITIVE)
    p999_ms: float | None = field(default=None, metadata=_POSITIVE)
    # kept samples: the cell's samples file holds the used repetitions' samples in order
    n: int = field(default=0, metadata=_COUNT)
    steady_state_cut: int = field(default=0, metadata=_COUNT)  # measured calls dropped as warm-up in this process
    window_s: float | None = field(default=None, metadata=_COUNT)
    stop_reason: str = ""
    peak_rss_bytes: int | None = field(default=None, metadata=_COUNT)
    # the machine's CPU time other processes took during the measured window (and hypervisor
    # steal), each as a share of its capacity (bench/measure/interference.py)
    others_cpu_share: float | None = field(default=None, metadata=_COUNT)
    steal_share: float | None = field(default=None, metadata=_COUNT)
    interfered: bool = False
    node: str | None = None  # the Node.id whose worker ran it (fleet runs)


@dataclass(frozen=True)
class VarianceSplit(_Checked):
    """How a figure varies between worker processes and within one (relative, as CVs)."""

    figure: str  # "throughput", "p50", ...
    between_cv: float = field(metadata=_COUNT)
    within_cv: float = field(metadata=_COUNT)


@dataclass(frozen=True)
class SuiteInfo:
    name: str
    path: str
    sha256: str


@dataclass(frozen=True)
class GpuInfo(_Checked):
    name: str
    uuid: str
    driver: str
    memory_total_bytes: int = field(metadata=_COUNT)
    power_limit_w: float | None = None
    cuda: str | None = None  # the CUDA version the driver supports
    index: int | None = field(default=None, metadata=_COUNT)  # NVML index (PCI bus order)
    compute_capability: str | None = None
    sm_clock_max_mhz: int | None = None
    memory_clock_max_mhz: int | None = None
    sm_clock_app_mhz: int | None = None  # application clock, when set
    mig_mode: str | None = None  # "enabled" | "disabled" | None where not supported
    ecc_mode: str | None = None
    persistence_mode: str | None = None


@dataclass(frozen=True)
class Environment(_Checked):
    host: str
    os: str
    kernel: str
    machine: str
    cpu_model: str
    cpu_cores_physical: int | None = field(metadata=_ONE_UP)
    cpu_cores_logical: int | None = field(metadata=_ONE_UP)
    cpu_governor: str | None
    memory_total_bytes: int = field(metadata=_COUNT)
    python: str
    packages: dict[str, str | None]
    gpus: tuple[GpuInfo, ...] = ()
    gpu_note: str = ""
    harness_commit: str | None = None
    harness_dirty: bool | None = None
    env_vars: dict[str, str] = field(default_factory=dict)  # allow-listed names only
    # The CPU's vector and matrix extensions that decide its int8 and bf16 speed (schema 14; empty
    # in older files and where /proc/cpuinfo is not readable): avx2, avx512f, avx512_vnni,
    # avx_vnni, avx512_bf16, amx_tile, amx_int8, amx_bf16, ... as Linux names them.
    cpu_isa: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    """A machine that measured cells of a fleet run (a Ray node): its fingerprint and its kind."""

    id: str  # "n0", "n1", ...: what cells and repetitions name in `node`
    kind: str  # cells compare and history series group only within one kind (machine_kind)
    environment: Environment
    label: str = ""  # the node's `machine` label, when it was started with one
    ray_node_id: str = ""


def machine_kind(env: Environment, label: str = "") -> str:
    """The kind of machine figures belong to: the node's `machine` label where the fleet declares
    its nodes alike, else the machine itself (host, CPU, cores, GPUs), so that figures of two
    unlabelled machines never mix."""
    if label:
        return label
    gpus = ",".join(g.name for g in env.gpus)
    return f"{env.host}|{env.cpu_model}|{env.cpu_cores_logical}|{gpus}"


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
    end_reason: str = ""  # why a run that did not complete ended (a signal, a write that failed)
    executor: str = "local"  # what ran the work units: "local" (worker processes here) or "ray"
    nodes: tuple[Node, ...] = ()  # fleet runs: the machines that measured cells

    def validate(self) -> tuple[str, str] | None:
        # A cell's id names it in reports, --only, compare and the history: two cells of one id
        # would be recorded and reported as one (the suite parser refuses names that collide).
        first: dict[str, int] = {}
        for i, cell in enumerate(self.cells):
            j = first.setdefault(cell.id, i)
            if j != i:
                return (f"cells[{i}].id", f"{cell.id!r} is also the id of cells[{j}] (benchmark {self.cells[j].benchmark!r}, "
                                          f"target {self.cells[j].target.name!r}); each cell's id is unique in a run")
        return None

    def node_of(self, cell: Cell) -> Node | None:
        return next((n for n in self.nodes if n.id == cell.node), None) if cell.node else None

    def environment_of(self, cell: Cell) -> Environment:
        """The fingerprint of the machine that measured `cell`."""
        node = self.node_of(cell)
        return node.environment if node is not None else self.environment

    def machine_of(self, cell: Cell) -> str:
        """The machine kind `cell` was measured on (see machine_kind)."""
        node = self.node_of(cell)
        return node.kind if node is not None else machine_kind(self.environment)
