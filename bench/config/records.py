"""The frozen specs a suite parses into: what to run, on which targets, and when to stop.

Records only: bench.config.suite builds them from benchmarks.toml, checking every value; a
scenario's own table (e.g. `server`) is its record, parsed by the scenario and kept in
BenchmarkSpec.tables; a backend's knobs are its options record (bench.backends.options).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol

PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-static")
# int8: weights quantized ahead of time; "dynamic" quantizes activations per call from their
# observed range, "static" with scales fixed by calibration on sample inputs (QDQ on ONNX Runtime,
# PT2E on torch, the QDQ model on OpenVINO).
INT8_PRECISIONS = ("int8-dynamic", "int8-static")
# The pass limit of each precision. Float precisions: the relative error max|out - ref| / max|ref|
# (DESIGN.md, "Pitfalls"). int8: the accuracy loss of the benchmark's accuracy metric (1 - top-1
# agreement, 1 - cosine similarity, the mean relative error, 1 - token agreement;
# bench.analysis.accuracy), since int8's element-wise error is large by design and what a team
# decides on is how often the answer changes.
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2, "int8-dynamic": 0.05, "int8-static": 0.05}
ACCURACY_METRICS = ("auto", "top1", "cosine", "abs-error", "token")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CI_FIGURES = ("throughput", "mean", "p50", "p90", "p95", "p99", "p999")
SLO_KEYS = ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms")
TOKEN_SLO_KEYS = ("ttft_ms", "tpot_ms")  # per request, of a scenario that generates tokens
MAX_SECONDS_LIMIT = 86_400.0  # one cell for a day at most: a larger value is a typo
MAX_REPEATS = 1000


@dataclass(frozen=True)
class StopSpec:
    """When the measured window of a cell ends (and how long warm-up lasts before it).

    Adaptive: once min_seconds and min_iterations are met, the window ends when every figure in
    ci_figures has a confidence interval (at `confidence`) of relative half-width <= ci_rel_width,
    or at max_seconds, saying what precision was reached. ci_figures = [] stops on time alone.
    """

    min_seconds: float = 1.0
    max_seconds: float = 10.0
    min_iterations: int = 10
    warmup_iterations: int = 5
    warmup_seconds: float = 0.2
    ci_rel_width: float = 0.02
    confidence: float = 0.95
    ci_figures: tuple[str, ...] = ("throughput", "p99")
    # Each cell runs in `repeats` worker processes (interleaved with the other cells' in seeded
    # shuffled rounds): one process draws one of the machine's per-process modes, which no
    # within-window interval can see. Up to `max_repeats` (default: repeats) when the figures'
    # process-level intervals have not reached ci_rel_width yet.
    repeats: int = 3
    max_repeats: int | None = None
    # A repetition measured while other processes used more than this share of the machine's CPU
    # time (or a GPU the cell used) is flagged as interfered, and left out of the figures while
    # at least two clean repetitions remain.
    max_interference: float = 0.1
    # Raw latencies a worker keeps (8 bytes each): past this many, the measured loop keeps every
    # 2nd, then every 4th, ... call's latency, evenly over the whole window (memory stays under
    # max_samples x 8 bytes, 32 MiB by default, however long the window); throughput still counts
    # every call, and the other figures come from the kept sample, their intervals widened to match.
    max_samples: int = 1 << 22

    @property
    def repeat_limit(self) -> int:
        return self.max_repeats if self.max_repeats is not None else self.repeats

    def validate(self) -> tuple[str, str] | None:
        seconds = ("min_seconds", "max_seconds", "warmup_seconds")
        for key in seconds:
            if getattr(self, key) > MAX_SECONDS_LIMIT:
                return key, f"{getattr(self, key)!r} is not allowed; expected at most {MAX_SECONDS_LIMIT:g} s"
        for key in seconds:
            if getattr(self, key) < 0:
                return key, f"{getattr(self, key)!r} is not allowed; expected a number >= 0"
        if self.max_seconds <= 0:
            return "max_seconds", f"{self.max_seconds!r} is not allowed; expected a number > 0"
        if self.max_seconds < self.min_seconds:
            return "max_seconds", f"{self.max_seconds!r} is not allowed; must be >= min_seconds ({self.min_seconds!r})"
        if not 0 < self.ci_rel_width < 1:
            return "ci_rel_width", (f"{self.ci_rel_width!r} is not allowed; expected a relative half-width between "
                                    "0 and 1 (e.g. 0.02 for ±2%); to stop on time alone set ci_figures = []")
        if not 0 < self.confidence < 1:
            return "confidence", f"{self.confidence!r} is not allowed; expected a number between 0 and 1 (e.g. 0.95)"
        for j, fig in enumerate(self.ci_figures):
            if fig not in CI_FIGURES:
                from bench.codec import did_you_mean

                return f"ci_figures[{j}]", (f"{fig!r} is not allowed{did_you_mean(fig, CI_FIGURES)} "
                                            f"(allowed: {', '.join(CI_FIGURES)})")
        if self.min_iterations < 1:
            return "min_iterations", f"{self.min_iterations!r} is not allowed; expected an integer >= 1"
        if self.warmup_iterations < 0:
            return "warmup_iterations", f"{self.warmup_iterations!r} is not allowed; expected an integer >= 0"
        if not 1 <= self.repeats <= MAX_REPEATS:
            return "repeats", (f"{self.repeats!r} is not allowed; expected an integer from 1 to {MAX_REPEATS} "
                               "(worker processes per cell; 3 or more to see the between-process spread)")
        if self.max_repeats is not None and not self.repeats <= self.max_repeats <= MAX_REPEATS:
            return "max_repeats", (f"{self.max_repeats!r} is not allowed; expected an integer from repeats "
                                   f"({self.repeats}) to {MAX_REPEATS}")
        if self.max_samples < 1000:
            return "max_samples", f"{self.max_samples!r} is not allowed; expected an integer >= 1000"
        if not 0 < self.max_interference <= 1:
            return "max_interference", (f"{self.max_interference!r} is not allowed; expected a share of the "
                                        "machine's CPU time in (0, 1] (e.g. 0.1)")
        return None

    def quick(self) -> StopSpec:
        """--quick: a smoke run. The same rules, a tenth of the time, at most 1 s a cell, two
        repetitions."""
        return dataclasses.replace(
            self,
            min_seconds=min(self.min_seconds / 10, 0.2),
            max_seconds=min(self.max_seconds / 10, 1.0),
            min_iterations=min(self.min_iterations, 5),
            warmup_iterations=min(self.warmup_iterations, 2),
            warmup_seconds=min(self.warmup_seconds, 0.05),
            repeats=min(self.repeats, 2),
            max_repeats=min(self.repeat_limit, 2),
        )


@dataclass(frozen=True)
class SloSpec:
    """Latency limits in milliseconds; a cell passes when every set limit holds. ttft_ms and tpot_ms
    limit each generated request's time to first token and time per output token (the generate
    scenario: bench.analysis.generation says how they make goodput)."""

    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def limits(self) -> dict[str, float]:
        """The latency limits (on a cell's request latency figures)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k in SLO_KEYS}

    def token_limits(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k in TOKEN_SLO_KEYS}

    def validate(self) -> tuple[str, str] | None:
        for key, limit in {**self.limits(), **self.token_limits()}.items():
            if limit <= 0:
                return key, f"{limit!r} is not allowed; expected a number of ms > 0"
        return None


@dataclass(frozen=True)
class QuantizeSpec:
    """How an int8 target quantizes the model (a target's `quantize` table).

    Calibration (static only) runs the fp32 model on `samples` inputs: the benchmark's input file
    when it has one, else generated ones from a seed apart from the measured and accuracy inputs
    (bench.models.calibration), so the accuracy figure is not measured on the data that set the scales.
    """

    method: str = "minmax"  # how activation ranges are chosen: minmax, entropy, percentile
    per_channel: bool = True  # a scale per output channel of a weight, where the op supports it
    samples: int = 32  # calibration samples
    # The user's calibration samples (.npz or a directory of .npy, as `input_file`), resolved
    # against the suite's directory; "" takes the benchmark's input file, else generated inputs.
    calibration_file: str = ""

    def validate(self) -> tuple[str, str] | None:
        if self.method not in CALIBRATION_METHODS:
            from bench.codec import did_you_mean

            return "method", (f"{self.method!r} is not allowed{did_you_mean(self.method, CALIBRATION_METHODS)} "
                              f"(allowed: {', '.join(CALIBRATION_METHODS)})")
        if not 1 <= self.samples <= 100_000:
            return "samples", f"{self.samples!r} is not allowed; expected an integer from 1 to 100000"
        return None

    def key(self) -> str:
        """The settings as a short stable string: part of the quantized form's name and cache key."""
        key = f"{self.method}-{'pc' if self.per_channel else 'pt'}-n{self.samples}"
        if self.calibration_file:
            import hashlib

            key += "-f" + hashlib.sha256(self.calibration_file.encode()).hexdigest()[:8]
        return key

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AccuracySpec:
    """How a benchmark measures each target's accuracy against the reference (its `accuracy` table).

    metric "auto": the model's own kind where it declares one (the zoo's classifiers: top1, encoders:
    cosine), token for integer outputs, else abs-error. Computed on `samples` inputs apart from the
    measured batch, in batches of the cell's size, on the first output (bench.analysis.accuracy).
    """

    metric: str = "auto"
    samples: int = 64

    def validate(self) -> tuple[str, str] | None:
        if self.metric not in ACCURACY_METRICS:
            from bench.codec import did_you_mean

            return "metric", (f"{self.metric!r} is not allowed{did_you_mean(self.metric, ACCURACY_METRICS)} "
                              f"(allowed: {', '.join(ACCURACY_METRICS)})")
        if not 0 <= self.samples <= 100_000:
            return "samples", f"{self.samples!r} is not allowed; expected an integer from 0 (off) to 100000"
        return None


def quantized_form(form: str, quantize: QuantizeSpec) -> str:
    """A backend's model form with the quantize settings appended where the form is an int8 one:
    "onnx-int8-static" -> "onnx-int8-static:minmax-pc-n32" (bench.models.quantize reads it back)."""
    return f"{form}:{quantize.key()}" if "int8" in form else form


class TargetOptions(Protocol):
    """A backend's knobs (bench.backends.options), as the config and the runner see them."""

    def to_dict(self) -> dict[str, Any]: ...

    def check_target(self, device: str, precision: str) -> tuple[str, str] | None: ...

    def model_form(self, precision: str) -> str:
        """Which prepared form of the model the backend loads: "onnx", "onnx-fp16" or "torch"."""

    def serial_only(self) -> str | None:
        """Why calls from several threads at once cannot share this target, or None when they can."""

    def cpu_threads(self) -> int:
        """The compute threads the target asks for (0: the runtime's default)."""


@dataclass(frozen=True)
class Placement:
    """Where a fleet executor (bench run --executor ray) may run a target's work units, and what
    each reserves there; the local executor runs everything here and ignores it."""

    machine: str = ""  # a node label: only nodes started with `--labels machine=VALUE`
    resources: tuple[tuple[str, float], ...] = ()  # custom Ray resources a unit needs, e.g. (("h100", 1),)
    cpus: float = 0  # CPU cores a unit reserves; 0: the target's compute threads, else 1

    def cpus_for(self, options: TargetOptions) -> float:
        return self.cpus or float(options.cpu_threads() or 1)

    def describe(self, gpus: int) -> str:
        """What a node must have, in words: "1 GPU and label h100"."""
        parts = [f"{gpus} GPU" if gpus else ""] + [f"{v:g} {k}" for k, v in self.resources]
        if self.machine:
            parts.append(f"label machine={self.machine}")
        return " and ".join(p for p in parts if p) or "a free CPU"


@dataclass(frozen=True)
class TargetSpec:
    name: str
    backend: str
    device: str
    precision: str
    options: TargetOptions
    placement: Placement = Placement()
    quantize: QuantizeSpec = QuantizeSpec()  # read by int8 targets only

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def is_int8(self) -> bool:
        return self.precision in INT8_PRECISIONS

    @property
    def model_form(self) -> str:
        return quantized_form(self.options.model_form(self.precision), self.quantize)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "knobs": {**self.options.to_dict(), **({"quantize": self.quantize.to_dict()} if self.is_int8 else {})},
        }


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    model: str
    batch_sizes: tuple[int, ...]
    scenarios: tuple[str, ...]
    targets: tuple[str, ...]
    reference: str
    stop: StopSpec
    slo: SloSpec | None = None
    model_args: tuple[tuple[str, int | float | str | bool], ...] = ()
    # Named dynamic dimensions and the sizes each cell runs at (a sweep axis like batch_sizes):
    # (("seq", (64, 128)),) runs every cell at seq=64 and at seq=128.
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()
    inputs: tuple[tuple[str, Any], ...] = ()  # (input name, bench.models.inputs.InputOverride)
    input_file: str | None = None  # the user's samples (.npz or a directory of .npy), resolved
    # Where relative model and input paths and `module:function` factories resolve: the suite
    # file's directory (the current directory for a suite built from the command line).
    base_dir: str = ""
    seed: int = 0
    # overrides DEFAULT_TOLERANCE: one number for every precision, or (precision, limit) pairs
    tolerance: float | tuple[tuple[str, float], ...] | None = None
    accuracy: AccuracySpec = AccuracySpec()
    trust_model: bool = False  # allow model files that may unpickle objects (.pt2)
    # Scenario tables by key (e.g. ("server", ServerSpec(...)), ("concurrency", (1, 2, 4))):
    # each parsed by the scenario that owns the key (bench.scenarios).
    tables: tuple[tuple[str, Any], ...] = ()

    def tolerance_for(self, precision: str) -> float:
        if isinstance(self.tolerance, tuple):
            return dict(self.tolerance).get(precision, DEFAULT_TOLERANCE[precision])
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE[precision]

    def table(self, key: str) -> Any:
        """A scenario table's record, or None when the benchmark does not set it."""
        return dict(self.tables).get(key)

    def slo_limits(self) -> dict[str, float]:
        return self.slo.limits() if self.slo is not None else {}

    def dims_grid(self) -> list[tuple[tuple[str, int], ...]]:
        """Every combination of the dims' sizes (sorted by name), in sweep order; [()] without dims."""
        import itertools

        names = [n for n, _ in self.dims]
        return [tuple(zip(names, sizes)) for sizes in itertools.product(*(v for _, v in self.dims))]


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    path: str
    sha256: str
    targets: dict[str, TargetSpec] = field(hash=False)
    benchmarks: tuple[BenchmarkSpec, ...]
