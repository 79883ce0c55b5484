"""Running a suite: plan cells, prepare models once, run each work unit in its worker, write results.

Prints nothing: progress goes to a callback the CLI supplies. Bad input found before any
measurement raises a BenchError (exit 2); a cell that fails at run time becomes a failed cell
and the others go on. run.json is rewritten after every cell, so nothing measured is lost.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from bench import stats
from bench.config.records import SuiteSpec, TargetSpec
from bench.errors import CellFailure
from bench.measure.environment import fingerprint
from bench.measure.nvml_devices import visible_device_count
from bench.models.loader import PreparedModel, prepare
from bench.results.files import RunDir, new_run_id, utc_now_iso
from bench.results.records import SCHEMA_VERSION, Cell, Run, SuiteInfo
from bench.runner.assemble import CellBuilder, model_ref
from bench.runner.isolation import WorkerFailure, run_in_worker
from bench.runner.plan import PlannedCell, SweepGates, model_forms, plan, with_models
from bench.runner.probes import PeakProbes
from bench.runner.schedule import InPlanOrder, Schedule
from bench.runner.unit import UnitJob, run_unit


@dataclass(frozen=True)
class Progress:
    """One event for the person watching: a cell is starting (cell is None) or has finished."""

    index: int
    total: int
    planned: PlannedCell
    cell: Cell | None


@dataclass(frozen=True)
class SuiteResult:
    run: Run
    path: Path
    interrupted: bool


def prepare_models(cells: list[PlannedCell], cuda: bool) -> dict[str, PreparedModel]:
    """Each benchmark's model, prepared once in this process (raises ModelError on bad input)."""
    return {
        name: prepare(model_ref(bench), need_onnx=bool(forms & {"onnx", "onnx-fp16"}), need_torch="torch" in forms,
                      need_fp16="onnx-fp16" in forms)
        for name, (bench, forms) in model_forms(cells, cuda).items()
    }


def device_problem(target: TargetSpec, count: int, note: str) -> str | None:
    """Why this machine cannot run a cuda target at all, before a worker is spawned."""
    from bench.backends.devices import check_index

    try:
        check_index(target.device, count)
    except CellFailure as exc:
        reason = str(exc)
        if count == 0 and note:
            reason += f" ({note})"
        return f"target {target.name!r}: {reason}" if count else reason
    return None


def run_suite(
    suite: SuiteSpec,
    out_root: Path,
    only: str | None = None,
    argv: tuple[str, ...] = (),
    progress: Callable[[Progress], None] = lambda _: None,
    schedule: Schedule = InPlanOrder(),
) -> SuiteResult:
    from bench import __version__

    cells = plan(suite, only)
    stats.warm_kernels()  # compile (or load) every kernel once here, so workers only load the cache
    gpu_count, gpu_note = visible_device_count() if any(c.target.is_cuda for c in cells) else (0, "")
    cuda = gpu_count > 0
    models = prepare_models(cells, cuda)
    cells = with_models(cells, {name: m.sha256 for name, m in models.items()})
    run_dir = RunDir(out_root, new_run_id())
    run = Run(
        schema_version=SCHEMA_VERSION,
        run_id=run_dir.path.name,
        created_at=utc_now_iso(),
        status="running",
        suite=SuiteInfo(suite.name, suite.path, suite.sha256),
        environment=fingerprint(),
        cells=(),
        harness_version=__version__,
        argv=argv,
    )
    run_dir.write_run(run)
    done: list[Cell] = []
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as tmp:
        peaks = PeakProbes(Path(tmp))
        builder = CellBuilder(run_dir, models, Path(tmp), peaks)
        gates = SweepGates()
        try:
            for unit in schedule.units(cells):
                p = unit.cell
                progress(Progress(p.index, len(cells), p, None))
                problem = device_problem(p.target, gpu_count, gpu_note) if p.target.is_cuda else None
                skip = gates.skip_reason(p)
                if p.target.is_cuda and not cuda:
                    cell = builder.skipped(p, problem or "no CUDA device")
                elif problem:
                    cell = builder.base(p, "failed", problem, failure_kind="unsupported")
                elif skip:
                    cell = builder.skipped(p, skip)
                else:
                    if p.target.is_cuda:
                        peaks.ensure(p.target.device)
                    job = UnitJob(p.key, unit.repetition, p.benchmark, p.target, models[p.benchmark.name],
                                  str(builder.outputs_path(p.benchmark.name, p.target.name, p.key.batch_size)))
                    stderr_path = Path(tmp) / f"worker-{p.index:04d}-{unit.repetition}.stderr"
                    outcome = run_in_worker(run_unit, job, stderr_path, p.timeout_s(), f"bench-cell-{p.index}")
                    stderr_path.unlink(missing_ok=True)
                    cell = builder.failed(p, outcome) if isinstance(outcome, WorkerFailure) else builder.ok(p, outcome)
                    gates.record(p, cell)
                done.append(cell)
                run = replace(run, cells=tuple(done))
                run_dir.write_run(run)
                progress(Progress(p.index, len(cells), p, cell))
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            # A bug or an unexpected error in the parent: keep what was measured, then let it surface
            # (and if even that write fails, the last good run.json stays and the first error surfaces).
            try:
                run_dir.write_run(replace(run, cells=tuple(done), status="interrupted", finished_at=utc_now_iso()))
            except Exception:
                pass
            raise
    run = replace(run, cells=tuple(done), status="interrupted" if interrupted else "complete",
                  finished_at=utc_now_iso())
    path = run_dir.write_run(run)
    return SuiteResult(run, path, interrupted)
