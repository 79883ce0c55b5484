"""Runs exported to MLflow: one MLflow run per bench run, a nested MLflow run per cell.

The bench run's MLflow run carries the environment fingerprint as tags (host, OS, CPU, GPUs,
Python, the harness commit, runtime versions) and run.json (and any HTML report in the run
directory) as artifacts. Each cell's nested run carries its target's knobs, batch, scenario and
model as params, its figures and their interval bounds as metrics (`throughput`,
`throughput_ci_low`, `p99_ms`, ...), and its status, stop reason and agreement as tags. A run
whose export fails part-way is deleted from the store again: nothing is left half written.

Only through MLflow's own client (mlflow-skinny, the `mlflow` extra); a URI's password is never
printed (bench.results.stores.redact).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.results.records import Cell, Run

MAX_PARAM_CHARS = 500  # MLflow's limit on a param value in older servers
MAX_TAG_CHARS = 5000


def _client(uri: str | None):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UsageError("bench export mlflow needs MLflow's client: pip install 'bench-harness[mlflow]' "
                         "(mlflow-skinny; SQLite or PostgreSQL stores also need sqlalchemy and alembic)") from None
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines ("Creating initial tables") are not ours
    # Fail fast on a server that does not answer, instead of MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    return MlflowClient(tracking_uri=uri)


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif value is not None:
        out[prefix] = str(value)[:MAX_PARAM_CHARS]


def environment_tags(run: Run) -> dict[str, str]:
    e = run.environment
    tags = {
        "bench.run_id": run.run_id, "bench.suite": run.suite.name, "bench.suite_sha256": run.suite.sha256,
        "bench.status": run.status, "bench.created_at": run.created_at, "bench.harness_version": run.harness_version,
        "env.host": e.host, "env.os": e.os, "env.kernel": e.kernel, "env.machine": e.machine, "env.cpu_model": e.cpu_model,
        "env.cpu_cores_logical": str(e.cpu_cores_logical), "env.memory_total_bytes": str(e.memory_total_bytes),
        "env.python": e.python, "env.harness_commit": e.harness_commit or "unknown",
        "env.harness_dirty": str(e.harness_dirty), "env.gpus": "; ".join(f"{g.name} (driver {g.driver})" for g in e.gpus)
        or (e.gpu_note or "none"),
    }
    for name, version in e.packages.items():
        if version:
            tags[f"env.package.{name}"] = version
    return {k: v[:MAX_TAG_CHARS] for k, v in tags.items()}


def cell_params(cell: Cell) -> dict[str, str]:
    out: dict[str, str] = {}
    _flat("", {"benchmark": cell.benchmark, "model": cell.model.ref, "model_sha256": cell.model.sha256,
               "batch_size": cell.batch_size, "scenario": cell.scenario, "concurrency": cell.concurrency,
               "target": cell.target.name, "backend": cell.target.backend, "device": cell.target.device,
               "precision": cell.target.precision, "knobs": cell.target.knobs}, out)
    return out


def cell_metrics(cell: Cell) -> dict[str, float]:
    out: dict[str, float] = {}
    m = cell.metrics
    if m is None:
        return out

    def put(name: str, value: float | None, low: float | None = None, high: float | None = None) -> None:
        if value is not None:
            out[name] = float(value)
        if low is not None:
            out[f"{name}_ci_low"] = float(low)
        if high is not None:
            out[f"{name}_ci_high"] = float(high)

    put("throughput", m.throughput.value, m.throughput.ci_low, m.throughput.ci_high)
    lat = m.latency_ms
    for q in ("mean", "p50", "p90", "p95", "p99", "p999"):
        e = getattr(lat, q)
        put(f"{q}_ms", e.value, e.ci_low, e.ci_high)
    out["samples"] = float(lat.n)
    if cell.memory is not None:
        out["peak_rss_bytes"] = float(cell.memory.peak_rss_bytes)
        if cell.memory.gpu_peak_bytes is not None:
            out["gpu_peak_bytes"] = float(cell.memory.gpu_peak_bytes)
    if cell.agreement is not None and cell.agreement.max_rel_error is not None:
        out["agreement_max_rel_error"] = float(cell.agreement.max_rel_error)
    if cell.gpu is not None and cell.gpu.energy_per_sample_j is not None:
        out["energy_per_sample_j"] = float(cell.gpu.energy_per_sample_j)
    if cell.monitor is not None:
        out["monitor_alarms"] = float(len(cell.monitor.alarms))
    return out


def cell_tags(cell: Cell) -> dict[str, str]:
    tags = {"bench.cell": cell.id, "bench.status": cell.status, "bench.reason": cell.reason,
            "bench.stop_reason": cell.stop_reason or "", "bench.timing_boundary": cell.timing_boundary,
            "bench.unstable": cell.unstable or "", "bench.agreement": cell.agreement.verdict if cell.agreement else ""}
    return {k: v[:MAX_TAG_CHARS] for k, v in tags.items() if v}


def export_run(client, experiment_id: str, run: Run, run_dir: Path) -> tuple[str, int]:
    """(the bench run's MLflow run id, cells exported). Deletes what it created if it fails."""
    from mlflow.entities import Metric, Param, RunTag

    created: list[str] = []
    try:
        parent = client.create_run(experiment_id, run_name=run.run_id, tags=environment_tags(run))
        created.append(parent.info.run_id)
        for cell in run.cells:
            child = client.create_run(experiment_id, run_name=cell.id,
                                      tags={**cell_tags(cell), "mlflow.parentRunId": parent.info.run_id})
            created.append(child.info.run_id)
            client.log_batch(child.info.run_id,
                             metrics=[Metric(k, v, 0, 0) for k, v in cell_metrics(cell).items()],
                             params=[Param(k, v) for k, v in cell_params(cell).items()])
            # MLflow's run states: a skipped cell never ran (KILLED), a failed one FAILED
            client.set_terminated(child.info.run_id, {"ok": "FINISHED", "failed": "FAILED"}.get(cell.status, "KILLED"))
        client.log_artifact(parent.info.run_id, str(run_dir / "run.json"))
        for html in sorted(run_dir.glob("*.html")):
            client.log_artifact(parent.info.run_id, str(html))
        client.log_batch(parent.info.run_id, tags=[RunTag("bench.cells", str(len(run.cells)))])
        client.set_terminated(parent.info.run_id, "FINISHED")
    except BaseException:
        for run_id in reversed(created):
            try:
                client.delete_run(run_id)
            except Exception:  # the store is gone: nothing more can be undone
                pass
        raise
    return parent.info.run_id, len(run.cells)


def open_experiment(uri: str | None, name: str) -> tuple[Any, str]:
    """(client, experiment id), creating the experiment when it does not exist. One clear line
    (the URI's password redacted) when the store cannot be reached."""
    from bench.results.stores import redact

    client = _client(uri)
    shown = redact(uri or os.environ.get("MLFLOW_TRACKING_URI", "the default MLflow store"))
    try:
        exp = client.get_experiment_by_name(name)
        return client, exp.experiment_id if exp is not None else client.create_experiment(name)
    except Exception as exc:  # MlflowException, requests' ConnectionError, sqlalchemy's errors: all one answer
        first = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise UsageError(f"--tracking-uri {shown}: cannot use the MLflow store: {first[:300]}") from None


def summary(run: Run, parent_id: str, cells: int) -> str:
    return json.dumps({"bench_run": run.run_id, "mlflow_run": parent_id, "cells": cells})
