"""From a planned cell and what its worker returned to the Cell record run.json keeps.

The scenario computes its figures (bench.scenarios.base.Scenario.figures); this module adds what
every cell has: identity, model and target, memory, GPU telemetry, roofline, agreement with the
reference target's outputs, warm-up and the raw samples file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.analysis.agreement import check_reference, compare_outputs, load_outputs
from bench.models.loader import ModelRef, PreparedModel, classify
from bench.results.files import RunDir
from bench.results.records import Agreement, Cell, Memory, ModelInfo, Roofline, TargetInfo, Warmup
from bench.runner.isolation import WorkerFailure
from bench.runner.plan import PlannedCell
from bench.runner.unit import UnitOutcome


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
    return ModelRef(bench.model, classify(bench.model), bench.model_args, bench.dims, bench.seed, bench.trust_model)


def roofline(model: PreparedModel | None, throughput: float, precision: str, peaks: Any) -> Roofline | None:
    """FLOPs per sample x throughput, against the device's probed peak at this precision
    (`peaks`: bench.measure.peaks.DevicePeaks, or the reason there is none, or None off a GPU)."""
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


class CellBuilder:
    """Turns a planned cell and what its worker returned into a Cell record."""

    def __init__(self, run_dir: RunDir, models: dict[str, PreparedModel], outputs_dir: Path, peaks: Any = None):
        self.run_dir = run_dir
        self.models = models
        self.outputs_dir = outputs_dir
        self.peaks = peaks  # bench.runner.probes.PeakProbes
        self._output_names: dict[tuple[str, str, int], str] = {}

    def outputs_path(self, benchmark: str, target: str, batch_size: int) -> Path:
        key = (benchmark, target, batch_size)
        if key not in self._output_names:
            self._output_names[key] = f"outputs-{len(self._output_names):04d}.npz"
        return self.outputs_dir / self._output_names[key]

    def base(self, p: PlannedCell, status: str, reason: str = "", **kw: Any) -> Cell:
        model = self.models.get(p.benchmark.name)
        ref = model.source if model else model_ref(p.benchmark)
        k = p.key
        kw.setdefault("target", TargetInfo(**p.target.to_dict()))
        return Cell(
            id=k.id, benchmark=k.benchmark,
            model=ModelInfo(ref.display_name, ref.ref, ref.kind, model.sha256 if model else ""),
            batch_size=k.batch_size, scenario=k.scenario, concurrency=k.concurrency,
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
        ref_path = self.outputs_path(p.benchmark.name, ref_name, p.key.batch_size)
        if p.target.name == ref_name:
            try:
                return check_reference(load_outputs(ref_path), ref_name)
            except (OSError, ValueError) as exc:
                return Agreement("unchecked", ref_name, reason=f"outputs unreadable: {exc}")
        if not ref_path.exists():
            return Agreement("unchecked", ref_name, tolerance=tolerance,
                             reason=f"no reference outputs: target {ref_name!r} did not run at batch {p.key.batch_size}")
        try:
            own = load_outputs(self.outputs_path(p.benchmark.name, p.target.name, p.key.batch_size))
            return compare_outputs(own, load_outputs(ref_path), ref_name, tolerance)
        except (OSError, ValueError) as exc:
            return Agreement("unchecked", ref_name, tolerance=tolerance, reason=f"outputs unreadable: {exc}")

    def ok(self, p: PlannedCell, out: UnitOutcome) -> Cell:
        bench, run = p.benchmark, out.run
        figures = p.scenario.figures(run, bench, p.key)
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
            roofline=roofline(self.models.get(bench.name), figures.metrics.throughput.value, p.target.precision, peaks),
            agreement=self.agreement(p),
            warmup=Warmup(
                iterations=int(run.warmup_latencies_ns.size) + cut,
                seconds=run.warmup_seconds + float(run.latencies_ns[:cut].sum()) / 1e9,
                rule=f"fixed minimum of {bench.stop.warmup_iterations} iterations and "
                     f"{bench.stop.warmup_seconds:g} s, then MSER-5 on the measured series, a cut of "
                     f"over 1% kept only if the dropped part is slower (Mann-Whitney p < 0.01): dropped {cut} more",
                steady_state_cut=cut,
            ),
            duration_s=figures.window_ns / 1e9,
            load_s=out.load_seconds,
            stop_reason=run.stop_reason,
            inputs_sha256=out.inputs_sha256,
            samples_file=self.run_dir.write_samples(p.index, figures.kept_ns),
            slo=figures.slo,
            **figures.records,
        )
        return cell
