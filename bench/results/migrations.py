"""Upgrades of older run.json documents, one `update_to_N` per schema version bump.

Each bump adds `update_to_N(doc) -> doc` here, registers it in MIGRATIONS, and ships a test that
loads a committed file of version N - 1 (tests/data/run_vN.json).
"""
from __future__ import annotations

from typing import Any, Callable


def update_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: every field v2 adds has a default, and v1 never wrote a histogram (always null),
    so the document is unchanged but for its version; v1 figures keep their null intervals."""
    return doc


def update_to_3(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: `server` is new and optional, and v2 had no server scenario: version alone."""
    return doc


def update_to_4(doc: dict[str, Any]) -> dict[str, Any]:
    """v3 -> v4: `gpu` becomes a typed record, but v3 always wrote null there (no GPU targets);
    every other new field is optional: version alone."""
    return doc


# How v4 wrote a failed cell's reason, by the kind of failure (bench.runner then composed them).
_V4_REASON_KINDS = (("out of memory at batch", "out_of_memory"), ("timed out after", "timeout"),
                    ("worker killed by", "crash"), ("worker exited with code", "crash"))


def _v4_failure_kind(reason: str, stderr_tail: str) -> str:
    for prefix, kind in _V4_REASON_KINDS:
        if reason.startswith(prefix):
            return kind
    # v4 kept a traceback for exceptions from the model or runtime, none for a target that
    # could not run here (a missing provider or device: a CellFailure).
    return "error" if "Traceback" in stderr_tail else "unsupported"


def update_to_5(doc: dict[str, Any]) -> dict[str, Any]:
    """v4 -> v5: `failure_kind` on failed cells, from the reason prefixes v4 wrote; `concurrency`
    null on cells without a concurrency axis (in v4 every scenario but multi-stream wrote 1)."""
    cells = doc.get("cells")
    for cell in cells if isinstance(cells, list) else ():
        if not isinstance(cell, dict):
            continue  # the decoder refuses it with its path
        if cell.get("scenario") != "multi-stream":
            cell["concurrency"] = None
        if cell.get("status") == "failed":
            reason, tail = cell.get("reason"), cell.get("stderr_tail")
            cell["failure_kind"] = _v4_failure_kind(reason if isinstance(reason, str) else "",
                                                    tail if isinstance(tail, str) else "")
    return doc


def update_to_6(doc: dict[str, Any]) -> dict[str, Any]:
    """v5 -> v6: `repetitions`, `variance` and `unstable` are new with defaults (a v5 cell was one
    process: no repetitions), so version alone."""
    return doc


def update_to_7(doc: dict[str, Any]) -> dict[str, Any]:
    """v6 -> v7: the run status "failed" and `end_reason` (default "") are new: version alone."""
    return doc


def update_to_8(doc: dict[str, Any]) -> dict[str, Any]:
    """v7 -> v8: a GPU cell's telemetry gains `series` (its course over the window, default null):
    version alone."""
    return doc


def update_to_9(doc: dict[str, Any]) -> dict[str, Any]:
    """v8 -> v9: `monitor` (a `bench monitor` cell's windows and alarms, default null) is new:
    version alone."""
    return doc


def update_to_10(doc: dict[str, Any]) -> dict[str, Any]:
    """v10 adds `generate` per cell and `agreement.first_divergence` (defaults: null)."""
    return doc


def update_to_11(doc: dict[str, Any]) -> dict[str, Any]:
    """v11 adds `executor`, `nodes` and `node` per cell and repetition (defaults: local, none, null:
    every v10 cell was measured where its run ran)."""
    return doc


def update_to_12(doc: dict[str, Any]) -> dict[str, Any]:
    """v11 -> v12 adds `dims` and `inputs` per cell and `prepare_s`/`export_s` per model, each with a
    default (no dims: v11 had no dynamic-dimension axis; inputs and costs unrecorded): version alone."""
    return doc


def update_to_13(doc: dict[str, Any]) -> dict[str, Any]:
    """v12 -> v13 adds `requests` per cell (default null: no v12 cell was a served target): version alone."""
    return doc


def update_to_14(doc: dict[str, Any]) -> dict[str, Any]:
    """v13 -> v14 adds `agreement.accuracy` (the accuracy figures; null: none were measured) and
    `model.quantize_s` (null: no int8 form) per cell: version alone."""
    return doc


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    2: update_to_2, 3: update_to_3, 4: update_to_4, 5: update_to_5, 6: update_to_6, 7: update_to_7,
    8: update_to_8, 9: update_to_9, 10: update_to_10, 11: update_to_11, 12: update_to_12,
    13: update_to_13, 14: update_to_14}


def upgrade(doc: dict[str, Any], to_version: int) -> dict[str, Any]:
    version = doc["schema_version"]
    while version < to_version:
        doc = MIGRATIONS[version + 1](doc)
        version += 1
        doc["schema_version"] = version
    return doc
