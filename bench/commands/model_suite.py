"""`bench run MODEL`: a suite built from the command line, as trtexec and onnxruntime_perf_test take
a model, with targets that suit this machine.

The suite is built as a TOML document and read by the same parser as a suite file, so what
`--print-suite` prints is exactly what runs, and a user can keep it and run it unchanged
(`bench run MODEL --print-suite > mine.toml && bench run mine.toml`).
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from bench.errors import UsageError

SCENARIOS = ("single-stream", "offline")
BATCH_SIZES = (1, 8)
# The default suite's windows, a little longer (a user's model is slower than the toy models):
# several worker processes a cell, since most of the noise lies between processes.
STOP = {"min_seconds": 0.5, "max_seconds": 2.0, "min_iterations": 20, "warmup_iterations": 5,
        "warmup_seconds": 0.2, "ci_rel_width": 0.05, "confidence": 0.95, "ci_figures": ["throughput", "p99"],
        "repeats": 5}
_SHAPE_RE = re.compile(r"^([A-Za-z_]\w*)=(\d+(?:,\d+)*)$")


def _cpu_threads() -> int:
    # Leave a core to the harness (its parent and samplers): on a 2-core machine the default
    # suite measured a 15-30% between-process spread at 2 threads and 2-7% at 1.
    return max(1, len(os.sched_getaffinity(0)) - 1)


def catalog() -> dict[str, dict[str, Any]]:
    """Every target a command line may name (--target), by name."""
    threads = _cpu_threads()
    return {
        "ort-cpu": {"backend": "onnxruntime", "device": "cpu", "intra_op_threads": threads, "inter_op_threads": 1},
        "torch-cpu": {"backend": "torch", "device": "cpu", "mode": "eager", "threads": threads},
        "ort-cuda": {"backend": "onnxruntime", "device": "cuda", "providers": ["CUDAExecutionProvider"],
                     "io_binding": True},
        "ort-cuda-fp16": {"backend": "onnxruntime", "device": "cuda", "precision": "fp16",
                          "providers": ["CUDAExecutionProvider"], "io_binding": True},
        "torch-cuda": {"backend": "torch", "device": "cuda", "mode": "eager"},
        "torch-cuda-fp16": {"backend": "torch", "device": "cuda", "mode": "eager", "precision": "fp16"},
        "torch-cuda-graph": {"backend": "torch", "device": "cuda", "mode": "cudagraph", "precision": "fp16"},
        "torch-cuda-compile": {"backend": "torch", "device": "cuda", "mode": "compile", "precision": "fp16"},
    }


def _ort_has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def default_targets(kind: str) -> list[str]:
    """Targets for this machine: the GPU's where a CUDA device is (fp32 eager first, the reference),
    else the CPU's; ONNX Runtime's only for a graph, or beside torch for a torch model."""
    from bench.measure.nvml_devices import visible_device_count

    if visible_device_count()[0] > 0:
        ort = ["ort-cuda", "ort-cuda-fp16"] if _ort_has_cuda() else []
        if kind == "onnx":
            return ort or ["ort-cpu"]
        return ["torch-cuda", "torch-cuda-fp16", "torch-cuda-graph"] + ([] if kind == "hf" else ort[1:])
    if kind == "onnx":
        return ["ort-cpu"]
    return ["torch-cpu"] if kind == "hf" else ["torch-cpu", "ort-cpu"]  # an hf: decoder has no ONNX form


def _ints(flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise UsageError(f"{flag} {text!r}: expected distinct integers >= 1, comma-separated (e.g. 1,8,32)")
    return values


def _names(flag: str, text: str, allowed: list[str]) -> list[str]:
    from bench.codec import did_you_mean

    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in allowed:
            raise UsageError(f"{flag} {n!r}: not allowed{did_you_mean(n, allowed)} (allowed: {', '.join(allowed)})")
    if not names:
        raise UsageError(f"{flag} {text!r}: name at least one (allowed: {', '.join(allowed)})")
    return list(dict.fromkeys(names))


def _dims(shapes: list[str]) -> dict[str, Any]:
    dims: dict[str, Any] = {}
    for text in shapes:
        m = _SHAPE_RE.match(text)
        if not m:
            raise UsageError(f"--shape {text!r}: expected NAME=SIZE or NAME=SIZE,SIZE,... (e.g. seq=128 or seq=64,128)")
        sizes = _ints(f"--shape {m.group(1)}", m.group(2))
        if m.group(1) in dims:
            raise UsageError(f"--shape {m.group(1)}: given twice; list its sizes once (e.g. {m.group(1)}=64,128)")
        dims[m.group(1)] = sizes if len(sizes) > 1 else sizes[0]
    return dims


def build_document(model: str, args: argparse.Namespace, absolute: bool = False) -> dict[str, Any]:
    """The suite as a TOML document (a dict), for `model` as the user typed it; `absolute`: file
    paths made absolute (a printed suite kept elsewhere still finds them)."""
    from bench.models.loader import classify
    from bench.scenarios.registry import SCENARIOS as KNOWN

    kind = classify(model)
    cat = catalog()
    targets = _names("--target", args.target, list(cat)) if args.target else default_targets(kind)
    ref = str(Path(model).absolute()) if absolute and kind in ("onnx", "pt2") else model
    name = re.sub(r"[^\w.-]+", "-", Path(model).stem if kind in ("onnx", "pt2") else model.split(":")[-1]) or "model"
    default_scenarios = ["generate"] if kind == "hf" else list(SCENARIOS)
    bench: dict[str, Any] = {
        "name": name,
        "model": ref,
        "batch_sizes": _ints("--batch", args.batch) if args.batch else list(BATCH_SIZES),
        "scenarios": _names("--scenario", args.scenario, list(KNOWN)) if args.scenario else default_scenarios,
        "targets": targets,
    }
    if args.shape:
        bench["dims"] = _dims(args.shape)
    if args.inputs:
        bench["input_file"] = str(Path(args.inputs).absolute()) if absolute else args.inputs
    if kind == "pt2":
        bench["trust_model"] = bool(args.trust_model)
    return {"suite": {"name": name}, "defaults": {"seed": 0, "stop": dict(STOP)},
            "targets": {t: cat[t] for t in targets}, "benchmark": [bench]}


def model_suite(model: str, args: argparse.Namespace):
    """(SuiteSpec, its TOML text) for a model on the command line; paths resolve against the
    current directory."""
    import tomli_w

    from bench.config.suite import parse_suite

    header = ("# Built by `bench run` for a model on the command line; run it with `bench run FILE`.\n"
              "# Relative paths in a suite resolve against its own directory.\n")
    suite = parse_suite(tomli_w.dumps(build_document(model, args)), "<command line>", quick=args.quick,
                        base_dir=str(Path.cwd()))
    return suite, header + tomli_w.dumps(build_document(model, args, absolute=True))


def is_model_reference(what: str) -> bool:
    """A suite file is TOML; anything else that reads as a model reference is a model."""
    from bench.errors import ModelError
    from bench.models.loader import classify

    if what.endswith(".toml"):
        return False
    try:
        classify(what)
    except ModelError:
        return False
    return True
