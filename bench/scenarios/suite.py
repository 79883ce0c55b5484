"""Running a suite: plan cells, prepare models once, run each cell in its worker, write results.

Prints nothing: progress goes to a callback the CLI supplies. Bad input found before any
measurement raises a BenchError (exit 2); a cell that fails at run time becomes a failed cell
and the others go on. run.json is rewritten after every cell, so nothing measured is lost.
"""
from __future__ import annotations

import fnmatch
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from bench import stats
from bench.agreement import check_reference, compare_outputs, load_outputs
from bench.config import BenchmarkSpec, SuiteSpec, TargetSpec
from bench.errors import UsageError
from bench.measure.environment import fingerprint
from bench.models.loader import ModelRef, PreparedModel, classify, prepare
from bench.results.files import RunDir, new_run_id, utc_now_iso
from bench.results.schema import (
    OUT_OF_MEMORY, SCHEMA_VERSION, Agreement, Cell, ClientsInfo, Latency, LoadGenInfo, Memory, Metrics, ModelInfo, Roofline, Run, Slo,
    SloCheck, SuiteInfo, TargetInfo, Warmup,
)
from bench.measure.nvml import visible_device_count
from bench.scenarios.cell import CellJob, CellOutcome
from bench.scenarios.figures import cell_metrics, server_figures
from bench.scenarios.probe import PeakProbes
from bench.worker import WorkerFailure, run_in_worker

LOAD_ALLOWANCE_S = 300.0  # time a worker may take to start, load and check outputs


@dataclass(frozen=True)
class PlannedCell:
    index: int
    id: str
    benchmark: BenchmarkSpec
    target: TargetSpec
    batch_size: int
    scenario: str
    concurrency: int = 1


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

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.run.cells if c.status == "failed"]

    @property
    def disagreeing(self) -> list[Cell]:
        return [c for c in self.run.cells if c.agreement is not None and c.agreement.verdict == "fail"]

    @property
    def invalid(self) -> list[Cell]:
        return [c for c in self.run.cells if c.server is not None and not c.server.valid]

    @property
    def slo_failed(self) -> list[Cell]:
        return [c for c in self.run.cells if c.slo is not None and not c.slo.passed]


def plan(suite: SuiteSpec, only: str | None = None) -> list[PlannedCell]:
    """Cells in run order: per benchmark the reference target first, so its outputs exist."""
    cells: list[PlannedCell] = []
    for bench in suite.benchmarks:
        order = [bench.reference] + [t for t in bench.targets if t != bench.reference]
        for tname in order:
            for bs in bench.batch_sizes:
                for scenario in bench.scenarios:
                    for conc in (bench.concurrency if scenario == "multi-stream" else (1,)):
                        cid = f"{bench.name}/{tname}/b{bs}/{scenario}" + (f"/c{conc}" if scenario == "multi-stream" else "")
                        if only and not (fnmatch.fnmatch(cid, only) or fnmatch.fnmatch(bench.name, only)):
                            continue
                        cells.append(PlannedCell(len(cells), cid, bench, suite.targets[tname], bs, scenario, conc))
    if not cells:
        raise UsageError(f"--only {only!r} matches no cell (cell ids look like BENCHMARK/TARGET/bN/SCENARIO)")
    return cells


def model_ref(bench: BenchmarkSpec) -> ModelRef:
    return ModelRef(bench.model, classify(bench.model), bench.model_args, bench.dims, bench.seed, bench.trust_model)


def prepare_models(cells: list[PlannedCell], cuda: bool) -> dict[str, PreparedModel]:
    """Each benchmark's model, prepared once in this process (raises ModelError on bad input)."""
    needs: dict[str, tuple[BenchmarkSpec, bool, bool, bool]] = {}
    for c in cells:
        if c.target.is_cuda and not cuda:
            continue
        bench, onnx, torch_, fp16 = needs.get(c.benchmark.name, (c.benchmark, False, False, False))
        onnx |= c.target.backend != "torch"  # onnxruntime and user backends get the ONNX form
        torch_ |= c.target.backend == "torch"
        fp16 |= c.target.backend == "onnxruntime" and c.target.precision == "fp16"
        needs[c.benchmark.name] = (bench, onnx, torch_, fp16)
    return {
        name: prepare(model_ref(bench), need_onnx=onnx, need_torch=torch_, need_fp16=fp16)
        for name, (bench, onnx, torch_, fp16) in needs.items()
    }


