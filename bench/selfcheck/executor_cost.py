"""What the Ray executor costs, and whether its figures are a local run's (bench self-check
--checks executor; needs Ray).

1. Cost: the same work units, with a backend that does nothing (bench.selfcheck.null_backend),
   through the local executor and through Ray (a one-machine cluster started here): the median
   wall time of a unit from its start to its result, and the driver's throughput in units per
   second, with one unit at a time and with as many as the machine's CPUs (Ray) take.
2. Agreement: a real suite (a small MLP on ONNX Runtime and torch) run local, Ray, local, Ray,
   interleaved on this machine; each Ray run compared with the local run before it by `bench
   compare`'s test (per-process figures, Welch on logs, Holm over the cells). Figures that agree
   read "unchanged"; the local A/A pair shows what this machine's own drift gives.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from bench.selfcheck.check import Check, Options, met

UNITS_PER_TARGET = 5
NULL_TARGETS = 4  # independent sweeps, so that units may run side by side
_MLP = "{ in_features = 16, width = 32, depth = 2, classes = 4 }"


def _null_suite() -> str:
    targets = "\n".join(f'[targets.null-{i}]\nbackend = "bench.selfcheck.null_backend:NullBackend"\n'
                        for i in range(NULL_TARGETS))
    names = ", ".join(f'"null-{i}"' for i in range(NULL_TARGETS))
    return f"""
[suite]
name = "executor-cost"

{targets}
[[benchmark]]
name = "null"
model = "zoo:mlp"
model_args = {_MLP}
batch_sizes = [1]
scenarios = ["single-stream"]
targets = [{names}]
stop = {{ min_seconds = 0.001, max_seconds = 0.05, min_iterations = 1, warmup_iterations = 1, warmup_seconds = 0.0, ci_figures = [], repeats = {UNITS_PER_TARGET} }}
"""


AGREEMENT_SUITE = textwrap.dedent(f"""
    [suite]
    name = "executor-agreement"

    [targets.ort]
    backend = "onnxruntime"
    providers = ["CPUExecutionProvider"]
    intra_op_threads = 1

    [targets.torch]
    backend = "torch"
    threads = 1

    [[benchmark]]
    name = "mlp"
    model = "zoo:mlp"
    model_args = {_MLP}
    batch_sizes = [1, 8]
    scenarios = ["single-stream"]
    targets = ["ort", "torch"]
    stop = {{ min_seconds = 0.3, max_seconds = 1, ci_figures = [], repeats = 5 }}
