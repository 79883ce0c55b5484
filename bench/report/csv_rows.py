"""One flat row per cell, for spreadsheets: `bench report RUN... --csv FILE` (reads results only).

Column names are stable and carry their units (`_ms`, `_per_s`, `_bytes`, `_s`, `_j`, `_w`);
an estimate's interval bounds sit beside it (`p99_ms`, `p99_ms_ci_low`, `p99_ms_ci_high`). A
figure a cell does not have is an empty field, never 0. Floats are written as Python's repr, which
reads back to the same float; the named dimensions follow the fixed columns, one `dim_NAME`
column per name any of the runs uses (their union, sorted).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from bench.report.run_tables import stop_word
from bench.results.records import Cell, Estimate, Run

_LATENCY = ("mean", "p50", "p90", "p95", "p99", "p999", "min", "max")


def _estimate_columns(name: str) -> tuple[str, ...]:
    return name, f"{name}_ci_low", f"{name}_ci_high"


COLUMNS: tuple[str, ...] = (
    "run_id", "cell_id", "benchmark", "model", "model_sha256", "target", "backend", "device", "precision",
    "runtime", "providers", "target_knobs", "batch_size", "dims", "scenario", "concurrency", "node",
    "status", "reason", "failure_kind", "timing_boundary",
    *_estimate_columns("throughput_per_s"), "throughput_unit",
    *(c for f in _LATENCY for c in _estimate_columns(f"{f}_ms")), "latency_n", "confidence",
    "peak_rss_bytes", "gpu_peak_bytes", "gpu_utilization_pct", "gpu_power_w", "energy_per_sample_j", "gpu_throttled",
    "agreement", "agreement_max_abs_error", "agreement_max_rel_error",
    # accuracy against the reference on the accuracy samples: the headline figure (top-1 agreement,
    # cosine, mean relative error, token agreement) with its interval, and the loss a tolerance bounds
    "accuracy_metric", "accuracy_value", "accuracy_ci_low", "accuracy_ci_high", "accuracy_loss",
    "accuracy_loss_ci_low", "accuracy_loss_ci_high", "accuracy_samples", "slo_passed",
    "repetitions", "repetitions_used", "interfered", "unstable", "stop", "stop_reason", "duration_s",
    # one-off costs: per process before its first timed call, and per model once per run
    "load_s", "compile_s", "capture_s", "model_prepare_s", "model_export_s", "model_quantize_s",
)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _estimate(name: str, e: Estimate | None) -> dict[str, object]:
    return dict(zip(_estimate_columns(name), (None, None, None) if e is None else (e.value, e.ci_low, e.ci_high)))


def cell_row(run: Run, c: Cell) -> dict[str, str]:
    """The cell as a flat dict of text, keyed by COLUMNS (and dim_NAME for its dimensions)."""
    m, t = c.metrics, c.target
    lat = m.latency_ms if m is not None else None
    tp = m.throughput if m is not None else None
    gpu = c.gpu
    acc = c.agreement.accuracy if c.agreement else None
    head = acc.figures[0] if acc is not None and acc.figures else None
    row: dict[str, object] = {
        "run_id": run.run_id, "cell_id": c.id, "benchmark": c.benchmark, "model": c.model.name,
        "model_sha256": c.model.sha256, "target": t.name, "backend": t.backend, "device": t.device,
        "precision": t.precision, "runtime": t.runtime, "providers": " ".join(t.providers or ()) or None,
        "target_knobs": json.dumps(t.knobs, sort_keys=True) if t.knobs else None, "batch_size": c.batch_size,
        "dims": c.key.dims_label or None, "scenario": c.scenario, "concurrency": c.concurrency, "node": c.node,
        "status": c.status, "reason": c.reason or None, "failure_kind": c.failure_kind,
        "timing_boundary": c.timing_boundary,
        **_estimate("throughput_per_s", None if tp is None else Estimate(tp.value, tp.ci_low, tp.ci_high)),
        "throughput_unit": None if tp is None else tp.unit,
        **{k: v for f in _LATENCY for k, v in _estimate(f"{f}_ms", None if lat is None else getattr(lat, f)).items()},
        "latency_n": None if lat is None else lat.n, "confidence": None if lat is None else lat.confidence,
        "peak_rss_bytes": c.memory.peak_rss_bytes if c.memory else None,
        "gpu_peak_bytes": c.memory.gpu_peak_bytes if c.memory else None,
        "gpu_utilization_pct": gpu.utilization_mean_pct if gpu else None, "gpu_power_w": gpu.power_mean_w if gpu else None,
        "energy_per_sample_j": gpu.energy_per_sample_j if gpu else None, "gpu_throttled": gpu.throttled if gpu else None,
        "agreement": c.agreement.verdict if c.agreement else None,
        "agreement_max_abs_error": c.agreement.max_abs_error if c.agreement else None,
        "agreement_max_rel_error": c.agreement.max_rel_error if c.agreement else None,
        "accuracy_metric": acc.metric if acc else None, "accuracy_value": head.value if head else None,
        "accuracy_ci_low": head.ci_low if head else None, "accuracy_ci_high": head.ci_high if head else None,
        "accuracy_loss": acc.loss if acc else None, "accuracy_loss_ci_low": acc.loss_ci_low if acc else None,
        "accuracy_loss_ci_high": acc.loss_ci_high if acc else None, "accuracy_samples": acc.samples if acc else None,
        "slo_passed": c.slo.passed if c.slo else None,
        "repetitions": len(c.repetitions) if c.repetitions else None,
        "repetitions_used": len(c.used_repetitions) if c.repetitions else None,
        "interfered": any(r.interfered for r in c.repetitions) if c.repetitions else None,
        "unstable": c.unstable, "stop": stop_word(c.stop_reason, c) if c.status == "ok" else None,
        "stop_reason": c.stop_reason, "duration_s": c.duration_s,
        "load_s": c.load_s, "compile_s": c.compile_s, "capture_s": c.capture_s,
        "model_prepare_s": c.model.prepare_s, "model_export_s": c.model.export_s,
        "model_quantize_s": c.model.quantize_s,
    }
    row.update({f"dim_{name}": size for name, size in c.key.dims})
    return {k: _text(v) for k, v in row.items()}


def columns_for(runs: Sequence[Run]) -> tuple[str, ...]:
    dims = sorted({name for r in runs for c in r.cells for name in c.dims})
    return (*COLUMNS, *(f"dim_{name}" for name in dims))


def rows(runs: Iterable[Run]) -> list[dict[str, str]]:
    """Every cell of every run, in the runs' order and each run's cell order."""
    return [cell_row(r, c) for r in runs for c in r.cells]