def roofline(model: PreparedModel | None, throughput: float, precision: str, peaks) -> Roofline | None:
    """FLOPs per sample x throughput, against the device's probed peak at this precision."""
    if model is None or model.flops_per_sample is None:
        return None
    achieved = model.flops_per_sample * throughput
    if peaks is None or isinstance(peaks, str):
        return Roofline(model.flops_per_sample, model.flops_source, achieved,
                        peak_source=peaks or "no peak: not a GPU target")
    peak = peaks.flops_for(precision)
    return Roofline(
        model.flops_per_sample, model.flops_source, achieved,
        peak_flops_per_s=peak,
        fraction_of_peak=achieved / peak if peak else None,
        peak_copy_bytes_per_s=peaks.copy_bytes_per_s,
        peak_source=f"{peaks.probe} on {peaks.device_name}, measured {peaks.measured_at}"
                    + ("" if peak else f"; no {precision} GEMM peak on this device"),
    )


def _check_slo(bench: BenchmarkSpec, latency: Latency, scenario: str = "") -> Slo | None:
    # LoadGen's Offline issues every sample in one query: its latencies are not per request.
    if bench.slo is None or scenario == "loadgen-offline":
        return None
    checks = []
    for key, limit in bench.slo.limits().items():
        value = getattr(latency, key.removesuffix("_ms")).value
        checks.append(SloCheck(key, limit, value, value <= limit))
    return Slo(all(c.passed for c in checks), tuple(checks))