""")


@dataclass(frozen=True)
class Throughput:
    executor: str
    in_flight: str  # "1" or "up to N"
    units: int
    unit_ms: float  # median over units, start to result
    units_per_s: float  # units over the wall time from the first start to the last result


@dataclass(frozen=True)
class CellAgreement:
    cell: str
    ratio: float  # Ray's throughput over the local run's
    verdict: str


@dataclass(frozen=True)
class PairAgreement:
    base: str  # "local 1"
    new: str  # "ray 1"
    cells: tuple[CellAgreement, ...]

    @property
    def unchanged(self) -> int:
        return sum(c.verdict == "unchanged" for c in self.cells)


@dataclass(frozen=True)
class ExecutorCostCheck:
    cost: tuple[Throughput, ...]
    pairs: tuple[PairAgreement, ...]
    cpus: int


def _timed_run(suite_text: str, out: Path, executor) -> tuple[Path, list[float], float]:
    """Run the suite; each unit's wall time from its start to its result, and the units' span."""
    from bench.config.suite import parse_suite
    from bench.runner.suite import Progress, run_suite

    started: dict[tuple[int, int], float] = {}
    took: list[float] = []
    ends: list[float] = []

    def progress(p: Progress) -> None:
        now = time.perf_counter()
        key = (p.planned.index, p.repetition)
        if p.cell is None and not p.finished_unit:
            started[key] = now
        elif p.finished_unit and key in started:
            took.append(now - started[key])
            ends.append(now)

    result = run_suite(parse_suite(suite_text), out, progress=progress, executor=executor)
    span = (max(ends) - min(started.values())) if ends else float("nan")
    return result.path.parent, took, span


def check_executor_cost(o: Options) -> ExecutorCostCheck:
    from bench.analysis.compare import compare_runs
    from bench.runner.executor import LocalExecutor
    from bench.runner.ray_executor import RayExecutor, import_ray
    from bench.scenarios.registry import compare_policy

    import_ray()
    cpus = os.cpu_count() or 1
    cost = []
    with tempfile.TemporaryDirectory(prefix="bench-executor-") as tmp:
        root = Path(tmp)
        for name, in_flight, factory in (
            ("local", "1", LocalExecutor),
            ("ray", "1", lambda _: RayExecutor("local", max_in_flight=1)),
            ("ray", f"up to {cpus}", lambda _: RayExecutor("local", max_in_flight=cpus, local_cpus=cpus)),
        ):
            _, took, span = _timed_run(_null_suite(), root / f"null-{len(cost)}", factory)
            cost.append(Throughput(name, in_flight, len(took), statistics.median(took) * 1e3, len(took) / span))
        runs = []
        for i in range(2):
            for name, factory in (("local", LocalExecutor), ("ray", lambda _: RayExecutor("local"))):
                path, _, _ = _timed_run(AGREEMENT_SUITE, root / f"{name}-{i}", factory)
                runs.append((f"{name} {i + 1}", path))
        pairs = []
        for base, new in ((runs[0], runs[1]), (runs[2], runs[3]), (runs[0], runs[2])):
            cmp = compare_runs(base[1], new[1], compare_policy)
            pairs.append(PairAgreement(base[0], new[0], tuple(
                CellAgreement(c.key, c.throughput.value if c.throughput else float("nan"), c.verdict)
                for c in cmp.cells)))
    return ExecutorCostCheck(tuple(cost), tuple(pairs), cpus)


def lines(c: ExecutorCostCheck) -> list[str]:
    local = c.cost[0]
    out = [f"executor cost (a null backend: each unit is a fresh worker that loads nothing and measures "
           f"{UNITS_PER_TARGET} times a call that does nothing; {NULL_TARGETS} targets, {c.cpus} CPUs here)"]
    for t in c.cost:
        out.append(f"  {t.executor:<6} {t.in_flight:>9} in flight: {t.units} units, median {t.unit_ms:7.1f} ms a unit "
                   f"(x{t.unit_ms / local.unit_ms:.1f} local), {t.units_per_s:6.2f} units/s "
                   f"(x{t.units_per_s / local.units_per_s:.2f} local)")
    ray1 = c.cost[1]
    out.append(f"  added by Ray per unit: {ray1.unit_ms - local.unit_ms:.0f} ms (a Ray worker per unit, max_calls = 1, "
               "and a worker host started per unit, which forks the unit's worker; locally the host stays warm "
               "for the whole run)")
    out.append("agreement: each Ray run against the local run before it (bench compare: per-process figures, Welch on "
               "logs, Holm over the cells); local 1 against local 2 shows this machine's own drift")
    for p in c.pairs:
        ratios = "  ".join(f"{_short(a.cell)} x{a.ratio:.3f} {a.verdict}" for a in p.cells)
        # The goal is Ray's figures agreeing with a local run's; local against local is this
        # machine's own drift, the yardstick for those verdicts, and no goal of the executor.
        verdict = "(this machine's drift)" if p.new.startswith("local") else met(p.unchanged == len(p.cells))
        out.append(f"  {p.new} vs {p.base}: {p.unchanged}/{len(p.cells)} unchanged {verdict}   {ratios}")
    return out


def _short(stable_id: str) -> str:
    """target/bN of a cell's stable id (benchmark|model|target|bN|scenario)."""
    parts = stable_id.split("|")
    return "/".join(parts[2:4]) if len(parts) >= 4 else stable_id


CHECK = Check("executor", False, check_executor_cost, lines)
