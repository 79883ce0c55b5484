"""From a planned cell and what its worker returned to the Cell record run.json keeps.

The scenario computes its figures (bench.scenarios.base.Scenario.figures); this module adds what
every cell has: identity, model and target, memory, GPU telemetry, roofline, agreement with the
reference target's outputs, warm-up and the raw samples file.
"""
from __future__ import annotations

import math
import os

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.agreement import check_reference, load_accuracy_outputs, load_outputs, with_accuracy
from bench.models.loader import ModelRef, PreparedModel, classify
from bench.results.files import RunDir
from bench.results.records import Agreement, Cell, Memory, ModelInfo, Repetition, Roofline, TargetInfo, Warmup
from bench.runner.isolation import WorkerFailure
from bench.runner.plan import PlannedCell
from bench.runner.unit import UnitOutcome
from bench.scenarios.base import Figures


@dataclass(frozen=True)
class RepResult:
    """One repetition of a cell as the parent holds it until the cell is assembled."""

    index: int
    outcome: UnitOutcome | WorkerFailure
    figures: Figures | None = None  # the scenario's figures of an ok repetition
    node: str | None = None  # the fleet node (Node.id) whose worker ran it; None: this machine

    @property
    def ok(self) -> bool:
        return not isinstance(self.outcome, WorkerFailure)

    def interfered(self, limit: float) -> bool:
        """Other processes took more than `limit` of the CPU, or computed on the cell's GPU."""
        if not self.ok:
            return False
        shares, gpu = self.outcome.cpu_shares, self.outcome.gpu
        if getattr(self.outcome.run, "requests", None) is not None:
            # A served target: the server it measures is "another process" (on loopback, on this
            # CPU) by design, so the CPU others took is recorded, not held against the figures.
            shares = None
        return (shares is not None and shares.total > limit) or (gpu is not None and gpu.other_processes > 0)

    def interference(self) -> str:
        shares, gpu = self.outcome.cpu_shares, self.outcome.gpu
        parts = []
        if shares is not None:
            parts.append(f"other processes took {shares.total:.0%} of the CPU")
        if gpu is not None and gpu.other_processes:
            parts.append(f"{gpu.other_processes} other process(es) computed on the GPU")
        return " and ".join(parts)


def home_node(reps: list[RepResult]) -> str | None:
    """The node of a cell's latest finished repetition, where the runner keeps it (None locally,
    and before any repetition finished)."""
    return next((r.node for r in reversed(reps) if r.ok), None)


def _rep_record(r: RepResult, used: bool, limit: float, why_left_out: str = "") -> Repetition:
    if not r.ok:
        f = r.outcome
        return Repetition(r.index, "failed", f.reason, failure_kind=f.kind, node=r.node)
    out, fig = r.outcome, r.figures
    lat, shares = fig.metrics.latency_ms, out.cpu_shares
    return Repetition(
        r.index, "ok", why_left_out, used=used, throughput=fig.metrics.throughput.value,
        mean_ms=lat.mean.value, p50_ms=lat.p50.value, p90_ms=lat.p90.value, p95_ms=lat.p95.value,
        p99_ms=lat.p99.value, p999_ms=lat.p999.value, n=int(fig.kept_ns.size), steady_state_cut=fig.steady_state_cut,
        window_s=fig.window_ns / 1e9, stop_reason=out.run.stop_reason, peak_rss_bytes=out.peak_rss_bytes,
        others_cpu_share=None if shares is None else shares.others_share,
        steal_share=None if shares is None else shares.steal_share,
        interfered=r.interfered(limit), node=r.node,
    )


def json_details(details: dict[str, Any]) -> dict[str, Any]:
    """What a backend reported beyond its knobs, as run.json can hold it: JSON scalars and lists
    of them (numpy scalars as their Python value); anything else is left out."""
    def plain(v: Any) -> Any:
        if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", None) == 0:
            v = v.item()  # a numpy scalar
        return v if v is None or isinstance(v, (str, int, float, bool)) else _DROP

    out = {}
    for key, value in details.items():
        if isinstance(value, (list, tuple)):
            items = [plain(v) for v in value]
            if all(v is not _DROP for v in items):
                out[str(key)] = items
        elif (v := plain(value)) is not _DROP:
            out[str(key)] = v
    return out


_DROP = object()


def model_ref(bench) -> ModelRef:
    """The benchmark's model; a file model's path resolved against the suite's directory."""
    import os

    kind = classify(bench.model)
    ref = os.path.abspath(os.path.join(bench.base_dir, bench.model)) if kind in ("onnx", "pt2") else bench.model
    return ModelRef(ref, kind, bench.model_args, bench.dims, bench.seed, bench.trust_model, inputs=bench.inputs,
                    input_file=bench.input_file, base_dir=bench.base_dir, written=bench.model)


