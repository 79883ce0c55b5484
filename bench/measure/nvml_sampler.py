"""NVML telemetry for a GPU cell: utilization, clocks, power, energy and throttling over the
measured window, sampled by a thread beside the measured loop.

Why a thread and what it costs: NVML only reports instantaneous readings (the energy counter
apart), so a figure over the window needs samples taken during it. The measured loop shares the
GIL with the sampler, so a sample does the least it can: a handful of NVML calls (ctypes releases
the GIL while the driver answers) and stores into preallocated arrays; every mean, maximum and
note is computed afterwards, in `telemetry()`. Outside [mark_start, mark_end] the thread wakes
and goes back to sleep without calling NVML.

Everything goes through an `nvml` object (bench.measure.nvml_devices says why), so every rule
here is tested with a fake NVML.

Failure is data, never an exception: NVML that cannot start makes the sampler unavailable
(`telemetry()` returns None and `reason` says why); a query that raises NVMLError (NotSupported
on older or MIG devices) makes its figure null and adds a note. An unsupported query is not
asked again, so a sample on such a device costs less, not more.

Energy: NVML's total-energy counter (mJ, monotonic) is read at the window's two edges and the
difference is the energy. It updates coarsely (seen: no change over a 57 ms window on an H100),
so a window under ENERGY_MIN_WINDOW_S gives no energy figure rather than a wrong one; neither is
one made up from mean power times the window where the counter is not supported.
"""
from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from typing import Any

from bench.measure.nvml_devices import (
    THROTTLING_REASONS, device_handle, is_unsupported, load_nvml, normalize_uuid,
    nvml_errors, nvml_index_for_cuda, reason_names,
)
from bench.results.records import GpuSeries, GpuTelemetry

# NVML's energy counter moves in coarse steps: below this window its delta is mostly rounding.
ENERGY_MIN_WINDOW_S = 1.0

DEFAULT_INTERVAL_S = 0.1
# The telemetry's course over the window is stored in at most this many windows (each the mean of
# the samples in it): enough to see a clock fall or a temperature climb, small in run.json.
SERIES_POINTS = 120

# Samples kept per window: an hour at the default 10 Hz. A longer window keeps its first hour of
# samples (the energy figure still covers it all) and says so in the notes.
DEFAULT_CAPACITY = 36_000


