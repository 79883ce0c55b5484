"""The search space of `bench tune`: the suite's [tune] table (or --space) -> candidate configurations.

```toml
[tune]
benchmark = "bert"          # which [[benchmark]] (default: the only one)
scenario = "single-stream"   # default: the benchmark's first
objective = "throughput"     # throughput | mean | p50 | p90 | p95 | p99 | p999
slo = { p99_ms = 20 }        # default: the benchmark's latency SLO, if any
default = { target = "ort-cpu", batch_size = 1 }   # the configuration to beat (default: the
                             # benchmark's first target at its first batch size, as declared)

[tune.space]
target = ["ort-cpu", "torch-cpu"]          # base targets (default: the benchmark's targets)
batch_size = [1, 4, 16]                    # default: the benchmark's batch_sizes
intra_op_threads = { from = 1, to = 2, step = 1 }   # a range: from..to inclusive
threads = [1, 2]
graph_optimization_level = ["basic", "all"]
```

A knob is any key of a target table (bench.config.suite.target_keys). It applies to the base
targets whose backend takes it and to no other: the constraint between a knob and a backend is
the backend's own options record, never enumerated by hand. A combination the target's own
checks refuse (int8-static on torch eager, say) is left out and counted, with its reason. A knob
that no base target takes is bad input, as is an empty list, a range with a step of 0 and a space
with no valid combination.
"""
from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass
from typing import Any

from bench.analysis.race import OBJECTIVES, SLO_FIGURES
from bench.config.reader import Reader
from bench.config.records import BenchmarkSpec, SuiteSpec, TargetSpec
from bench.config.suite import parse_target, target_keys
from bench.errors import ConfigError

WORKLOAD_KNOBS = ("target", "batch_size")
TUNE_KEYS = ("benchmark", "scenario", "objective", "slo", "default", "space", "confidence", "indifference",
             "min_rounds", "max_rounds", "confirm_rounds", "budget_s", "seed", "max_enumerate", "width")
MAX_CANDIDATES = 100_000  # a space past this is a typo in a range, not a search
MAX_RANGE_VALUES = 1000


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Candidate:
    """One configuration: a target (a base target with some knobs set) at a batch size."""

    id: str  # TARGET/bN, TARGET the base target's name with ~knob=value,... for what differs
    base: str
    settings: tuple[tuple[str, Any], ...]  # the space's knobs that apply to its base, as set
    batch_size: int
    target: TargetSpec
    table: tuple[tuple[str, Any], ...]  # its [targets.NAME] table, as a suite would hold it
    # Workload knobs (the scenario's table: "server.max_batch") as set, and the benchmark that
    # carries them: its name (the tuned benchmark's, with ~knob=value,... where one differs) and
    # its scenario tables.
    workload: tuple[tuple[str, Any], ...] = ()
    bench_name: str = ""
    tables: tuple[tuple[str, Any], ...] = ()

    @property
    def target_name(self) -> str:
        return self.target.name

    def describe(self) -> dict[str, Any]:
        return {"target": self.base, "batch_size": self.batch_size, **dict(self.settings), **dict(self.workload)}


@dataclass(frozen=True)
class TuneSpec:
    benchmark: BenchmarkSpec
    scenario: str
    objective: str
    slo: tuple[tuple[str, float], ...]
    knobs: tuple[Knob, ...]
    candidates: tuple[Candidate, ...]  # every valid combination, in the space's order
    default: Candidate
    excluded: tuple[tuple[str, str], ...]  # (combination, why the target refused it)
    confidence: float = 0.95
    indifference: float = 0.05
    min_rounds: int = 2
    max_rounds: int = 10
    confirm_rounds: int = 3
    budget_s: float = 1800.0
    seed: int = 0
    max_enumerate: int = 64  # spaces up to this many race whole; larger ones are proposed (TPE)
    width: int = 8  # candidates racing at once when proposed

    @property
    def grid_size(self) -> int:
        return len(self.candidates)

    def key(self) -> dict[str, Any]:
        """What a resumed search must share with the one it continues."""
        return {"benchmark": self.benchmark.name, "scenario": self.scenario, "objective": self.objective,
                "slo": [list(s) for s in self.slo], "candidates": [c.id for c in self.candidates],
                "default": self.default.id, "confidence": self.confidence, "indifference": self.indifference,
                "min_rounds": self.min_rounds, "max_rounds": self.max_rounds, "seed": self.seed,
                "max_enumerate": self.max_enumerate, "width": self.width, "model": self.benchmark.model,
                "stop": repr(self.benchmark.stop)}  # --quick or another stop rule: another precision


