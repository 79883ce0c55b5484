"""benchmarks.toml -> frozen, validated specs (bench.config.records).

Every error names the file, the key path, the bad value and what is allowed; unknown keys are
rejected with a "did you mean". A target's knobs are read into the options record its backend
declares (bench.backends.registry), and a scenario's table by the scenario that owns it
(bench.scenarios.registry), so this module imports no runtime and names no scenario.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from bench.backends.options import PluginOptions
from bench.backends.registry import BACKENDS, PLUGIN_PATTERN, BackendImportError, backend_class
from bench.config.reader import Reader
from bench.config.records import (INT8_PRECISIONS, PRECISIONS, SLO_KEYS, TOKEN_SLO_KEYS, AccuracySpec, BenchmarkSpec,
                                  Placement, QuantizeSpec, SloSpec, StopSpec, SuiteSpec, TargetSpec)
from bench.errors import ConfigError
from bench.models.inputs import InputOverride
from bench.results.records import CellKey
from bench.scenarios.registry import DEFAULT as DEFAULT_SCENARIOS
from bench.scenarios.registry import SCENARIOS, table_owners

_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
_TARGET_COMMON = ("backend", "device", "precision", "quantize")
# Where a fleet executor may run the target (bench.config.records.Placement), not backend knobs.
_PLACEMENT_KEYS = ("machine", "resources", "cpus")
# Ray's rule for a label value and a resource name (what `ray start --labels` accepts).
_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
_BENCH_KEYS = ("name", "model", "batch_sizes", "scenarios", "targets", "reference", "stop", "slo",
               "model_args", "dims", "inputs", "input_file", "seed", "tolerance", "trust_model", "accuracy")
MAX_DIM_SIZE = 1 << 24  # a dimension past 16M elements is a typo, not a sequence length


def _check_name(r: Reader, name: str, path: str) -> str:
    """A name is printed in tables and cell ids: no control characters (a terminal escape in a
    name would reach the user's terminal raw)."""
    import unicodedata

    bad = next((ch for ch in name if unicodedata.category(ch).startswith("C")), None)
    if bad is not None or not name.strip():
        what = f"holds the control character {bad!r}" if bad is not None else "is empty"
        raise r.fail(path, f"'{name.encode('unicode_escape').decode()}' {what}; names are printable text")
    return name


# Names go into cell ids raw, never sanitised: BENCHMARK/TARGET/bN[/dims]/SCENARIO[/cN] in
# run.json, reports and --only, and BENCHMARK|MODEL|TARGET|... as the key compare and the
# history store use. Each separator in a name would let two cells share an id (benchmark "a/b"
# on target "c" and benchmark "a" on target "b/c": both a/b/c/b1/offline), so neither may hold
# one. Case and Unicode forms are left alone: ids compare exactly everywhere (dicts, SQL TEXT),
# and no file name is made from a name.
_ID_SEPARATORS = {"/": "a cell id (BENCHMARK/TARGET/bN/SCENARIO)", "|": "a cell's key in compare and the history"}


def _check_cell_ids(r: Reader, specs: tuple[BenchmarkSpec, ...], targets: dict[str, TargetSpec]) -> None:
    """Every cell of the suite gets an id of its own: two that would share one are refused,
    naming both, and so is any benchmark or target name holding a separator of the id."""
    seen: dict[str, tuple[int, str]] = {}
    for i, b in enumerate(specs):
        for t in b.targets:
            for dims in b.dims_grid():
                for bs in b.batch_sizes:
                    for s in b.scenarios:
                        for concurrency in SCENARIOS[s].axis(b):
                            cell_id = CellKey(b.name, "", t, bs, s, concurrency, dims).id
                            j, u = seen.setdefault(cell_id, (i, t))
                            if (j, u) != (i, t):
                                raise r.fail(f"benchmark[{i}] ({b.name})", (
                                    f"on target {t!r} its cell id {cell_id!r} is that of benchmark[{j}] "
                                    f"({specs[j].name}) on target {u!r}; '/' separates a cell id's parts "
                                    "(BENCHMARK/TARGET/bN/SCENARIO): rename the benchmark or target whose name "
                                    "holds one"))
    named = [(f"benchmark[{i}].name", b.name) for i, b in enumerate(specs)]
    named += [(f"targets.{n.encode('unicode_escape').decode()}", n) for n in targets]
    for path, name in named:
        for sep, what in _ID_SEPARATORS.items():
            if sep in name:
                fixed = name.replace("/", "-").replace("|", "-")
                raise r.fail(path, f"{name!r} holds {sep!r}, which separates the parts of {what}, so two cells "
                                   f"could share one; use another character (e.g. {fixed!r})")


def parse_target(r: Reader, name: str, table: Any, base_dir: str = "") -> TargetSpec:
    """One [targets.NAME] table -> its TargetSpec (a ConfigError naming file and key when it is bad)."""
    return _parse_target(r, name, table, base_dir)


def target_keys(backend: str) -> tuple[str, ...]:
    """The keys a [targets.NAME] table of `backend` takes ("" for a user backend: any)."""
    if backend not in BACKENDS:
        return ()
    return _TARGET_COMMON + tuple(f.name for f in dataclasses.fields(BACKENDS[backend].options))


def _parse_target(r: Reader, name: str, table: Any, base_dir: str = "") -> TargetSpec:
    path = f"targets.{name.encode('unicode_escape').decode()}"
    _check_name(r, name, path)
    r.expect(table, (dict,), path, "a table")
    if "backend" not in table:
        raise r.fail(path, f"missing key 'backend' (allowed: {', '.join(BACKENDS)}, or module:Class)")
    backend = r.expect(table["backend"], (str,), f"{path}.backend", "a string")
    plugin = None
    if backend not in BACKENDS:
        if not PLUGIN_PATTERN.match(backend):
            r.choice(backend, list(BACKENDS), f"{path}.backend")
        # A user backend must import here, or the run would fail in every worker instead.
        try:
            plugin = backend_class(backend)
        except BackendImportError as exc:
            raise r.fail(f"{path}.backend", str(exc)) from None
    device = r.expect(table.get("device", "cpu"), (str,), f"{path}.device", "a string")
    if not _DEVICE_RE.match(device):
        raise r.fail(f"{path}.device", f"{device!r} is not allowed (allowed: cpu, cuda, cuda:N)")
    precision = r.choice(table.get("precision", "fp32"), PRECISIONS, f"{path}.precision")
    knobs = {k: v for k, v in table.items() if k not in _TARGET_COMMON + _PLACEMENT_KEYS}
    if plugin is None:
        options = r.record(BACKENDS[backend].options, knobs, path)
    else:  # a user backend's knobs pass through as they are
        options = PluginOptions(tuple(sorted(knobs.items())), plugin.model_form)
    problem = options.check_target(device, precision)
    if problem:
        key, message = problem
        raise r.fail(f"{path}.{key}", message)
    quantize = QuantizeSpec()
    if "quantize" in table:
        if precision not in INT8_PRECISIONS:
            raise r.fail(f"{path}.quantize", f"applies to int8 targets only (this target's precision is {precision!r}; "
                                             f"allowed: {', '.join(INT8_PRECISIONS)})")
        quantize = r.record(QuantizeSpec, table["quantize"], f"{path}.quantize")
        if quantize.calibration_file:
            quantize = dataclasses.replace(quantize, calibration_file=str(Path(base_dir, quantize.calibration_file)))
    return TargetSpec(name, backend, device, precision, options, _parse_placement(r, table, path), quantize)


def _parse_placement(r: Reader, table: dict, path: str) -> Placement:
    machine = r.expect(table.get("machine", ""), (str,), f"{path}.machine", "a node label (a string)")
    if machine and not _LABEL_RE.match(machine):
        raise r.fail(f"{path}.machine", f"{machine!r} is not a node label (letters, digits, '-', '_' and '.', "
                                        "starting and ending with a letter or digit, at most 63)")
    raw = r.expect(table.get("resources", {}), (dict,), f"{path}.resources", "a table of resource name = amount")
    resources = []
    for key, amount in raw.items():
        where = f"{path}.resources.{key}"
        if key in ("CPU", "GPU", "memory") or not _LABEL_RE.match(key):
            raise r.fail(where, "not a custom resource name (CPU and GPU come from `cpus` and the device; "
                                "names are letters, digits, '-', '_' and '.')")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0:
            raise r.fail(where, f"{amount!r} is not allowed; expected a number > 0")
        resources.append((key, float(amount)))
    cpus = table.get("cpus", 0)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus < 0:
        raise r.fail(f"{path}.cpus", f"{cpus!r} is not allowed; expected a number of CPU cores >= 0 "
                                     "(0: the target's thread count, else 1)")
    return Placement(machine, tuple(sorted(resources)), float(cpus))


def _parse_batch_sizes(r: Reader, value: Any, path: str) -> tuple[int, ...]:
    r.expect(value, (list,), path, "a non-empty list of integers >= 1")
    if not value:
        raise r.fail(path, "[] is not allowed; expected a non-empty list of integers >= 1")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise r.fail(f"{path}[{i}]", f"{v!r} is not allowed; batch sizes must be integers >= 1")
    if len(set(value)) != len(value):
        raise r.fail(path, f"{value!r} repeats a value; each batch size once")
    return tuple(value)


def _parse_stop(r: Reader, table: dict, path: str, quick: bool) -> StopSpec:
    stop = r.record(StopSpec, table, path)
    return stop.quick() if quick else stop


def _parse_slo(r: Reader, table: Any, path: str) -> SloSpec:
    slo = r.record(SloSpec, table, path)
    if not slo.limits() and not slo.token_limits():
        raise r.fail(path, f"empty SLO; set at least one of {', '.join(SLO_KEYS + TOKEN_SLO_KEYS)}")
    return slo


def _parse_dims(r: Reader, table: Any, path: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """dims = { seq = 128 } or { seq = [64, 128, 256] }: a size, or the sizes a sweep runs at."""
    r.expect(table, (dict,), path, "a table of name = size or [sizes]")
    dims = []
    for name, value in table.items():
        where = f"{path}.{name}"
        if name == "batch" or not name.isidentifier():
            raise r.fail(where, "not a dimension name: a word naming a dynamic axis of the model's inputs (the batch "
                                "axis is batch_sizes)")
        sizes = value if isinstance(value, list) else [value]
        if not sizes:
            raise r.fail(where, "[] is not allowed; expected a size >= 1 or a non-empty list of sizes")
        for j, v in enumerate(sizes):
            at = f"{where}[{j}]" if isinstance(value, list) else where
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DIM_SIZE:
                raise r.fail(at, f"{v!r} is not allowed; expected an integer from 1 to {MAX_DIM_SIZE}")
        if len(set(sizes)) != len(sizes):
            raise r.fail(where, f"{value!r} repeats a size; each size once")
        dims.append((name, tuple(sizes)))
    return tuple(sorted(dims))


def _parse_benchmark(r: Reader, i: int, table: Any, targets: dict[str, TargetSpec], defaults: dict,
                     quick: bool, base_dir: str) -> BenchmarkSpec:
    path = f"benchmark[{i}]"
    r.expect(table, (dict,), path, "a table")
    owners = table_owners()
    r.check_keys(table, _BENCH_KEYS + tuple(owners), path)
    for key in ("name", "model", "batch_sizes", "targets"):
        if key not in table:
            raise r.fail(path, f"missing key {key!r}")
    name = _check_name(r, r.expect(table["name"], (str,), f"{path}.name", "a string"), f"{path}.name")
    path = f"benchmark[{i}] ({name})"
    model = r.expect(table["model"], (str,), f"{path}.model", "a model reference")
    batch_sizes = _parse_batch_sizes(r, table["batch_sizes"], f"{path}.batch_sizes")
    scenarios_raw = r.expect(table.get("scenarios", list(DEFAULT_SCENARIOS)), (list,), f"{path}.scenarios", "a list")
    if not scenarios_raw:
        raise r.fail(f"{path}.scenarios", f"[] is not allowed (allowed: {', '.join(SCENARIOS)})")
    scenarios = tuple(r.choice(s, list(SCENARIOS), f"{path}.scenarios[{j}]") for j, s in enumerate(scenarios_raw))
    names = r.expect(table["targets"], (list,), f"{path}.targets", "a list of target names")
    if not names:
        raise r.fail(f"{path}.targets", "[] is not allowed; name at least one target")
    for j, t in enumerate(names):
        r.choice(t, sorted(targets), f"{path}.targets[{j}]")
    reference = r.choice(table.get("reference", names[0]), names, f"{path}.reference")
    ref_precision = targets[reference].precision
    if ref_precision != "fp32":
        raise r.fail(f"{path}.reference", f"{reference!r} runs {ref_precision}; the reference must be an fp32 target")
    default_stop = r.expect(defaults.get("stop", {}), (dict,), "defaults.stop", "a table")
    own_stop = r.expect(table.get("stop", {}), (dict,), f"{path}.stop", "a table")
    stop = _parse_stop(r, {**default_stop, **own_stop}, f"{path}.stop", quick)
    slo = _parse_slo(r, table["slo"], f"{path}.slo") if "slo" in table else None
    model_args = r.expect(table.get("model_args", {}), (dict,), f"{path}.model_args", "a table")
    for k, v in model_args.items():
        r.expect(v, (int, float, str, bool), f"{path}.model_args.{k}", "a number, string or boolean")
    dims = _parse_dims(r, table.get("dims", {}), f"{path}.dims")
    inputs_table = r.expect(table.get("inputs", {}), (dict,), f"{path}.inputs", "a table of input name = {...}")
    inputs = tuple(sorted((name, r.record(InputOverride, spec, f"{path}.inputs.{name}"))
                          for name, spec in inputs_table.items()))
    input_file = table.get("input_file")
    if input_file is not None:
        r.expect(input_file, (str,), f"{path}.input_file", "a path to an .npz file or a directory of .npy files")
        input_file = str(Path(base_dir, input_file))
    seed = r.expect(table.get("seed", defaults.get("seed", 0)), (int,), f"{path}.seed", "an integer >= 0")
    if seed < 0:
        raise r.fail(f"{path}.seed", f"{seed!r} is not allowed; expected an integer >= 0")
    tolerance = _parse_tolerance(r, table.get("tolerance"), f"{path}.tolerance")
    accuracy = r.record(AccuracySpec, table["accuracy"], f"{path}.accuracy") if "accuracy" in table else AccuracySpec()
    trust_model = r.expect(table.get("trust_model", False), (bool,), f"{path}.trust_model", "true or false")
    tables = tuple((key, owner.parse_table(r, table[key], f"{path}.{key}")) for key, owner in owners.items()
                   if key in table)
    bench = BenchmarkSpec(
        name=name, model=model, batch_sizes=batch_sizes, scenarios=scenarios, targets=tuple(names),
        reference=reference, stop=stop, slo=slo, model_args=tuple(sorted(model_args.items())),
        dims=dims, inputs=inputs, input_file=input_file, base_dir=base_dir, seed=seed, tolerance=tolerance,
        trust_model=trust_model, tables=tables, accuracy=accuracy,
    )
    if slo is not None and slo.token_limits() and not any(SCENARIOS[s].token_slo for s in scenarios):
        key = next(iter(slo.token_limits()))
        readers = [n for n, s in SCENARIOS.items() if s.token_slo]
        raise r.fail(f"{path}.slo.{key}", f"limits generated tokens, which none of this benchmark's scenarios makes "
                                          f"(it applies to: {', '.join(readers)})")
    for key, _ in tables:
        owners[key].check_table(r, bench, path)
    for scenario in scenarios:
        SCENARIOS[scenario].check(r, bench, targets, path)
    return bench


def _parse_tolerance(r: Reader, raw: Any, path: str) -> float | tuple[tuple[str, float], ...] | None:
    """One number for every precision, or a table of precision = number (the others keep their defaults)."""
    if raw is None:
        return None

    def limit(value: Any, where: str) -> float:
        number = float(r.expect(value, (int, float), where, "a number > 0"))
        if not (number > 0 and math.isfinite(number)):
            raise r.fail(where, f"{value!r} is not allowed; expected a number > 0")
        return number

    if not isinstance(raw, dict):
        r.expect(raw, (int, float, dict), path, "a number > 0, or a table of precision = number")
        return limit(raw, path)
    return tuple(sorted((r.choice(k, PRECISIONS, f"{path}.{k}"), limit(v, f"{path}.{k}")) for k, v in raw.items()))


# How deep a suite's arrays and tables may nest: a real one nests four or five levels
# ([[benchmark]] > inputs > NAME > shape); a few thousand levels overflow the TOML parser's
# recursion, and a few hundred that it survives would overflow whatever walks them next
# (the codec, pickling a target's knobs for a worker).
MAX_SUITE_DEPTH = 32


def _too_deep(doc: dict) -> str | None:
    """The key path of the first array or table nested deeper than MAX_SUITE_DEPTH, or None
    (walked with a stack: recursion is what such a document breaks)."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_SUITE_DEPTH:
            return path
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in children:
            if isinstance(child, (dict, list)):
                where = f"{path}[{key}]" if isinstance(value, list) else f"{path}.{key}" if path else str(key)
                stack.append((child, depth + 1, where))
    return None


def _statement_line(exc: RecursionError, text: str) -> str:
    """"line N: " of the statement tomllib was parsing when it ran out of stack, from its `loads`
    frame (whose `pos` is where that statement starts); "" where the frame says nothing."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "loads" and "tomllib" in frame.f_code.co_filename:
            pos = frame.f_locals.get("pos")
            src = frame.f_locals.get("src", text)
            return f"line {src.count(chr(10), 0, pos) + 1}: " if isinstance(pos, int) else ""
        tb = tb.tb_next
    return ""


def parse_suite(text: str, file: str = "benchmarks.toml", quick: bool = False, base_dir: str | None = None) -> SuiteSpec:
    """`base_dir`: where relative paths and factory modules resolve; the suite file's directory
    unless given (bench run MODEL builds a suite whose base is the current directory)."""
    base_dir = str(Path(base_dir) if base_dir is not None else Path(file).resolve().parent)
    r = Reader(file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except RecursionError as exc:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{file}: {_statement_line(exc, text)}arrays or tables nested too deep for the TOML "
                          f"parser; a suite nests at most {MAX_SUITE_DEPTH} levels") from None
    deep = _too_deep(doc)
    if deep is not None:
        shown = deep if len(deep) <= 80 else deep[:80] + "..."
        raise r.fail(shown, f"arrays or tables nested more than {MAX_SUITE_DEPTH} levels deep; a suite nests at "
                            f"most {MAX_SUITE_DEPTH}")
    # [tune]: the search space and settings of `bench tune` (bench.tune.space reads it; a run ignores it).
    r.check_keys(doc, ("suite", "targets", "benchmark", "defaults", "tune"), "")
    suite = r.expect(doc.get("suite", {}), (dict,), "suite", "a table")
    r.check_keys(suite, ("name",), "suite")
    name = _check_name(r, r.expect(suite.get("name", Path(file).stem), (str,), "suite.name", "a string"), "suite.name")
    defaults = r.expect(doc.get("defaults", {}), (dict,), "defaults", "a table")
    r.check_keys(defaults, ("stop", "seed"), "defaults")
    targets_table = r.expect(doc.get("targets", {}), (dict,), "targets", "a table of targets")
    if not targets_table:
        raise r.fail("targets", "no targets defined; add a [targets.NAME] table")
    targets = {n: _parse_target(r, n, t, base_dir) for n, t in targets_table.items()}
    benches = r.expect(doc.get("benchmark", []), (list,), "benchmark", "an array of [[benchmark]] tables")
    if not benches:
        raise r.fail("benchmark", "no benchmarks defined; add a [[benchmark]] table")
    specs = tuple(_parse_benchmark(r, i, b, targets, defaults, quick, base_dir) for i, b in enumerate(benches))
    seen: set[str] = set()
    for i, b in enumerate(specs):
        if b.name in seen:
            raise r.fail(f"benchmark[{i}].name", f"{b.name!r} is used twice; names must be unique")
        seen.add(b.name)
    _check_cell_ids(r, specs, targets)
    return SuiteSpec(name=name, path=file, sha256=hashlib.sha256(text.encode()).hexdigest(), targets=targets,
                     benchmarks=specs)


# A suite is a hand-written TOML file; nothing near this size is one (and /dev/zero has no end).
MAX_SUITE_BYTES = 4 * 1024 * 1024


def load_suite(path: str | Path, quick: bool = False) -> SuiteSpec:
    import os
    import stat

    from bench.results.safe_read import not_regular, open_regular

    path = Path(path)
    try:
        # Opened without blocking and checked by fstat: a FIFO would block a plain open, and a
        # device (/dev/zero) never ends; only a regular file is read.
        fd, st = open_regular(path)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(st.st_mode):
                raise ConfigError(f"{path}: {not_regular(st.st_mode)}; a suite is a TOML file, read whole")
            if st.st_size > MAX_SUITE_BYTES:
                raise ConfigError(f"{path}: {st.st_size:,} bytes, over the {MAX_SUITE_BYTES:,}-byte limit for a suite file")
            text = fh.read(MAX_SUITE_BYTES + 1).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass a suite file, a model (path/to/model.onnx, zoo:NAME, "
                          "hf:TYPE, module:function) or run where benchmarks.toml is") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_suite(text, str(path), quick)