class NvmlSampler:
    """Samples one NVML device every `interval_s` seconds on a daemon thread, aggregating only
    the readings between mark_start() and mark_end().

        sampler = NvmlSampler.from_uuid(torch.cuda.get_device_properties(0).uuid)
        sampler.start()            # NVML init, device lookup, thread; never raises
        sampler.mark_start()       # energy counter read, aggregates reset, one sample
        ... measured loop ...
        sampler.mark_end()         # one sample, energy counter read, aggregation stops
        sampler.stop()
        record = sampler.telemetry(samples_in_window)  # None when unavailable: see .reason

    `device_index` is an NVML index or a UUID (what nvml_index_for_cuda returns either way).
    Tests call start(thread=False) and sample_once() themselves instead of waiting on the thread.
    """

    def __init__(self, device_index: int | str, interval_s: float = DEFAULT_INTERVAL_S,
                 nvml: Any = None, clock: Callable[[], float] = time.perf_counter,
                 pid: int | None = None, capacity: int = DEFAULT_CAPACITY) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if capacity < 2:
            raise ValueError(f"capacity must hold the window's two edge samples, got {capacity}")
        self.device = device_index
        self.interval_s = float(interval_s)
        self.pid = os.getpid() if pid is None else int(pid)  # at construction: right after spawn
        self.capacity = int(capacity)
        self.available = False
        self.reason = "not started"
        self._nvml_given = nvml
        self._nvml: Any = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._clock = clock
        self._handle: Any = None
        self._index = device_index if isinstance(device_index, int) else -1
        self._uuid = "" if isinstance(device_index, int) else normalize_uuid(device_index)
        self._reasons_fn: Callable[[Any], int] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._thread_error = ""
        # Readings, preallocated: NaN (or -1 for the reason bits) where a query gave nothing.
        nan = array("d", [math.nan])
        self._t = array("d", [0.0]) * capacity
        self._util_pct = nan * capacity
        self._mem_used_bytes = nan * capacity
        self._proc_mem_bytes = nan * capacity
        self._sm_mhz = nan * capacity
        self._power_mw = nan * capacity
        self._temp_c = nan * capacity
        self._reasons = array("q", [-1]) * capacity
        self._n = 0
        self._dropped = 0
        self._recording = False
        self._t_start: float | None = None
        self._t_end: float | None = None
        self._energy_start_mj: int | None = None
        self._energy_end_mj: int | None = None
        self._unsupported: dict[str, str] = {}  # query -> NVML's message; never asked again
        self._failures: dict[str, list] = {}  # query -> [count, last message]: transient errors
        self._pid_seen = False
        self._other_pids: set[int] = set()  # other processes computing on the device in the window

    @classmethod
    def from_uuid(cls, uuid: object, interval_s: float = DEFAULT_INTERVAL_S, nvml: Any = None,
                  clock: Callable[[], float] = time.perf_counter, pid: int | None = None,
                  capacity: int = DEFAULT_CAPACITY) -> NvmlSampler:
        """The sampler for the device with this UUID: NVML's "GPU-..." form, a MIG UUID, or
        torch's `get_device_properties(i).uuid` (no prefix); robust to CUDA_VISIBLE_DEVICES."""
        return cls(normalize_uuid(uuid), interval_s, nvml, clock, pid, capacity)

    @classmethod
    def for_cuda_device(cls, cuda_index: int, interval_s: float = DEFAULT_INTERVAL_S,
                        nvml: Any = None, clock: Callable[[], float] = time.perf_counter,
                        pid: int | None = None, environ: Mapping[str, str] = os.environ,
                        capacity: int = DEFAULT_CAPACITY) -> NvmlSampler:
        """The sampler for CUDA ordinal `cuda_index` through CUDA_VISIBLE_DEVICES (see
        nvml_index_for_cuda); an ordinal that is not visible gives an unavailable sampler."""
        try:
            device = nvml_index_for_cuda(cuda_index, environ)
        except ValueError as exc:
            sampler = cls(cuda_index, interval_s, nvml, clock, pid, capacity)
            sampler._started = True  # start() keeps this reason instead of asking NVML
            sampler.reason = str(exc)
            return sampler
        return cls(device, interval_s, nvml, clock, pid, capacity)

    # --- life cycle ------------------------------------------------------------------------

    def start(self, thread: bool = True) -> bool:
        """Initialise NVML, find the device, start the sampling thread. Returns whether the
        sampler is available; when it is not, `reason` says why. Never raises NVML's errors."""
        if self._started:
            return self.available
        self._started = True
        nvml, why = load_nvml(self._nvml_given)
        if nvml is None:
            self.reason = why
            return False
        self._errors = nvml_errors(nvml)
        try:
            nvml.nvmlInit()
        except self._errors as exc:  # NVMLError_LibraryNotFound on machines without a driver
            self.reason = f"NVML unavailable: {exc}"
            return False
        self._nvml = nvml
        try:
            self._handle = device_handle(nvml, self.device)
        except self._errors as exc:
            self.reason = f"NVML device {self.device!r} not found: {exc}"
            self._shutdown()
            return False
        # Identity for the record; a MIG handle may not answer these, the given one stands.
        try:
            self._index = int(nvml.nvmlDeviceGetIndex(self._handle))
        except (*self._errors, AttributeError):
            pass
        try:
            self._uuid = str(nvml.nvmlDeviceGetUUID(self._handle))
        except (*self._errors, AttributeError):
            pass
        # nvidia-ml-py < 12.535 has only the older (deprecated since R535) name.
        self._reasons_fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) \
            or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        self.available = True
        self.reason = ""
        if thread:
            self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
            self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the thread and release NVML. Idempotent; the readings stay for telemetry()."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 10 * self.interval_s))
            self._thread = None
        self._shutdown()

    def __enter__(self) -> NvmlSampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._errors:
                pass
            self._nvml = None
            self._handle = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.sample_once()
        except Exception as exc:  # a bug here must not kill the measurement; telemetry says so
            self._thread_error = f"sampler thread stopped: {type(exc).__name__}: {exc}"

    # --- the window ------------------------------------------------------------------------

    def mark_start(self) -> None:
        """The measured window begins: forget earlier readings, read the energy counter, take
        one sample (so that a window shorter than the interval still has readings)."""
        if not self.available:
            return
        with self._lock:
            self._n = 0
            self._dropped = 0
            self._pid_seen = False
            self._other_pids = set()
            self._t_end = None
            self._energy_end_mj = None
            self._t_start = self._clock()
            self._energy_start_mj = self._read_energy()
            self._recording = True
        self.sample_once()

    def mark_end(self) -> None:
        """The measured window ends: take one last sample, read the energy counter, stop
        aggregating (the thread keeps waking, without calling NVML, until stop())."""
        if not self.available or not self._recording:
            return
        self.sample_once()
        with self._lock:
            self._energy_end_mj = self._read_energy()
            self._t_end = self._clock()
            self._recording = False

    def sample_once(self) -> bool:
        """Take one sample when inside the window; returns whether it was stored. Light on
        purpose: NVML calls and stores, no aggregation, no allocation beyond NVML's replies."""
        if not self._recording or self._handle is None:
            return False
        nvml, h = self._nvml, self._handle
        t = self._clock()
        util = self._query("utilization", nvml.nvmlDeviceGetUtilizationRates, h)
        mem = self._query("memory", nvml.nvmlDeviceGetMemoryInfo, h)
        sm = self._query("sm_clock", nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_SM)
        power = self._query("power", nvml.nvmlDeviceGetPowerUsage, h)
        temp = self._query("temperature", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
        reasons = self._read_reasons()
        procs = self._query("processes", nvml.nvmlDeviceGetComputeRunningProcesses, h)
        proc_mem = None
        if procs is not None:
            # One entry per (process, device); usedGpuMemory is None where the driver hides it.
            used = [p.usedGpuMemory for p in procs if p.pid == self.pid]
            others = {int(p.pid) for p in procs if p.pid != self.pid}
            if used:
                self._pid_seen = True
                known = [u for u in used if u is not None]
                proc_mem = sum(known) if known else None
        with self._lock:
            # A sample read before mark_start reset the arrays, or after mark_end, is not stored.
            if not self._recording or (self._t_start is not None and t < self._t_start):
                return False
            i = self._n
            if i >= self.capacity:
                self._dropped += 1
                return False
            self._t[i] = t
            self._util_pct[i] = math.nan if util is None else util.gpu
            self._mem_used_bytes[i] = math.nan if mem is None else mem.used
            self._proc_mem_bytes[i] = math.nan if proc_mem is None else proc_mem
            self._sm_mhz[i] = math.nan if sm is None else sm
            self._power_mw[i] = math.nan if power is None else power
            self._temp_c[i] = math.nan if temp is None else temp
            self._reasons[i] = -1 if reasons is None else int(reasons)
            if procs is not None:
                self._other_pids |= others
            self._n = i + 1
        return True

    # --- queries ---------------------------------------------------------------------------

    def _query(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        if name in self._unsupported:
            return None
        try:
            return fn(*args)
        except self._errors as exc:
            self._failed(name, exc)
            return None

    def _failed(self, name: str, exc: BaseException) -> None:
        if is_unsupported(self._nvml, exc):
            self._unsupported[name] = str(exc) or type(exc).__name__
        else:
            entry = self._failures.setdefault(name, [0, ""])
            entry[0] += 1
            entry[1] = str(exc) or type(exc).__name__

    def _read_energy(self) -> int | None:
        value = self._query("energy", self._nvml.nvmlDeviceGetTotalEnergyConsumption, self._handle)
        return None if value is None else int(value)

    def _read_reasons(self) -> int | None:
        if self._reasons_fn is None:
            self._unsupported.setdefault("clock_event_reasons", "no clock-event-reasons query in this nvml")
            return None
        if "clock_event_reasons" in self._unsupported:
            return None
        try:
            return self._reasons_fn(self._handle)
        except self._errors as exc:
            older = getattr(self._nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
            # A driver before R535 lacks the EventReasons symbol that a newer pynvml calls.
            # (Bound methods are made afresh by each getattr: compare with ==, not `is`.)
            if not (is_unsupported(self._nvml, exc) and older is not None and self._reasons_fn != older):
                self._failed("clock_event_reasons", exc)
                return None
            self._reasons_fn = older
        try:
            return older(self._handle)
        except self._errors as exc:
            self._failed("clock_event_reasons", exc)
            return None

    # --- the record ------------------------------------------------------------------------

    def telemetry(self, samples_in_window: int) -> GpuTelemetry | None:
        """The window's figures as a GpuTelemetry record; `samples_in_window` is the number of
        samples (not calls) the measured loop processed, for energy per sample. None when the
        sampler is unavailable or no window was marked; `reason` says which."""
        if not self.available:
            return None
        if self._t_start is None or self._t_end is None:
            self.reason = "no measured window: mark_start() and mark_end() were not both called"
            return None
        t_start, t_end = self._t_start, self._t_end
        idx = [i for i in range(min(self._n, self.capacity)) if t_start <= self._t[i] <= t_end]
        window_s = t_end - t_start
        notes: list[str] = []

        util = _present(self._util_pct, idx)
        sm = _present(self._sm_mhz, idx)
        power_w = [v / 1000 for v in _present(self._power_mw, idx)]
        mem = _present(self._mem_used_bytes, idx)
        proc = _present(self._proc_mem_bytes, idx)
        temp = _present(self._temp_c, idx)
        bits = 0
        for i in idx:
            if self._reasons[i] >= 0:
                bits |= self._reasons[i]
        reasons = reason_names(bits)

        energy_j, per_sample_j = None, None
        if "energy" in self._unsupported:
            notes.append(f"energy_j is null: NVML's total-energy counter is not supported on this "
                         f"device ({self._unsupported['energy']})")
        elif self._energy_start_mj is None or self._energy_end_mj is None:
            last = self._failures.get("energy", [0, "no reading"])[1]
            notes.append(f"energy_j is null: the energy counter could not be read at the window's "
                         f"edges ({last})")
        elif window_s < ENERGY_MIN_WINDOW_S:
            notes.append(f"energy_j is null: measured window {window_s:.2f} s is under "
                         f"{ENERGY_MIN_WINDOW_S:g} s: NVML's energy counter updates too coarsely")
        elif self._energy_end_mj < self._energy_start_mj:
            notes.append(f"energy_j is null: the energy counter went backwards "
                         f"({self._energy_start_mj} -> {self._energy_end_mj} mJ; driver reload?)")
        else:
            energy_j = (self._energy_end_mj - self._energy_start_mj) / 1000
            if samples_in_window > 0:
                per_sample_j = energy_j / samples_in_window
            else:
                notes.append("energy_per_sample_j is null: the window processed no samples")

        for name, message in sorted(self._unsupported.items()):
            if name != "energy":
                notes.append(f"{name}: not supported on this device ({message}); its figures are null")
        for name, (count, message) in sorted(self._failures.items()):
            notes.append(f"{name}: {count} reading(s) failed ({message})")
        if "processes" not in self._unsupported and idx and not self._pid_seen:
            notes.append(f"process_memory_max_bytes is null: pid {self.pid} is not in NVML's "
                         "running-process list (a container's PID namespace hides it, or it "
                         "held no GPU memory)")
        if self._dropped:
            notes.append(f"{self._dropped} sample(s) not kept: the buffer holds {self.capacity}; "
                         "figures other than energy cover the window's start")
        if self._thread_error:
            notes.append(self._thread_error)

        return GpuTelemetry(
            device_index=self._index,
            uuid=self._uuid,
            samples=len(idx),
            interval_ms=self.interval_s * 1000,
            window_s=window_s,
            utilization_mean_pct=_mean(util),
            utilization_max_pct=max(util) if util else None,
            memory_used_max_bytes=int(max(mem)) if mem else None,
            process_memory_max_bytes=int(max(proc)) if proc else None,
            sm_clock_mean_mhz=_mean(sm),
            sm_clock_min_mhz=min(sm) if sm else None,
            sm_clock_max_mhz=max(sm) if sm else None,
            power_mean_w=_mean(power_w),
            power_max_w=max(power_w) if power_w else None,
            energy_j=energy_j,
            energy_per_sample_j=per_sample_j,
            temperature_max_c=max(temp) if temp else None,
            throttle_reasons=reasons,
            throttled=any(r in THROTTLING_REASONS for r in reasons),
            notes=tuple(notes),
            other_processes=len(self._other_pids),
            series=self._series(idx, t_start, window_s),
        )

    def _series(self, idx: list[int], t_start: float, window_s: float) -> GpuSeries | None:
        """The window's course: samples binned into at most SERIES_POINTS windows from its start."""
        if not idx:
            return None
        width = max(self.interval_s, window_s / SERIES_POINTS)
        bins = max(1, min(SERIES_POINTS, math.ceil(window_s / width - 1e-9)))
        members: list[list[int]] = [[] for _ in range(bins)]
        for i in idx:
            members[min(bins - 1, int((self._t[i] - t_start) / width))].append(i)

        def course(values: array, scale: float = 1.0) -> tuple[float | None, ...]:
            out = []
            for group in members:
                present = _present(values, group)
                out.append(None if not present else sum(present) / len(present) * scale)
            return tuple(out)

        return GpuSeries(window_s=width, utilization_pct=course(self._util_pct), sm_clock_mhz=course(self._sm_mhz),
                         power_w=course(self._power_mw, 1e-3), temperature_c=course(self._temp_c))


def _present(values: array, idx: list[int]) -> list[float]:
    return [values[i] for i in idx if not math.isnan(values[i])]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
