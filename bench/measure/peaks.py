"""A device's measured peaks: the roof of a roofline, probed once per machine and cached.

Why measured, not taken from a data sheet: a data sheet gives the boost-clock, dense-math ideal
for a SKU, while what a benchmark cell can reach depends on the board's power limit, clocks,
driver, cuBLAS and the torch build. The achievable roof is what the fraction-of-peak should be
against (the "empirical roofline" of the ERT toolkit, Lo et al., "Roofline Model Toolkit",
PMBS 2014; the roofline model itself is Williams, Waterman & Patterson, CACM 52(4), 2009).

The probe:
- compute: one square GEMM C = A @ B of size n per precision (fp32, fp16, bf16 where supported),
  2 * n^3 FLOPs (n^3 multiply-adds), timed after a warm-up; the best of `repeats` runs, because
  interference only ever slows a run down. fp32 is measured with TF32 off: TF32 is a different
  (lower) precision, and a fp32 cell that allows it is not what "fp32" names.
- memory: a device-to-device copy of `copy_bytes`, counted as read + write (2 * copy_bytes bytes
  moved per copy), best of `repeats`, as STREAM's Copy kernel counts it (McCalpin 1995).
- timing: CUDA events around each repeat on a GPU (no host round trip inside the interval);
  time.perf_counter_ns on the CPU, where the CPU figures are a sanity floor rather than a roof
  (small sizes stay in cache).

`cached_peaks` keys the result by GPU UUID (or device name) and torch version, so the probe runs
once per machine and torch build, not once per run.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.codec import from_json, to_json

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
# The cache file's format, in its name: a harness reading another format re-probes instead of
# overwriting a file another version of the harness keeps (2: the codec's JSON form of DevicePeaks).
CACHE_FORMAT = 2
CUDA_WARMUP_S = 0.3
_WARMUP_RUNS = 3  # lets GPU clocks ramp and cuBLAS (or oneDNN) pick its kernel before anything is timed


@dataclass(frozen=True)
class DevicePeaks:
    """Peaks measured on one device by one probe."""

    device: str  # "cuda:0" or "cpu", as probed
    device_name: str
    uuid: str  # the GPU's UUID ("GPU-..."); "" on the CPU
    torch_version: str
    flops_per_s: tuple[tuple[str, float], ...]  # (precision, FLOP/s) for the precisions that ran
    copy_bytes_per_s: float  # device-to-device copy, read + write bytes per second
    probe: str  # what was run, so a figure can be reproduced or questioned
    measured_at: str  # UTC ISO 8601

    def flops_for(self, precision: str) -> float | None:
        """The GEMM rate at `precision` ("fp32", "fp16", "bf16"), or None when it was not probed."""
        return dict(self.flops_per_s).get(precision)

    def validate(self) -> tuple[str, str] | None:
        if not all(_is_rate(v) for _, v in self.flops_per_s):
            return "flops_per_s", "not a list of (precision, positive finite FLOP/s)"
        if not _is_rate(self.copy_bytes_per_s):
            return "copy_bytes_per_s", "not a positive finite rate"
        return None

    def to_json_dict(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json_dict(cls, data: Any) -> DevicePeaks:
        """The inverse of to_json_dict; ValueError (bench.codec.DecodeError) on anything malformed,
        and a cache file that raises it is probed again."""
        return from_json(cls, data, "peaks")


def _is_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# --- naming the device without probing it -----------------------------------------------------


def _cpu_name() -> str:
    from bench.measure.environment import cpu_model

    return cpu_model() or "cpu"


def _cuda_identity(device: str) -> tuple[str, str]:
    """(name, UUID in NVML's "GPU-..." form, "" when torch cannot tell) of a CUDA device."""
    import torch

    props = torch.cuda.get_device_properties(torch.device(device))
    raw = str(getattr(props, "uuid", "") or "")
    uuid = raw if not raw or raw.startswith(("GPU-", "MIG-")) else f"GPU-{raw}"
    return str(props.name), uuid


def device_name(device: str) -> str:
    """A human name for `device`: the GPU's product name or the CPU model."""
    if device == "cpu":
        return _cpu_name()
    return _cuda_identity(device)[0]


# --- the probe --------------------------------------------------------------------------------


def _best_cpu_s(fn: Callable[[], None], repeats: int, clock_ns: Callable[[], int]) -> float:
    for _ in range(_WARMUP_RUNS):  # first touch of pages, thread-pool start-up, oneDNN's JIT
        fn()
    best_ns = min(_interval_ns(fn, clock_ns) for _ in range(repeats))
    if best_ns <= 0:
        raise ValueError("the probe ran in no measurable time; raise gemm_n or copy_bytes")
    return best_ns / 1e9


def _interval_ns(fn: Callable[[], None], clock_ns: Callable[[], int]) -> int:
    start = clock_ns()
    fn()
    return clock_ns() - start


def _best_cuda_s(fn: Callable[[], None], repeats: int, device) -> float:
    import time

    import torch

    # Warm up for at least CUDA_WARMUP_S as well as _WARMUP_RUNS calls: a few fp16 GEMMs take
    # milliseconds, too short for the GPU's clocks to leave idle.
    deadline = time.perf_counter() + CUDA_WARMUP_S
    runs = 0
    while runs < _WARMUP_RUNS or time.perf_counter() < deadline:
        fn()
        torch.cuda.synchronize(device)
        runs += 1
    pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in pairs:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    best_ms = min(start.elapsed_time(end) for start, end in pairs)
    if best_ms <= 0:
        raise ValueError("the probe ran in no measurable time; raise gemm_n or copy_bytes")
    return best_ms / 1e3


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def _gemm_s(torch, dev, dtype, n: int, best_s: Callable[[Callable[[], None]], float]) -> float | None:
    """Best seconds for one n x n x n GEMM in `dtype`, or None when the device has no kernel for it."""
    a = b = c = None
    try:
        # Random operands, not zeros: a GPU multiplying zeros draws less power and can clock
        # higher than it would on real data.
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        c = torch.empty(n, n, device=dev, dtype=dtype)
        return best_s(lambda: torch.mm(a, b, out=c))
    except torch.OutOfMemoryError:
        raise  # too big for this device is the caller's problem, not "unsupported"
    except RuntimeError as exc:  # e.g. "not implemented for 'Half'": no kernel for this dtype here
        log.info("peak probe on %s: %s skipped (%s)", dev, dtype, str(exc).splitlines()[0] if str(exc) else "")
        return None
    finally:
        del a, b, c


def measure_peaks(
    device: str = "cuda:0",
    gemm_n: int = 8192,
    copy_bytes: int = 1 << 30,
    repeats: int = 5,
    precisions: Iterable[str] = PRECISIONS,
    *,
    clock_ns: Callable[[], int] = time.perf_counter_ns,
) -> DevicePeaks:
    """Probe `device` ("cuda:N" or "cpu"): GEMM FLOP/s per precision and copy bytes/s.

    A precision the device cannot run (bf16 where torch.cuda.is_bf16_supported() is False, a CPU
    dtype without a matmul kernel) is left out, not reported as zero. `clock_ns` times the CPU
    probe (injectable for tests); a GPU is timed with CUDA events.
    """
    import torch

    precisions = tuple(precisions)
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"unknown precisions {unknown} (allowed: {', '.join(PRECISIONS)})")
    if gemm_n < 1 or copy_bytes < 1 or repeats < 1:
        raise ValueError("gemm_n, copy_bytes and repeats must be >= 1")
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    dev = torch.device(device)
    on_cuda = dev.type == "cuda"
    if on_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"{device}: CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        name, uuid = _cuda_identity(str(dev))
    elif dev.type == "cpu":
        name, uuid = _cpu_name(), ""
    else:
        raise ValueError(f"{device}: only cuda:N and cpu are probed")

    def best_s(fn: Callable[[], None]) -> float:
        return _best_cuda_s(fn, repeats, dev) if on_cuda else _best_cpu_s(fn, repeats, clock_ns)

    rates: list[tuple[str, float]] = []
    skipped: list[str] = []
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    # Events record on the current device's stream: make the probed device the current one.
    context = torch.cuda.device(dev) if on_cuda else contextlib.nullcontext()
    try:
        with context:
            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means IEEE fp32, not TF32
            for precision in precisions:
                if on_cuda and precision == "bf16" and not torch.cuda.is_bf16_supported():
                    skipped.append(precision)
                    continue
                seconds = _gemm_s(torch, dev, dtypes[precision], gemm_n, best_s)
                if seconds is None:
                    skipped.append(precision)
                    continue
                rates.append((precision, 2 * gemm_n**3 / seconds))
            src = torch.empty(copy_bytes, dtype=torch.uint8, device=dev).fill_(1)
            dst = torch.empty_like(src)
            try:
                copy_s = best_s(lambda: dst.copy_(src))
            finally:
                del src, dst
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        if on_cuda:
            torch.cuda.empty_cache()  # give the probe's GiBs back before the benchmark runs

    probe = (f"GEMM {gemm_n}^3 per precision, best of {repeats}; copy {_human_bytes(copy_bytes)} "
             f"(read + write), best of {repeats}; TF32 off for fp32; "
             f"timed with {'CUDA events' if on_cuda else 'perf_counter_ns'}")
    if skipped:
        probe += f"; not supported here: {', '.join(skipped)}"
    return DevicePeaks(
        device=str(dev),
        device_name=name,
        uuid=uuid,
        torch_version=torch.__version__,
        flops_per_s=tuple(rates),
        copy_bytes_per_s=2 * copy_bytes / copy_s,
        probe=probe,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# --- the per-machine cache --------------------------------------------------------------------


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unknown"


def peaks_cache_path(device: str, uuid: str, cache_root: Path) -> Path:
    """Where cached_peaks keeps the figures for this device and torch build."""
    import torch

    key = uuid or device_name(device)
    return Path(cache_root) / f"peaks-v{CACHE_FORMAT}-{_safe(key)}-{_safe(torch.__version__)}.json"


def cached_peaks(
    device: str,
    uuid: str,
    cache_root: Path,
    measure: Callable[[str], DevicePeaks] = measure_peaks,
) -> DevicePeaks:
    """The cached peaks for this device (by GPU UUID, else device name) and torch version.

    Probes with `measure(device)` only when no valid cache file exists; a corrupt or foreign file
    is probed over, not trusted and not fatal. The file is written atomically (a temporary file
    then os.replace), so a concurrent reader sees the old file, the new one, or none.
    """
    import torch

    path = peaks_cache_path(device, uuid, cache_root)
    try:
        cached = DevicePeaks.from_json_dict(json.loads(path.read_text()))
        if cached.torch_version == torch.__version__:
            return cached
        log.info("peaks cache %s is for torch %s; probing again", path, cached.torch_version)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError; so is a bad record
        log.warning("peaks cache %s is unreadable (%s); probing again", path, exc)
    peaks = measure(device)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(peaks.to_json_dict(), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache costs a re-probe next time, not this run's figures
        log.warning("cannot write peaks cache %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
    return peaks
