"""Output agreement: a target's outputs against the reference target's, on the same inputs.

Metric, stated in every result: rel = max |out - ref| / max |ref| per output (the worst output
counts), and abs = max |out - ref|. A target passes when rel <= the tolerance of its precision.
NaN or infinity in an output, or a different number or shape of outputs, fails outright; when
the reference's own outputs are not finite nothing can be checked (and the reference cell fails).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.results.records import Agreement


def load_outputs(path: Path) -> list[np.ndarray]:
    """The cell's outputs on its measured batch (arr_0, arr_1, ...)."""
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(sum(f.startswith("arr_") for f in data.files))]


def load_accuracy_outputs(path: Path) -> np.ndarray | None:
    """The first output over the accuracy samples (acc_0), or None where none were run."""
    with np.load(path, allow_pickle=False) as data:
        return data["acc_0"] if "acc_0" in data.files else None


def compare_outputs(out: list[np.ndarray], ref: list[np.ndarray], reference: str, tolerance: float) -> Agreement:
    def fail(reason: str, abs_err: float | None = None, rel_err: float | None = None) -> Agreement:
        return Agreement("fail", reference, abs_err, rel_err, tolerance, reason=reason)

    if len(out) != len(ref):
        return fail(f"{len(out)} outputs, the reference has {len(ref)}")
    for i, r in enumerate(ref):
        if not np.all(np.isfinite(r)):
            return Agreement("unchecked", reference, tolerance=tolerance,
                             reason=f"the reference's output {i} holds NaN or infinity")
    worst_abs = 0.0
    worst_rel = 0.0
    for i, (o, r) in enumerate(zip(out, ref)):
        if o.shape != r.shape:
            return fail(f"output {i} has shape {o.shape}, the reference {r.shape}")
        if not np.all(np.isfinite(o)):
            return fail(f"output {i} holds NaN or infinity")
        if o.size == 0:
            continue
        o64, r64 = o.astype(np.float64), r.astype(np.float64)
        abs_err = float(np.max(np.abs(o64 - r64)))
        scale = float(np.max(np.abs(r64)))
        rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else float("inf"))
        worst_abs = max(worst_abs, abs_err)
        worst_rel = max(worst_rel, rel_err)
    if worst_rel > tolerance:
        rel_text = "inf" if worst_rel == float("inf") else f"{worst_rel:.3g}"
        return fail(f"relative error {rel_text} exceeds tolerance {tolerance:g}", worst_abs,
                    worst_rel if np.isfinite(worst_rel) else None)
    return Agreement("pass", reference, worst_abs, worst_rel, tolerance)


def check_reference(out: list[np.ndarray], reference: str) -> Agreement:
    """The reference cell's own verdict: its outputs must at least be finite."""
    for i, o in enumerate(out):
        if not np.all(np.isfinite(o)):
            return Agreement("fail", reference, reason=f"the reference's output {i} holds NaN or infinity")
    return Agreement("reference", reference, reason="this target is the reference")


def with_accuracy(agreement: Agreement, own: np.ndarray | None, ref: np.ndarray | None, int8: bool,
                  metric: str, model_kind: str, tolerance: float) -> Agreement:
    """The agreement with its accuracy figures (bench.analysis.accuracy) where both sides ran the
    accuracy samples; an int8 target's verdict is its accuracy loss against its tolerance.
    `metric`: the benchmark's (or "auto"); `model_kind`: the metric the model declares, or ""."""
    from dataclasses import replace

    from bench.analysis import accuracy

    if own is None or ref is None or agreement.verdict not in ("pass", "fail"):
        if int8 and agreement.verdict == "pass":  # no accuracy samples: the element-wise check with int8's limit
            return _elementwise(agreement, tolerance)
        return agreement
    if ref.dtype.kind == "f" and not np.all(np.isfinite(ref)):
        return replace(agreement, verdict="unchecked", tolerance=tolerance,
                       reason="the reference's outputs on the accuracy samples hold NaN or infinity")
    if own.shape != ref.shape:
        return replace(agreement, verdict="fail", tolerance=tolerance,
                       reason=f"accuracy samples: output shape {own.shape}, the reference's {ref.shape}")
    if not np.all(np.isfinite(own)) and own.dtype.kind == "f":
        return replace(agreement, verdict="fail", tolerance=tolerance, reason="accuracy samples: NaN or infinity in the output")
    metric = accuracy.resolve_metric(metric, model_kind, ref)
    acc = accuracy.measure(own, ref, metric)
    agreement = replace(agreement, accuracy=acc, tolerance=tolerance)
    if not int8 or agreement.verdict == "fail":
        return agreement
    if acc.loss > tolerance:
        return replace(agreement, verdict="fail",
                       reason=f"accuracy loss {acc.loss:.3g} exceeds tolerance {tolerance:g} ({accuracy.describe(acc)})")
    return replace(agreement, verdict="pass", metric=f"accuracy loss ({accuracy.METRIC_WORDS[metric]})")


def _elementwise(agreement: Agreement, tolerance: float) -> Agreement:
    from dataclasses import replace

    rel = agreement.max_rel_error
    if rel is not None and rel > tolerance:
        return replace(agreement, verdict="fail", tolerance=tolerance,
                       reason=f"relative error {rel:.3g} exceeds tolerance {tolerance:g} (no accuracy samples)")
    return replace(agreement, tolerance=tolerance)