def _values(r: Reader, raw: Any, path: str) -> tuple[Any, ...]:
    """A list, or a range table {from, to, step} / {from, to, times}; inclusive of `to` when hit."""
    if isinstance(raw, list):
        if not raw:
            raise r.fail(path, "[] is not allowed; give at least one value")
        for i, v in enumerate(raw):
            r.expect(v, (str, int, float, bool), f"{path}[{i}]", "a string, number or boolean")
        if len({repr(v) for v in raw}) != len(raw):
            raise r.fail(path, f"{raw!r} repeats a value; each value once")
        return tuple(raw)
    if isinstance(raw, dict):
        r.check_keys(raw, ("from", "to", "step", "times"), path)
        for key in ("from", "to"):
            if key not in raw:
                raise r.fail(path, f"missing key {key!r}; a range is {{ from = A, to = B, step = S }} or "
                                   "{ from = A, to = B, times = F }")
            r.expect(raw[key], (int, float), f"{path}.{key}", "a number")
            if not math.isfinite(raw[key]):
                raise r.fail(f"{path}.{key}", f"{raw[key]!r} is not allowed; expected a finite number")
        if ("step" in raw) == ("times" in raw):
            raise r.fail(path, "give one of 'step' (from, from + step, ...) or 'times' (from, from * times, ...)")
        lo, hi = raw["from"], raw["to"]
        if hi < lo:
            raise r.fail(f"{path}.to", f"{hi!r} is below from ({lo!r}); a range runs upward")
        ints = all(isinstance(raw[k], int) for k in raw)
        out: list[Any] = []
        if "step" in raw:
            step = r.expect(raw["step"], (int, float), f"{path}.step", "a number > 0")
            if not (step > 0 and math.isfinite(step)):
                raise r.fail(f"{path}.step", f"{step!r} is not allowed; a step must be > 0 (a step of 0 never "
                                             f"reaches to = {hi!r})")
            count = math.floor((hi - lo) / step + 1e-9) + 1
            if count > MAX_RANGE_VALUES:
                raise r.fail(path, f"{count:,} values; a range holds at most {MAX_RANGE_VALUES:,}")
            out = [lo + i * step for i in range(count)]
        else:
            times = r.expect(raw["times"], (int, float), f"{path}.times", "a number > 1")
            if not (times > 1 and math.isfinite(times)):
                raise r.fail(f"{path}.times", f"{times!r} is not allowed; a factor must be > 1")
            if not lo > 0:
                raise r.fail(f"{path}.from", f"{lo!r} is not allowed; a range by 'times' starts above 0")
            v = lo
            while v <= hi * (1 + 1e-9):
                out.append(v)
                v = v * times
                if len(out) > MAX_RANGE_VALUES:
                    raise r.fail(path, f"over {MAX_RANGE_VALUES:,} values")
        return tuple(int(round(v)) if ints else float(v) for v in out)
    raise r.fail(path, f"{raw!r} is not allowed; expected a list of values or a range table "
                       "{ from = A, to = B, step = S }")


def _number(r: Reader, table: dict, key: str, default: Any, path: str, lo: float, hi: float | None,
            kind: type = float) -> Any:
    v = table.get(key, default)
    kinds = (int,) if kind is int else (int, float)
    r.expect(v, kinds, f"{path}.{key}", f"a number from {lo:g}" + (f" to {hi:g}" if hi is not None else ""))
    if v < lo or (hi is not None and v > hi) or not math.isfinite(v):
        what = f"from {lo:g}" + (f" to {hi:g}" if hi is not None else " up")
        raise r.fail(f"{path}.{key}", f"{v!r} is not allowed; expected a number {what}")
    return kind(v)


def _declared(target: TargetSpec, table: dict, key: str) -> Any:
    """A knob's value in the base target as it runs: its table's, or the backend's default (a target
    that leaves graph_optimization_level out runs at "all", the same configuration as one setting it)."""
    if key in table:
        return table[key]
    if key == "precision":
        return target.precision
    return getattr(target.options, key, None)