class _CellBuilder:
    """Turns a planned cell and what its worker returned into a Cell record."""

    def __init__(self, run_dir: RunDir, models: dict[str, PreparedModel], outputs_dir: Path,
                 peaks: PeakProbes | None = None):
        self.run_dir = run_dir
        self.models = models
        self.outputs_dir = outputs_dir
        self.peaks = peaks
        self._output_names: dict[tuple[str, str, int], str] = {}

    def outputs_path(self, benchmark: str, target: str, batch_size: int) -> Path:
        key = (benchmark, target, batch_size)
        if key not in self._output_names:
            self._output_names[key] = f"outputs-{len(self._output_names):04d}.npz"
        return self.outputs_dir / self._output_names[key]

    def base(self, p: PlannedCell, status: str, reason: str = "", **kw) -> Cell:
        model = self.models.get(p.benchmark.name)
        ref = model.source if model else model_ref(p.benchmark)
        return Cell(
            id=p.id,
            benchmark=p.benchmark.name,
            model=ModelInfo(ref.display_name, ref.ref, ref.kind, model.sha256 if model else ""),
            target=TargetInfo(**{k: v for k, v in p.target.to_dict().items()}),
            batch_size=p.batch_size,
            scenario=p.scenario,
            concurrency=p.concurrency,
            status=status,
            reason=reason,
            **kw,
        )

    def agreement(self, p: PlannedCell) -> Agreement:
        ref_name = p.benchmark.reference
        tolerance = p.benchmark.tolerance_for(p.target.precision)
        if p.target.name == ref_name:
            try:
                return check_reference(load_outputs(self.outputs_path(p.benchmark.name, ref_name, p.batch_size)), ref_name)
            except (OSError, ValueError) as exc:
                return Agreement("unchecked", ref_name, reason=f"outputs unreadable: {exc}")
        ref_path = self.outputs_path(p.benchmark.name, ref_name, p.batch_size)
        if not ref_path.exists():
            return Agreement("unchecked", ref_name, tolerance=tolerance,
                             reason=f"no reference outputs: target {ref_name!r} did not run at batch {p.batch_size}")
        try:
            return compare_outputs(
                load_outputs(self.outputs_path(p.benchmark.name, p.target.name, p.batch_size)), load_outputs(ref_path), ref_name, tolerance)
        except (OSError, ValueError) as exc:
            return Agreement("unchecked", ref_name, tolerance=tolerance, reason=f"outputs unreadable: {exc}")

    def ok(self, p: PlannedCell, out: CellOutcome) -> Cell:
        # In the server scenario, early latencies are real queueing, not warm-up (that ran before).
        server_cell = out.server is not None
        # Multi-stream latencies interleave N clients: MSER's single-series view does not apply.
        # LoadGen cells keep every sample LoadGen counted, so the figures stay LoadGen's.
        cut = (stats.steady_state_cut(out.latencies_ns)
               if out.latencies_ns.size >= 20 and not server_cell and out.clients is None and out.loadgen is None
               else 0)
        kept = out.latencies_ns[cut:]
        # Calls within a chunk run back to back: the kept window is the sum of kept latencies.
        window_ns = out.window_ns if cut == 0 else int(kept.sum())
        metrics, series = cell_metrics(kept, window_ns, p.batch_size, p.benchmark.stop, p.benchmark.seed)
        latency = metrics.latency_ms
        server_info = None
        if server_cell:
            slo = p.benchmark.slo.limits() if p.benchmark.slo else {}
            tp, server_info = server_figures(out.server, p.batch_size, out.rate_qps or p.benchmark.server.qps,
                                             p.benchmark.stop.confidence, slo, latency)
            if out.probes is not None:
                peak = out.rate_qps if any(q.good for q in out.probes) else None
                server_info = replace(server_info, max_qps=peak,
                                      curve=tuple(out.probes))
            metrics = Metrics(tp, latency)
            series = None
        loadgen_info = None
        if out.loadgen is not None:
            r = out.loadgen
            loadgen_info = LoadGenInfo(r.scenario, r.valid, r.samples_per_s, r.scheduled_per_s, r.mean_ms, r.p50_ms, r.p99_ms)
        clients_info = None
        if out.clients is not None:
            series = None  # clients run side by side: one series over their concatenation would be wrong
            window_s = out.window_ns / 1e9
            clients_info = ClientsInfo(
                p.concurrency,
                tuple(c.size * p.batch_size / window_s for c in out.clients),
                tuple(float(np.percentile(c, 99)) / 1e6 if c.size else 0.0 for c in out.clients),
            )
        samples = self.run_dir.write_samples(p.index, kept)
        info = out.backend_info
        cell = self.base(
            p, "ok",
            metrics=metrics,
            throughput_series=series,
            server=server_info,
            clients=clients_info,
            loadgen=loadgen_info,
            memory=Memory(out.peak_rss_bytes, out.gpu_peak[0] if out.gpu_peak else None,
                          out.gpu_peak[1] if out.gpu_peak else ""),
            gpu=out.gpu,
            timing_boundary=out.timing_boundary,
            compile_s=info.get("compile_s"),
            capture_s=info.get("capture_s"),
            roofline=roofline(self.models.get(p.benchmark.name), metrics.throughput.value, p.target.precision,
                              self.peaks.get(p.target.device) if self.peaks and p.target.is_cuda else None),
            agreement=self.agreement(p),
            warmup=Warmup(
                iterations=int(out.warmup_latencies_ns.size) + cut,
                seconds=out.warmup_seconds + float(out.latencies_ns[:cut].sum()) / 1e9,
                rule=f"fixed minimum of {p.benchmark.stop.warmup_iterations} iterations and "
                     f"{p.benchmark.stop.warmup_seconds:g} s, then MSER-5 on the measured series, a cut of "
                     f"over 1% kept only if the dropped part is slower (Mann-Whitney p < 0.01): dropped {cut} more",
                steady_state_cut=cut,
            ),
            duration_s=window_ns / 1e9,
            load_s=out.load_seconds,
            stop_reason=out.stop_reason,
            inputs_sha256=out.inputs_sha256,
            samples_file=samples,
            slo=_check_slo(p.benchmark, latency, p.scenario),
        )
        if out.gpu is None and out.gpu_telemetry_note:
            cell = replace(cell, reason=f"no GPU telemetry: {out.gpu_telemetry_note}")
        providers = info.get("providers")
        details = {k: v for k, v in info.items() if k not in ("providers", "runtime", "compile_s", "capture_s")
                   and isinstance(v, (str, int, float, bool, list, type(None)))}
        target = TargetInfo(
            **{**cell.target.__dict__, "providers": tuple(providers) if providers else None,
               "runtime": info.get("runtime"), "details": details}
        )
        return Cell(**{**cell.__dict__, "target": target})

    def failed(self, p: PlannedCell, failure: WorkerFailure) -> Cell:
        return self.base(p, "failed", failure.reason, stderr_tail=failure.stderr_tail or None)


