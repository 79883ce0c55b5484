"""Device peaks for the roofline, probed once per GPU in a spawned worker and cached on disk.

The probe (bench.measure.peaks: a large GEMM per precision, a device-to-device copy) runs in its
own process, not in a cell's: a cell's GPU memory and context stay its model's alone. Once
cached (per GPU UUID and torch version), a later run only reads the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 300.0


def probe_task(device: str) -> Any:
    """In the worker: this GPU's peaks, from the cache or measured now."""
    import torch

    from bench.backends.devices import device_index
    from bench.errors import CellFailure
    from bench.measure.peaks import cached_peaks
    from bench.models.cache import cache_dir

    if not torch.cuda.is_available():
        raise CellFailure(f"torch {torch.__version__} sees no CUDA device")
    index = device_index(device)
    torch.cuda.set_device(index)
    from bench.measure.nvml_devices import normalize_uuid

    raw = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    uuid = normalize_uuid(raw) if raw else ""  # NVML's GPU-... form, as the fingerprint records it
    return cached_peaks(f"cuda:{index}", uuid, cache_dir().parent)


class PeakProbes:
    """device -> DevicePeaks, or the reason there is none (a string)."""

    def __init__(self, tmp: Path, timeout_s: float = PROBE_TIMEOUT_S):
        self._tmp = tmp
        self._timeout_s = timeout_s
        self._found: dict[str, Any] = {}

    def ensure(self, device: str) -> None:
        key = self._key(device)
        if key in self._found:
            return
        from bench.runner.isolation import WorkerFailure, run_in_worker

        got = run_in_worker(probe_task, key, self._tmp / f"probe-{key.replace(':', '_')}.stderr",
                                 self._timeout_s, "bench-peak-probe")
        self._found[key] = f"no peak: the probe failed ({got.reason})" if isinstance(got, WorkerFailure) else got

    def get(self, device: str) -> Any:
        return self._found.get(self._key(device), "no peak: the device was not probed")

    @staticmethod
    def _key(device: str) -> str:
        return device if ":" in device else f"{device}:0"