def roofline(model: PreparedModel | None, throughput: float, precision: str, peaks: Any,
             dims: tuple[tuple[str, int], ...] = ()) -> Roofline | None:
    """FLOPs per sample (at the cell's dims) x throughput, against the device's probed peak at this
    precision (`peaks`: bench.measure.peaks.DevicePeaks, or the reason there is none, or None off a GPU)."""
    flops = model.flops_at(dims) if model is not None else None
    if model is None or flops is None:
        return None
    achieved = flops * throughput
    if peaks is None or isinstance(peaks, str):
        return Roofline(flops, model.flops_source, achieved,
                        peak_source=peaks or "no peak: not a GPU target")
    peak = peaks.flops_for(precision)
    return Roofline(
        flops, model.flops_source, achieved,
        peak_flops_per_s=peak,
        fraction_of_peak=achieved / peak if peak else None,
        peak_copy_bytes_per_s=peaks.copy_bytes_per_s,
        peak_source=f"{peaks.probe} on {peaks.device_name}, measured {peaks.measured_at}"
                    + ("" if peak else f"; no {precision} GEMM peak on this device"),
    )


class CellBuilder:
    """Turns a planned cell and what its worker returned into a Cell record."""

    def __init__(self, run_dir: RunDir, models: dict[str, PreparedModel], outputs_dir: Path, peaks: Any = None):
        self.run_dir = run_dir
        self.models = models
        self.outputs_dir = outputs_dir
        self.peaks = peaks  # bench.runner.probes.PeakProbes
        self._output_names: dict[tuple, str] = {}

    def outputs_path(self, benchmark: str, target: str, batch_size: int, dims: tuple = ()) -> Path:
        key = (benchmark, target, batch_size, dims)
        if key not in self._output_names:
            self._output_names[key] = f"outputs-{len(self._output_names):04d}.npz"
        return self.outputs_dir / self._output_names[key]

    def base(self, p: PlannedCell, status: str, reason: str = "", **kw: Any) -> Cell:
        model = self.models.get(p.benchmark.name)
        ref = model.source if model else model_ref(p.benchmark)
        k = p.key
        kw.setdefault("target", TargetInfo(**p.target.to_dict()))
        quantized = model.quantized_form(p.target.model_form) if model else None
        return Cell(
            id=k.id, benchmark=k.benchmark,
            model=ModelInfo(ref.display_name, ref.ref, ref.kind, model.sha256 if model else "",
                            model.prepare_s if model else None, model.export_s if model else None,
                            quantized.seconds if quantized is not None else None),
            batch_size=k.batch_size, scenario=k.scenario, concurrency=k.concurrency, dims=dict(k.dims),
            status=status, reason=reason, **kw,
        )

    def skipped(self, p: PlannedCell, reason: str) -> Cell:
        return self.base(p, "skipped", reason)

    def failed(self, p: PlannedCell, failure: WorkerFailure) -> Cell:
        return self.base(p, "failed", failure.reason, failure_kind=failure.kind,
                         stderr_tail=failure.stderr_tail or None)

    def agreement(self, p: PlannedCell) -> Agreement:
        ref_name = p.benchmark.reference
        tolerance = p.benchmark.tolerance_for(p.target.precision)
        ref_path = self.outputs_path(p.benchmark.name, ref_name, p.key.batch_size, p.key.dims)
        if p.target.name == ref_name:
            try:
                return check_reference(load_outputs(ref_path), ref_name)
            except (OSError, ValueError) as exc:
                return Agreement("unchecked", ref_name, reason=f"outputs unreadable: {exc}")
        if not ref_path.exists():
            return Agreement("unchecked", ref_name, tolerance=tolerance,
                             reason=f"no reference outputs: target {ref_name!r} did not run at batch {p.key.batch_size}"
                                    + (f", {p.key.dims_label}" if p.key.dims else ""))
        own_path = self.outputs_path(p.benchmark.name, p.target.name, p.key.batch_size, p.key.dims)
        try:
            # int8 is judged by its accuracy loss: its element-wise error is large by design, so the
            # element-wise check only refuses NaN, infinity and a wrong shape there
            int8 = p.target.is_int8
            agreement = p.scenario.compare_outputs(load_outputs(own_path), load_outputs(ref_path), ref_name,
                                                   math.inf if int8 else tolerance, p.target.precision)
            own_acc, ref_acc = load_accuracy_outputs(own_path), load_accuracy_outputs(ref_path)
            return with_accuracy(agreement, own_acc, ref_acc, int8, p.benchmark.accuracy.metric,
                                 _model_kind(p.benchmark.model), tolerance)
        except (OSError, ValueError) as exc:
            return Agreement("unchecked", ref_name, tolerance=tolerance, reason=f"outputs unreadable: {exc}")

    def cell(self, p: PlannedCell, reps: list[RepResult], precision_note: str = "", interrupted: bool = False,
             prior: dict | None = None) -> Cell:
        """The cell from its repetitions: failed when fewer than min(2, repeats) finished (one,
        when the run was interrupted: what was measured is kept), else its figures merged over
        the used ones (bench.analysis.repetitions)."""
        from bench.analysis import slo as slos
        from bench.analysis.repetitions import merge, pick_used

        stop = p.benchmark.stop
        ok = [r for r in reps if r.ok]
        # A fleet cell's figures come from one machine: the node it ended on (repetitions measured
        # on a node lost before are kept in the record, not in the figures).
        home = home_node(ok)
        moved = {r.index: f"measured on node {r.node}, not the cell's node {home}: figures of two machines "
                          "are not mixed" for r in ok if r.node != home}
        ok = [r for r in ok if r.index not in moved]
        failed = [r for r in reps if not r.ok]
        fail_note = ""
        if failed:
            first = failed[0].outcome
            fail_note = f"{len(failed)} of {len(reps)} repetitions failed (first: {first.reason})"
        if len(ok) < (1 if interrupted else min(2, stop.repeats)):
            if not failed and not moved:
                return self.base(p, "failed", "no repetition ran", failure_kind="error")
            if not failed:
                records = tuple(_rep_record(r, False, stop.max_interference, moved.get(r.index, "")) for r in reps)
                return self.base(p, "failed", f"fewer than {min(2, stop.repeats)} repetitions on one node (its node was "
                                 "lost)", failure_kind="crash", repetitions=records, node=home)
            first = failed[0].outcome
            reason = first.reason if len(reps) == 1 else f"{fail_note}; fewer than 2 finished"
            records = tuple(_rep_record(r, False, stop.max_interference) for r in reps)
            return self.base(p, "failed", reason, failure_kind=first.kind,
                             stderr_tail=first.stderr_tail or None, repetitions=records,
                             node=home or next((r.node for r in failed if r.node), None))
        used = dict(zip((r.index for r in ok), pick_used([r.interfered(stop.max_interference) for r in ok])))
        left_out = [r for r in ok if not used[r.index]]
        records = tuple(
            _rep_record(r, used.get(r.index, False), stop.max_interference,
                        moved.get(r.index) or (f"left out as interfered: {r.interference()} (CPU limit "
                                               f"{stop.max_interference:.0%})" if r.ok and not used[r.index] else ""))
            for r in reps)
        chosen = [r for r in ok if used[r.index]]
        merged = merge([r.figures.metrics for r in chosen], [r.figures.kept_ns for r in chosen], stop.confidence, prior)
        # The scenario's own records, series, telemetry and warm-up come from the repetition
        # whose throughput is the median: one process's view, representative of the others.
        order = sorted(chosen, key=lambda r: r.figures.metrics.throughput.value)
        rep = order[(len(order) - 1) // 2]
        short = ""
        if len(chosen) < stop.repeats:
            why = [w for w, n in (("interrupted", interrupted), (f"{len(failed)} failed", failed),
                                  (f"{len(left_out)} left out as interfered", left_out),
                                  (f"{len(moved)} on another node", moved)) if n]
            short = (f", fewer than the {stop.repeats} its rule asks for ({', '.join(why) or 'not run'}): its "
                     + ("interval is as wide as that count supports" if len(chosen) >= 2 else "one process gives no "
                        "re-run interval"))
        notes = [f"{len(chosen)} of {len(reps)} repetitions in the figures (each a worker process, in "
                 f"interleaved rounds){short}; per process: {rep.outcome.run.stop_reason}"]
        if precision_note:
            notes.append(precision_note)
        if left_out:
            notes.append(f"{len(left_out)} left out as interfered (other processes above "
                         f"{stop.max_interference:.0%} of the CPU, or on the GPU)")
        interfered_used = [r for r in chosen if r.interfered(stop.max_interference)]
        if interfered_used:
            notes.append(f"{len(interfered_used)} used although interfered: fewer than 2 clean repetitions")
        if fail_note:
            notes.append(fail_note)
        slo = rep.figures.slo
        if slo is not None:
            slo = slos.of_latency(p.benchmark.slo_limits(), merged.metrics.latency_ms) or slo
        own = p.scenario.merge_records([r.figures for r in chosen], rep.figures, stop.confidence, prior)
        slo = p.scenario.merged_slo(p.benchmark, [r.figures for r in chosen], own, slo)
        figures = Figures(merged.metrics, np.concatenate([r.figures.kept_ns for r in chosen]),
                          rep.figures.window_ns, rep.figures.steady_state_cut, rep.figures.series, slo, own)
        cell = self.ok(p, rep.outcome, figures)
        reason = cell.reason
        if interfered_used:
            reason = (reason + "; " if reason else "") + "measured under interference from other processes"
        if moved:
            notes.append(f"{len(moved)} measured on another node, left out")
        return replace(cell, reason=reason, stop_reason="; ".join(notes), repetitions=records, node=home,
                       variance=merged.variance, unstable=_with_thread_hint(merged.unstable, cell),
                       memory=replace(cell.memory, peak_rss_bytes=max(r.outcome.peak_rss_bytes for r in chosen)),
                       load_s=float(np.median([r.outcome.load_seconds for r in chosen])))

    def ok(self, p: PlannedCell, out: UnitOutcome, figures: Figures | None = None) -> Cell:
        bench, run = p.benchmark, out.run
        figures = figures if figures is not None else p.scenario.figures(run, bench, p.key)
        cut = figures.steady_state_cut
        setup = dict(out.setup_s)
        peaks = self.peaks.get(p.target.device) if self.peaks is not None and p.target.is_cuda else None
        info = out.info
        cell = self.base(
            p, "ok",
            reason="" if out.gpu is not None or not out.gpu_telemetry_note else f"no GPU telemetry: {out.gpu_telemetry_note}",
            target=TargetInfo(**p.target.to_dict(), providers=info.providers, runtime=info.runtime,
                              details=json_details(info.details)),
            metrics=figures.metrics,
            throughput_series=figures.series,
            memory=Memory(out.peak_rss_bytes, out.gpu_peak[0] if out.gpu_peak else None,
                          out.gpu_peak[1] if out.gpu_peak else ""),
            gpu=out.gpu,
            timing_boundary=out.timing_boundary,
            compile_s=setup.get("compile"),
            capture_s=setup.get("capture"),
            roofline=roofline(self.models.get(bench.name), figures.metrics.throughput.value, p.target.precision, peaks,
                              p.key.dims)
            if p.scenario.has_roofline else None,
            agreement=self.agreement(p),
            warmup=Warmup(
                iterations=int(run.warmup_latencies_ns.size) + cut,
                seconds=run.warmup_seconds + float(run.latencies_ns[:cut].sum()) / 1e9,
                rule=p.scenario.warmup_rule(bench) or (
                     f"fixed minimum of {bench.stop.warmup_iterations} iterations and "
                     f"{bench.stop.warmup_seconds:g} s, then MSER-5 on the measured series, a cut of "
                     f"over 1% kept only if the dropped part is slower (Mann-Whitney p < 0.01) and only as far as "
                     f"its leading stretches are slower than twice the between-stretch noise: dropped {cut} more "
                     f"(in the median repetition; each repetition's cut is in repetitions[])"),
                steady_state_cut=cut,
            ),
            duration_s=figures.window_ns / 1e9,
            load_s=out.load_seconds,
            stop_reason=run.stop_reason,
            inputs_sha256=out.inputs_sha256,
            inputs=out.inputs,
            samples_file=self.run_dir.write_samples(p.index, figures.kept_ns),
            slo=figures.slo,
            **figures.records,
        )
        return cell


def _with_thread_hint(unstable: str | None, cell: Cell) -> str | None:
    """An unstable cell whose compute threads take every core the worker may use gets the likely
    cause said: a parallel section waits for its slowest thread, so whenever the hypervisor or the
    harness takes one core for a moment the whole call stalls (measured on a 2-core VM: a 15-30%
    spread between processes at 2 threads, 2-7% at 1)."""
    threads = cell.target.details.get("compute_threads") if cell.target.details else None
    cores = len(os.sched_getaffinity(0))
    if unstable is None or not isinstance(threads, int) or threads < cores:
        return unstable
    return (f"{unstable}; its {threads} compute threads take all {cores} cores, leaving none to the harness "
            "or the machine: set fewer threads on the target")


def _model_kind(model: str) -> str:
    """The accuracy metric a zoo model declares for its output ("" for any other model)."""
    if not model.startswith("zoo:"):
        return ""
    from bench.models.zoo import ZOO

    entry = ZOO.get(model.removeprefix("zoo:"))
    return getattr(entry, "output_kind", "") if entry is not None else ""
