"""benchmarks.toml -> frozen, validated specs.

Every error names the file, the key path, the bad value and what is allowed; unknown keys are
rejected with a "did you mean". Backend-specific knobs are validated against the option record
each backend declares in `bench.backends.options`, so this module imports no runtime.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backends.options import BACKEND_OPTIONS, PluginOptions, TargetOptions
from bench.errors import ConfigError

SCENARIOS = ("single-stream", "offline", "server", "multi-stream", "loadgen-server", "loadgen-offline")
DEFAULT_SCENARIOS = ("single-stream", "offline")
PRECISIONS = ("fp32", "fp16", "bf16")
# Relative tolerance of max|out - ref| / max|ref| per precision (DESIGN.md, "Pitfalls").
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}
CI_FIGURES = ("throughput", "mean", "p50", "p90", "p95", "p99", "p999")
SLO_KEYS = ("mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms")
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_PLUGIN_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


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


@dataclass(frozen=True)
class SloSpec:
    """Latency limits in milliseconds; a cell passes when every set limit holds."""

    mean_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


MAX_BATCHING = 1024  # inputs are built for every batch from 1 to max_batch up front
MAX_CONCURRENCY = 256  # client threads


@dataclass(frozen=True)
class ServerSpec:
    """Open-loop Poisson load (the server scenario); each request is one batch."""

    qps: float = 0.0  # target arrival rate, requests/s
    duration_s: float = 0.0  # 0: long enough for a p99 bound at 99% confidence (662 requests), within max_seconds
    seed: int = 0
    max_batch: int = 1  # dynamic batching: merge up to this many waiting requests into one call
    max_wait_ms: float = 0.0  # dynamic batching: how long the oldest request may wait for company
    search: bool = False  # find the highest rate meeting the SLO, starting from qps
    resolution: float = 0.05  # search until bad / good rate - 1 <= resolution
    max_probes: int = 12

    def validate(self) -> tuple[str, str] | None:
        if not self.qps > 0:
            return "qps", f"{self.qps!r} is not allowed; the target rate must be > 0 requests/s"
        if self.qps > 1e8:
            return "qps", f"{self.qps!r} is not allowed; at most 1e8 requests/s"
        if self.duration_s != 0 and not 0.1 <= self.duration_s <= 86_400:
            return "duration_s", f"{self.duration_s!r} is not allowed; expected 0 (automatic) or 0.1 to 86400 seconds"
        if self.seed < 0:
            return "seed", f"{self.seed!r} is not allowed; expected an integer >= 0"
        if not 1 <= self.max_batch <= MAX_BATCHING:
            return "max_batch", f"{self.max_batch!r} is not allowed; expected an integer from 1 to {MAX_BATCHING}"
        if self.max_wait_ms < 0:
            return "max_wait_ms", f"{self.max_wait_ms!r} is not allowed; the batching wait must be >= 0 ms"
        if not 0 < self.resolution < 1:
            return "resolution", f"{self.resolution!r} is not allowed; expected a fraction between 0 and 1"
        if self.max_probes < 2:
            return "max_probes", f"{self.max_probes!r} is not allowed; expected an integer >= 2"
        return None


@dataclass(frozen=True)
class TargetSpec:
    name: str
    backend: str
    device: str
    precision: str
    options: TargetOptions

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "knobs": self.options.to_dict(),
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
    dims: tuple[tuple[str, int], ...] = ()
    seed: int = 0
    tolerance: float | None = None  # overrides DEFAULT_TOLERANCE when set
    trust_model: bool = False  # allow model files that may unpickle objects (.pt2)
    server: ServerSpec | None = None  # required by the server scenario
    concurrency: tuple[int, ...] = ()  # client counts of the multi-stream sweep

    def tolerance_for(self, precision: str) -> float:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE[precision]


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    path: str
    sha256: str
    targets: dict[str, TargetSpec] = field(hash=False)
    benchmarks: tuple[BenchmarkSpec, ...]


# --- helpers ---------------------------------------------------------------------------------


class _Ctx:
    """Carries the file name so every message can start with it."""

    def __init__(self, file: str):
        self.file = file

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: {path}: {message}")

    def check_keys(self, table: dict, allowed: typing.Iterable[str], path: str) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(
                    f"{path}.{key}" if path else key,
                    f"unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})",
                )

    def expect(self, value: Any, kinds: tuple[type, ...], path: str, what: str) -> Any:
        # bool is an int in Python; a TOML `true` where a number belongs is a mistake.
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(path, f"{value!r} is not allowed; expected {what}")
        if not isinstance(value, kinds):
            raise self.fail(path, f"{value!r} is not allowed; expected {what}")
        return value

    def choice(self, value: Any, allowed: typing.Sequence[str], path: str) -> str:
        if value not in allowed:
            close = difflib.get_close_matches(str(value), list(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(path, f"{value!r} is not allowed{hint} (allowed: {', '.join(allowed)})")
        return value


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return names.get(tp, str(tp))


def _coerce(ctx: _Ctx, tp: Any, value: Any, path: str) -> Any:
    """Check `value` against the annotation `tp` (the small subset option records use)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(ctx, arg, value, path)
            except ConfigError:
                pass
        raise ctx.fail(path, f"{value!r} is not allowed; expected {_type_name(tp)}")
    if origin is tuple:
        ctx.expect(value, (list,), path, _type_name(tp))
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(ctx, inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is float:
        number = float(ctx.expect(value, (int, float), path, "a number"))
        if not math.isfinite(number):
            raise ctx.fail(path, f"{value!r} is not allowed; expected a finite number")
        return number
    return ctx.expect(value, (tp,), path, _type_name(tp))


def build_record(ctx: _Ctx, cls: type, table: dict, path: str) -> Any:
    """Build a frozen dataclass from a TOML table, type-checking each field, then validate it."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    ctx.check_keys(table, fields, path)
    kwargs = {k: _coerce(ctx, hints[k], v, f"{path}.{k}") for k, v in table.items()}
    record = cls(**kwargs)
    check = getattr(record, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            key, message = problem
            raise ctx.fail(f"{path}.{key}", message)
    return record


# --- sections --------------------------------------------------------------------------------

_TARGET_COMMON = ("backend", "device", "precision")


def _parse_target(ctx: _Ctx, name: str, table: Any) -> TargetSpec:
    path = f"targets.{name}"
    ctx.expect(table, (dict,), path, "a table")
    if "backend" not in table:
        raise ctx.fail(path, f"missing key 'backend' (allowed: {', '.join(BACKEND_OPTIONS)}, or module:Class)")
    backend = ctx.expect(table["backend"], (str,), f"{path}.backend", "a string")
    if backend in BACKEND_OPTIONS:
        options_cls = BACKEND_OPTIONS[backend]
    elif _PLUGIN_RE.match(backend):
        options_cls = None  # a user backend given as module:Class; knobs passed through as-is
        _check_plugin(ctx, backend, f"{path}.backend")
    else:
        ctx.choice(backend, list(BACKEND_OPTIONS), f"{path}.backend")
    device = ctx.expect(table.get("device", "cpu"), (str,), f"{path}.device", "a string")
    if not _DEVICE_RE.match(device):
        raise ctx.fail(f"{path}.device", f"{device!r} is not allowed (allowed: cpu, cuda, cuda:N)")
    precision = ctx.choice(table.get("precision", "fp32"), PRECISIONS, f"{path}.precision")
    knobs = {k: v for k, v in table.items() if k not in _TARGET_COMMON}
    if options_cls is None:
        options: TargetOptions = PluginOptions(tuple(sorted(knobs.items())))
    else:
        options = build_record(ctx, options_cls, knobs, path)
    problem = options.check_target(device, precision)
    if problem:
        key, message = problem
        raise ctx.fail(f"{path}.{key}", message)
    return TargetSpec(name, backend, device, precision, options)


def _check_plugin(ctx: _Ctx, spec: str, path: str) -> None:
    """A user backend must import here, or the run would fail in every worker instead."""
    import importlib

    module_name, _, cls_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: ImportError or whatever its import raises
        raise ctx.fail(path, f"{spec!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    if not isinstance(getattr(module, cls_name, None), type):
        raise ctx.fail(path, f"{spec!r}: {module_name!r} has no class {cls_name!r}")


def _positive_int_list(ctx: _Ctx, value: Any, path: str) -> tuple[int, ...]:
    ctx.expect(value, (list,), path, "a non-empty list of integers >= 1")
    if not value:
        raise ctx.fail(path, "[] is not allowed; expected a non-empty list of integers >= 1")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ctx.fail(f"{path}[{i}]", f"{v!r} is not allowed; batch sizes must be integers >= 1")
        out.append(v)
    if len(set(out)) != len(out):
        raise ctx.fail(path, f"{value!r} repeats a value; each batch size once")
    return tuple(out)


MAX_SECONDS_LIMIT = 86_400.0  # one cell for a day at most: a larger value is a typo


def _parse_stop(ctx: _Ctx, table: Any, path: str, quick: bool) -> StopSpec:
    ctx.expect(table, (dict,), path, "a table")
    stop = build_record(ctx, StopSpec, table, path)
    for key in ("min_seconds", "max_seconds", "warmup_seconds"):
        if getattr(stop, key) > MAX_SECONDS_LIMIT:
            raise ctx.fail(f"{path}.{key}", f"{getattr(stop, key)!r} is not allowed; expected at most {MAX_SECONDS_LIMIT:g} s")
    for key in ("min_seconds", "max_seconds", "warmup_seconds"):
        if getattr(stop, key) < 0:
            raise ctx.fail(f"{path}.{key}", f"{getattr(stop, key)!r} is not allowed; expected a number >= 0")
    if stop.max_seconds <= 0:
        raise ctx.fail(f"{path}.max_seconds", f"{stop.max_seconds!r} is not allowed; expected a number > 0")
    if stop.max_seconds < stop.min_seconds:
        raise ctx.fail(
            f"{path}.max_seconds",
            f"{stop.max_seconds!r} is not allowed; must be >= min_seconds ({stop.min_seconds!r})",
        )
    if not 0 < stop.ci_rel_width < 1:
        raise ctx.fail(f"{path}.ci_rel_width", f"{stop.ci_rel_width!r} is not allowed; expected a relative "
                       "half-width between 0 and 1 (e.g. 0.02 for ±2%); to stop on time alone set ci_figures = []")
    if not 0 < stop.confidence < 1:
        raise ctx.fail(f"{path}.confidence", f"{stop.confidence!r} is not allowed; expected a number between 0 and 1 (e.g. 0.95)")
    for j, fig in enumerate(stop.ci_figures):
        ctx.choice(fig, CI_FIGURES, f"{path}.ci_figures[{j}]")
    for key in ("min_iterations", "warmup_iterations"):
        if getattr(stop, key) < (1 if key == "min_iterations" else 0):
            raise ctx.fail(f"{path}.{key}", f"{getattr(stop, key)!r} is not allowed; expected an integer >= 1")
    if quick:
        # --quick: a smoke run. Same rules, a tenth of the time, capped at 1 s a cell.
        stop = dataclasses.replace(
            stop,
            min_seconds=min(stop.min_seconds / 10, 0.2),
            max_seconds=min(stop.max_seconds / 10, 1.0),
            min_iterations=min(stop.min_iterations, 5),
            warmup_iterations=min(stop.warmup_iterations, 2),
            warmup_seconds=min(stop.warmup_seconds, 0.05),
        )
    return stop


def _parse_slo(ctx: _Ctx, table: Any, path: str) -> SloSpec:
    ctx.expect(table, (dict,), path, "a table")
    slo = build_record(ctx, SloSpec, table, path)
    if not slo.limits():
        raise ctx.fail(path, f"empty SLO; set at least one of {', '.join(SLO_KEYS)}")
    for key, limit in slo.limits().items():
        if limit <= 0:
            raise ctx.fail(f"{path}.{key}", f"{limit!r} is not allowed; expected a number of ms > 0")
    return slo


_BENCH_KEYS = (
    "name", "model", "batch_sizes", "scenarios", "targets", "reference", "stop", "slo",
    "model_args", "dims", "seed", "tolerance", "trust_model", "server", "concurrency",
)


def _parse_benchmark(
    ctx: _Ctx, i: int, table: Any, targets: dict[str, TargetSpec], defaults: dict, quick: bool
) -> BenchmarkSpec:
    path = f"benchmark[{i}]"
    ctx.expect(table, (dict,), path, "a table")
    ctx.check_keys(table, _BENCH_KEYS, path)
    for key in ("name", "model", "batch_sizes", "targets"):
        if key not in table:
            raise ctx.fail(path, f"missing key {key!r}")
    name = ctx.expect(table["name"], (str,), f"{path}.name", "a string")
    path = f"benchmark[{i}] ({name})"
    model = ctx.expect(table["model"], (str,), f"{path}.model", "a model reference")
    batch_sizes = _positive_int_list(ctx, table["batch_sizes"], f"{path}.batch_sizes")
    scenarios_raw = ctx.expect(table.get("scenarios", list(DEFAULT_SCENARIOS)), (list,), f"{path}.scenarios", "a list")
    if not scenarios_raw:
        raise ctx.fail(f"{path}.scenarios", f"[] is not allowed (allowed: {', '.join(SCENARIOS)})")
    scenarios = tuple(ctx.choice(s, SCENARIOS, f"{path}.scenarios[{j}]") for j, s in enumerate(scenarios_raw))
    names = ctx.expect(table["targets"], (list,), f"{path}.targets", "a list of target names")
    if not names:
        raise ctx.fail(f"{path}.targets", "[] is not allowed; name at least one target")
    for j, t in enumerate(names):
        ctx.choice(t, sorted(targets), f"{path}.targets[{j}]")
    reference = ctx.choice(table.get("reference", names[0]), names, f"{path}.reference")
    ref_precision = targets[reference].precision
    if ref_precision != "fp32":
        raise ctx.fail(f"{path}.reference", f"{reference!r} runs {ref_precision}; the reference must be an fp32 target")
    default_stop = ctx.expect(defaults.get("stop", {}), (dict,), "defaults.stop", "a table")
    own_stop = ctx.expect(table.get("stop", {}), (dict,), f"{path}.stop", "a table")
    stop_table = {**default_stop, **own_stop}
    stop = _parse_stop(ctx, stop_table, f"{path}.stop", quick)
    slo = _parse_slo(ctx, table["slo"], f"{path}.slo") if "slo" in table else None
    model_args = ctx.expect(table.get("model_args", {}), (dict,), f"{path}.model_args", "a table")
    for k, v in model_args.items():
        ctx.expect(v, (int, float, str, bool), f"{path}.model_args.{k}", "a number, string or boolean")
    dims = ctx.expect(table.get("dims", {}), (dict,), f"{path}.dims", "a table of name = integer")
    for k, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ctx.fail(f"{path}.dims.{k}", f"{v!r} is not allowed; expected an integer >= 1")
    seed = ctx.expect(table.get("seed", defaults.get("seed", 0)), (int,), f"{path}.seed", "an integer >= 0")
    if seed < 0:
        raise ctx.fail(f"{path}.seed", f"{seed!r} is not allowed; expected an integer >= 0")
    tolerance = table.get("tolerance")
    if tolerance is not None:
        tolerance = float(ctx.expect(tolerance, (int, float), f"{path}.tolerance", "a number > 0"))
        if not (tolerance > 0 and math.isfinite(tolerance)):
            raise ctx.fail(f"{path}.tolerance", f"{tolerance!r} is not allowed; expected a number > 0")
    trust_model = ctx.expect(table.get("trust_model", False), (bool,), f"{path}.trust_model", "true or false")
    server = None
    if "server" in table:
        ctx.expect(table["server"], (dict,), f"{path}.server", "a table")
        if "qps" not in table["server"]:
            raise ctx.fail(f"{path}.server", "missing key 'qps' (the target rate, requests/s)")
        server = build_record(ctx, ServerSpec, table["server"], f"{path}.server")
    for needs_rate in ("server", "loadgen-server"):
        if needs_rate in scenarios and server is None:
            raise ctx.fail(path, f"the {needs_rate} scenario needs server = {{ qps = RATE }} (requests/s)")
    if server is not None and server.search and "slo" not in table:
        raise ctx.fail(f"{path}.server.search", "a peak search needs an SLO to meet, e.g. slo = { p99_ms = 20 }")
    concurrency: tuple[int, ...] = ()
    if "concurrency" in table:
        raw = ctx.expect(table["concurrency"], (list,), f"{path}.concurrency", "a list of client counts >= 1")
        for j, c in enumerate(raw):
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CONCURRENCY:
                raise ctx.fail(f"{path}.concurrency[{j}]",
                               f"{c!r} is not allowed; expected a client count from 1 to {MAX_CONCURRENCY}")
        concurrency = tuple(sorted(set(raw)))
    if "multi-stream" in scenarios and not concurrency:
        raise ctx.fail(path, "the multi-stream scenario needs concurrency = [1, 2, 4, ...] (client counts)")
    if "multi-stream" in scenarios and max(concurrency) > 1:
        for j, t in enumerate(names):
            if getattr(targets[t].options, "mode", None) == "cudagraph":
                # Concurrent replays of one CUDA graph must be serialized by the caller (CUDA's
                # graph thread-safety rule), and one graph per shape is shared by all clients.
                raise ctx.fail(f"{path}.targets[{j}]",
                               f"{t!r} replays one CUDA graph, which clients on threads cannot share; run the "
                               "multi-stream scenario with concurrency = [1] or on an eager or compile target")
    return BenchmarkSpec(
        concurrency=concurrency,
        server=server,
        trust_model=trust_model,
        name=name,
        model=model,
        batch_sizes=batch_sizes,
        scenarios=scenarios,
        targets=tuple(names),
        reference=reference,
        stop=stop,
        slo=slo,
        model_args=tuple(sorted(model_args.items())),
        dims=tuple(sorted(dims.items())),
        seed=seed,
        tolerance=tolerance,
    )


def parse_suite(text: str, file: str = "benchmarks.toml", quick: bool = False) -> SuiteSpec:
    ctx = _Ctx(file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    ctx.check_keys(doc, ("suite", "targets", "benchmark", "defaults"), "")
    suite = ctx.expect(doc.get("suite", {}), (dict,), "suite", "a table")
    ctx.check_keys(suite, ("name",), "suite")
    name = ctx.expect(suite.get("name", Path(file).stem), (str,), "suite.name", "a string")
    defaults = ctx.expect(doc.get("defaults", {}), (dict,), "defaults", "a table")
    ctx.check_keys(defaults, ("stop", "seed"), "defaults")
    targets_table = ctx.expect(doc.get("targets", {}), (dict,), "targets", "a table of targets")
    if not targets_table:
        raise ctx.fail("targets", "no targets defined; add a [targets.NAME] table")
    targets = {n: _parse_target(ctx, n, t) for n, t in targets_table.items()}
    benches = ctx.expect(doc.get("benchmark", []), (list,), "benchmark", "an array of [[benchmark]] tables")
    if not benches:
        raise ctx.fail("benchmark", "no benchmarks defined; add a [[benchmark]] table")
    specs = tuple(_parse_benchmark(ctx, i, b, targets, defaults, quick) for i, b in enumerate(benches))
    seen: set[str] = set()
    for i, b in enumerate(specs):
        if b.name in seen:
            raise ctx.fail(f"benchmark[{i}].name", f"{b.name!r} is used twice; names must be unique")
        seen.add(b.name)
    return SuiteSpec(
        name=name,
        path=file,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        targets=targets,
        benchmarks=specs,
    )


def load_suite(path: str | Path, quick: bool = False) -> SuiteSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass a suite file or run where benchmarks.toml is") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_suite(text, str(path), quick)