def _device_problem(target: TargetSpec, count: int, note: str) -> str | None:
    """Why this machine cannot run a cuda target at all, before a worker is spawned."""
    from bench.backends.cuda_device import check_index
    from bench.errors import CellFailure

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
) -> SuiteResult:
    from bench import __version__

    cells = plan(suite, only)
    stats.warm_kernels()  # compile (or load) every kernel once here, so workers only load the cache
    gpu_count, gpu_note = visible_device_count() if any(c.target.is_cuda for c in cells) else (0, "")
    cuda = gpu_count > 0
    models = prepare_models(cells, cuda)
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
        builder = _CellBuilder(run_dir, models, Path(tmp), peaks)
        try:
            slo_broke: dict[tuple[str, str, int], int] = {}  # multi-stream sweep: where the SLO broke
            oom_at: dict[tuple[str, str, str], int] = {}  # batch sweep: the smallest batch out of memory
            for p in cells:
                progress(Progress(p.index, len(cells), p, None))
                sweep = (p.benchmark.name, p.target.name, p.batch_size)
                batch_sweep = (p.benchmark.name, p.target.name, p.scenario)
                device_problem = _device_problem(p.target, gpu_count, gpu_note) if p.target.is_cuda else None
                if p.target.is_cuda and not cuda:
                    cell = builder.base(p, "skipped", device_problem or "no CUDA device")
                elif device_problem:
                    cell = builder.base(p, "failed", device_problem)
                elif batch_sweep in oom_at and p.batch_size > oom_at[batch_sweep]:
                    cell = builder.base(p, "skipped", f"sweep stopped: {OUT_OF_MEMORY} {oom_at[batch_sweep]}")
                elif p.scenario == "multi-stream" and sweep in slo_broke and p.concurrency > slo_broke[sweep]:
                    cell = builder.base(p, "skipped", f"sweep stopped: the SLO broke at concurrency {slo_broke[sweep]}")
                else:
                    if p.target.is_cuda:
                        peaks.ensure(p.target.device)
                    job = CellJob(
                        index=p.index, cell_id=p.id, benchmark=p.benchmark.name, model=models[p.benchmark.name],
                        target=p.target, batch_size=p.batch_size, scenario=p.scenario, stop=p.benchmark.stop,
                        seed=p.benchmark.seed, outputs_path=str(builder.outputs_path(p.benchmark.name, p.target.name, p.batch_size)),
                        server=p.benchmark.server, concurrency=p.concurrency,
                        slo_limits=tuple(p.benchmark.slo.limits().items()) if p.benchmark.slo else (),
                    )
                    busy = (p.benchmark.server.duration_s if p.scenario in ("server", "loadgen-server")
                            and p.benchmark.server else 0.0)
                    timeout = (max(p.benchmark.stop.max_seconds, busy) * 2 + p.benchmark.stop.warmup_seconds
                               + LOAD_ALLOWANCE_S)
                    stderr_path = Path(tmp) / f"worker-{p.index:04d}.stderr"
                    outcome = run_in_worker(job, stderr_path, timeout)
                    stderr_path.unlink(missing_ok=True)
                    if isinstance(outcome, WorkerFailure):
                        cell = builder.failed(p, outcome)
                        if outcome.reason.startswith(OUT_OF_MEMORY):
                            oom_at[batch_sweep] = min(oom_at.get(batch_sweep, p.batch_size), p.batch_size)
                    else:
                        cell = builder.ok(p, outcome)
                        if p.scenario == "multi-stream" and cell.slo is not None and not cell.slo.passed:
                            slo_broke[sweep] = min(slo_broke.get(sweep, p.concurrency), p.concurrency)
                done.append(cell)
                run = Run(**{**run.__dict__, "cells": tuple(done)})
                run_dir.write_run(run)
                progress(Progress(p.index, len(cells), p, cell))
        except KeyboardInterrupt:
            interrupted = True
        except BaseException:
            # A bug or an unexpected error in the parent: keep what was measured, then let it surface.
            run_dir.write_run(Run(**{**run.__dict__, "cells": tuple(done), "status": "interrupted",
                                     "finished_at": utc_now_iso()}))
            raise
    run = Run(**{**run.__dict__, "cells": tuple(done), "status": "interrupted" if interrupted else "complete",
                 "finished_at": utc_now_iso()})
    path = run_dir.write_run(run)
    return SuiteResult(run, path, interrupted)