def _candidate_id(base: str, changed: list[tuple[str, Any]], batch: int) -> tuple[str, str]:
    name = base if not changed else base + "~" + ",".join(f"{k}={_show(v)}" for k, v in changed)
    return f"{name}/b{batch}", name


def _show(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def read_tune(suite: SuiteSpec, text: str, file: str, benchmark: str | None = None, objective: str | None = None,
              slo: dict[str, float] | None = None, space: dict | None = None, budget_s: float | None = None,
              seed: int | None = None, scenario: str | None = None) -> TuneSpec:
    """The tune settings: the suite's [tune] table, each given argument overriding its key."""
    r = Reader(file)
    doc = tomllib.loads(text)
    tune = r.expect(doc.get("tune", {}), (dict,), "tune", "a table")
    r.check_keys(tune, TUNE_KEYS, "tune")
    names = [b.name for b in suite.benchmarks]
    for key in ("benchmark", "scenario", "objective"):
        if key in tune:
            r.expect(tune[key], (str,), f"tune.{key}", "a string")
    name = benchmark or tune.get("benchmark")
    if name is None:
        if len(names) > 1:
            raise ConfigError(f"{file}: the suite has {len(names)} benchmarks ({', '.join(names)}); name the one "
                              "to tune with --benchmark NAME or tune.benchmark")
        name = names[0]
    where = "--benchmark" if benchmark else "tune.benchmark"
    if name not in names:
        r.choice(name, names, where)
    bench = next(b for b in suite.benchmarks if b.name == name)
    bench_index = names.index(name)
    raw_bench = doc["benchmark"][bench_index]
    scen = scenario or tune.get("scenario") or bench.scenarios[0]
    r.choice(scen, list(bench.scenarios), "--scenario" if scenario else "tune.scenario")
    objective = objective or tune.get("objective", "throughput")
    if objective not in OBJECTIVES:
        r.choice(objective, list(OBJECTIVES), "--objective" if objective else "tune.objective")
    from bench.scenarios.registry import SCENARIOS

    produced = tuple(OBJECTIVES) if SCENARIOS[scen].latency_figures else ("throughput",)
    if objective not in produced:
        raise ConfigError(f"objective {objective!r}: the {scen} scenario does not produce it (it produces: "
                          f"{', '.join(produced)})")
    if slo is None:
        raw_slo = tune.get("slo")
        if raw_slo is not None:
            r.expect(raw_slo, (dict,), "tune.slo", "a table such as { p99_ms = 20 }")
            slo = raw_slo
        else:
            slo = bench.slo_limits()
    limits = []
    for key, limit in (slo or {}).items():
        r.choice(key, list(SLO_FIGURES), f"tune.slo.{key}")
        r.expect(limit, (int, float), f"tune.slo.{key}", "a number of ms > 0")
        if not limit > 0:
            raise r.fail(f"tune.slo.{key}", f"{limit!r} is not allowed; expected a number of ms > 0")
        if not SCENARIOS[scen].latency_figures:
            raise r.fail(f"tune.slo.{key}", f"the {scen} scenario has no per-request latency to limit")
        limits.append((key, float(limit)))
    path = "tune"
    confidence = _number(r, tune, "confidence", 0.95, path, 0.5, 0.999)
    indifference = _number(r, tune, "indifference", 0.05, path, 0.001, 1.0)
    min_rounds = _number(r, tune, "min_rounds", 2, path, 2, 100, int)
    max_rounds = _number(r, tune, "max_rounds", 10, path, min_rounds, 1000, int)
    confirm_rounds = _number(r, tune, "confirm_rounds", 3, path, 2, 100, int)
    budget = budget_s if budget_s is not None else _number(r, tune, "budget_s", 1800.0, path, 1e-3, None)
    seed_v = seed if seed is not None else _number(r, tune, "seed", 0, path, 0, None, int)
    max_enumerate = _number(r, tune, "max_enumerate", 64, path, 1, MAX_CANDIDATES, int)
    width = _number(r, tune, "width", 8, path, 2, 1000, int)

    space_raw = space if space is not None else tune.get("space")
    space_where = "--space" if space is not None else "tune.space"
    if space_raw is None:
        raise ConfigError(f"{file}: no search space: add a [tune.space] table of knob = [values] (or pass --space)")
    r.expect(space_raw, (dict,), space_where, "a table of knob = [values] or { from, to, step }")
    if not space_raw:
        raise r.fail(space_where, "empty: name at least one knob (e.g. batch_size = [1, 4, 16])")
    from bench.scenarios.registry import table_owners

    owners = table_owners()
    knob_list = []
    for k, v in space_raw.items():
        if isinstance(v, dict) and k in owners and not set(v) <= {"from", "to", "step", "times"}:
            # server.max_batch = [...]: TOML nests it as { server = { max_batch = [...] } }
            if SCENARIOS[scen].table_key != k:
                raise r.fail(f"{space_where}.{k}", f"the {scen} scenario reads no {k!r} table (its knobs apply to "
                                                   f"the {owners[k].name} scenario)")
            if not v:
                raise r.fail(f"{space_where}.{k}", "empty: name at least one knob of the table")
            knob_list += [Knob(f"{k}.{key}", _values(r, vv, f"{space_where}.{k}.{key}")) for key, vv in v.items()]
        else:
            knob_list.append(Knob(k, _values(r, v, f"{space_where}.{k}")))
    knobs = tuple(knob_list)
    by_name = {k.name: k for k in knobs}

    raw_targets = doc.get("targets", {})
    bases = by_name["target"].values if "target" in by_name else bench.targets
    for i, t in enumerate(bases):
        r.expect(t, (str,), f"{space_where}.target[{i}]", "a target name")
        r.choice(t, sorted(suite.targets), f"{space_where}.target[{i}]")
    batches = by_name["batch_size"].values if "batch_size" in by_name else bench.batch_sizes
    for i, b in enumerate(batches):
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise r.fail(f"{space_where}.batch_size[{i}]", f"{b!r} is not allowed; batch sizes are integers >= 1")
    workload_knobs = [k for k in knobs if "." in k.name]
    target_knobs = [k for k in knobs if k.name not in WORKLOAD_KNOBS and "." not in k.name]
    takes = {t: target_keys(suite.targets[t].backend) for t in bases}
    for k in target_knobs:
        if k.name in ("backend", "device"):
            raise r.fail(f"{space_where}.{k.name}", "not a knob: list whole targets in 'target' to try other "
                                                     "backends or devices")
        if not any(k.name in keys or not keys for keys in takes.values()):
            offered = "; ".join(f"{t} ({suite.targets[t].backend}): {', '.join(x for x in keys if x not in ('backend', 'device'))}"
                                for t, keys in takes.items())
            raise r.fail(f"{space_where}.{k.name}", f"no target in the space takes {k.name!r} ({offered})")

    default_raw = r.expect(tune.get("default", {}), (dict,), "tune.default", "a table { target = ..., batch_size = ... }")
    r.check_keys(default_raw, ("target", "batch_size"), "tune.default")
    default_target = r.choice(default_raw.get("target", bench.targets[0]), sorted(suite.targets), "tune.default.target")
    default_batch = default_raw.get("batch_size", bench.batch_sizes[0])
    if isinstance(default_batch, bool) or not isinstance(default_batch, int) or default_batch < 1:
        raise r.fail("tune.default.batch_size", f"{default_batch!r} is not allowed; expected an integer >= 1")

    variants, refused = _workload_variants(r, bench, raw_bench_table(doc, bench.name), workload_knobs, space_where,
                                           file)
    base_dir = bench.base_dir
    candidates: list[Candidate] = []
    excluded: list[tuple[str, str]] = []
    seen_targets: dict[str, TargetSpec] = {}
    total = 0
    for base in bases:
        own = [k for k in target_knobs if k.name in takes[base] or not takes[base]]
        base_table = dict(raw_targets[base])
        for combo in itertools.product(*(k.values for k in own)):
            total += len(batches)
            if total > MAX_CANDIDATES:
                raise r.fail(space_where, f"over {MAX_CANDIDATES:,} combinations; narrow a range")
            settings = tuple((k.name, v) for k, v in zip(own, combo))
            changed = [(k, v) for k, v in settings if _declared(suite.targets[base], base_table, k) != v]
            table = {**base_table, **dict(settings)}
            _, tname = _candidate_id(base, changed, 1)
            if tname not in seen_targets:
                try:
                    seen_targets[tname] = parse_target(Reader(file), tname, table, base_dir)
                except ConfigError as exc:
                    excluded.append((tname, str(exc).split(": ", 2)[-1]))
                    continue
            for b in batches:
                cid, _ = _candidate_id(base, changed, b)
                for workload, bench_name, tables, label in variants:
                    candidates.append(Candidate(cid + label, base, settings, b, seen_targets[tname],
                                                tuple(table.items()), workload, bench_name, tables))
    excluded += refused
    if not candidates:
        shown = "; ".join(f"{n}: {why}" for n, why in excluded[:3])
        raise r.fail(space_where, f"no valid configuration: every combination was refused ({shown})")
    default_id = f"{default_target}/b{default_batch}"
    default = next((c for c in candidates if c.target_name == default_target and c.batch_size == default_batch
                    and c.bench_name == bench.name), None)
    if default is None:
        target = seen_targets.get(default_target) or suite.targets[default_target]
        default = Candidate(default_id, default_target, (), default_batch, target,
                            tuple(dict(raw_targets[default_target]).items()), (), bench.name, bench.tables)
        candidates.insert(0, default)
    return TuneSpec(bench, scen, objective, tuple(limits), knobs, tuple(candidates), default, tuple(excluded),
                    confidence, indifference, min_rounds, max_rounds, confirm_rounds, float(budget), seed_v,
                    max_enumerate, width)


def raw_bench_table(doc: dict, name: str) -> dict:
    return next(b for b in doc["benchmark"] if isinstance(b, dict) and b.get("name") == name)


def _workload_variants(r: Reader, bench: BenchmarkSpec, raw: dict, knobs: list[Knob], where: str,
                       file: str) -> tuple[list[tuple[tuple[tuple[str, Any], ...], str, tuple[tuple[str, Any], ...], str]],
                                           list[tuple[str, str]]]:
    """Each combination of the workload knobs: (settings, benchmark name, scenario tables, id suffix).
    The table is read by the scenario that owns it, so a value it refuses leaves the combination out."""
    from bench.scenarios.registry import table_owners

    if not knobs:
        return [((), bench.name, bench.tables, "")], []
    owners = table_owners()
    out, refused = [], []
    for combo in itertools.product(*(k.values for k in knobs)):
        settings = tuple((k.name, v) for k, v in zip(knobs, combo))
        tables = dict(bench.tables)
        raws: dict[str, dict] = {}
        for name, v in settings:
            table, key = name.split(".", 1)
            raws.setdefault(table, dict(raw.get(table, {})))[key] = v
        label = ",".join(f"{n}={_show(v)}" for n, v in settings)
        try:
            for table, value in raws.items():
                tables[table] = owners[table].parse_table(Reader(file), value, f"{where}.{table}")
        except ConfigError as exc:
            refused.append((label, str(exc).split(": ", 2)[-1]))
            continue
        declared = dict(bench.tables)  # the table as the benchmark reads it, defaults filled in
        changed = [(n, v) for n, v in settings
                   if getattr(declared.get(n.split(".", 1)[0]), n.split(".", 1)[1], None) != v]
        name = bench.name if not changed else bench.name + "~" + ",".join(f"{n}={_show(v)}" for n, v in changed)
        out.append((settings, name, tuple(sorted(tables.items())), "/" + label))
    if not out:
        shown = "; ".join(f"{n}: {why}" for n, why in refused[:3])
        raise r.fail(where, f"no valid workload setting: every combination was refused ({shown})")
    return out, refused


def parse_space_arg(value: str) -> dict:
    """--space: a TOML file holding a [space] table (or [tune.space]), or the table inline:
    'batch_size = [1, 4], threads = [1, 2]'."""
    from pathlib import Path

    p = Path(value)
    if value.endswith(".toml"):
        try:
            doc = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"--space {value}: no such file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--space {value}: cannot read it as TOML: {exc}") from None
        table = doc.get("space", doc.get("tune", {}).get("space") if isinstance(doc.get("tune"), dict) else None)
        if not isinstance(table, dict):
            raise ConfigError(f"--space {value}: no [space] table in it")
        return table
    try:
        return tomllib.loads("\n".join(part.strip() for part in _split_top(value)))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--space {value!r}: not a table of knob = [values] ({exc})") from None


def _split_top(text: str) -> list[str]:
    """Split 'a = [1, 2], b = "x"' at the commas outside brackets and braces."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]
