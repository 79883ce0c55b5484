"""NVML telemetry (bench/measure/nvml_sampler.py, nvml_devices.py) and the GPU fingerprint (environment.gpus), without a GPU.

A FakeNvml stands in for the pynvml module: readings scripted over a fake clock, an energy
counter that advances with that clock in coarse steps (as the real one does), queries that
raise NotSupported or fail once, and clock-event-reason bits. The tests drive the sampler with
sample_once() instead of waiting on its thread; one test runs the real thread, with no sleep.
"""
from __future__ import annotations

import dataclasses
import os
import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest

from bench.measure import environment
from bench.measure.nvml_devices import CLOCK_EVENT_REASON_BITS, reason_names
from bench.measure.nvml_sampler import ENERGY_MIN_WINDOW_S, NvmlSampler
from bench.measure.nvml_devices import normalize_uuid, nvml_index_for_cuda, visible_device_count
from bench.results.records import GpuInfo, GpuTelemetry
from bench.codec import from_json, to_json

PID = 4242
UUIDS = ("GPU-aaaaaaaa-1111-2222-3333-444444444444", "GPU-bbbbbbbb-5555-6666-7777-888888888888",
         "GPU-cccccccc-9999-0000-1111-222222222222", "GPU-dddddddd-3333-4444-5555-666666666666")
IDLE, APP_CLOCKS, POWER_CAP, HW_SLOW, SYNC_BOOST, SW_THERMAL, HW_THERMAL, POWER_BRAKE, DISPLAY = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100)


# --- the fake --------------------------------------------------------------------------------


class NVMLError(Exception):
    """pynvml's shape: an error code in .value, a message from str()."""

    MESSAGES = {3: "Not Supported", 6: "Not Found", 12: "NVML Shared Library Not Found",
                13: "Function Not Found", 999: "Unknown Error"}

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self.MESSAGES.get(self.value, f"NVML Error with code {self.value}")


class NVMLError_NotSupported(NVMLError):
    def __init__(self) -> None:
        super().__init__(3)


class NVMLError_NotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(6)


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(12)


class NVMLError_FunctionNotFound(NVMLError):
    def __init__(self) -> None:
        super().__init__(13)


class NVMLError_Unknown(NVMLError):
    def __init__(self) -> None:
        super().__init__(999)


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class Reading:
    """What the device reports from a moment on (until the next scripted Reading)."""

    util_pct: int = 50
    mem_used_bytes: int = 2_000_000_000
    sm_mhz: int = 1500
    power_mw: int = 250_000
    temp_c: int = 60
    reasons: int = 0
    processes: tuple[tuple[int, int | None], ...] = ((PID, 1_000_000_000),)  # (pid, usedGpuMemory)


@dataclass
class FakeDevice:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    timeline: list[tuple[float, Reading]] = field(default_factory=lambda: [(0.0, Reading())])
    # Energy: a counter in mJ that moves at energy_w, but only every energy_step_ms (coarse).
    energy_base_mj: int = 5_000_000
    energy_w: int = 250
    energy_step_ms: int = 100
    unsupported: frozenset[str] = frozenset()  # function names raising NotSupported
    fail_once: frozenset[str] = frozenset()  # function names raising Unknown on their first call


class FakeNvml:
    NVMLError = NVMLError
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_DEVICE_MIG_DISABLE = 0
    NVML_FEATURE_ENABLED = 1
    NVML_FEATURE_DISABLED = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_FUNCTION_NOT_FOUND = 13

    def __init__(self, devices: list[FakeDevice] | None = None, clock: FakeClock | None = None,
                 init_error: NVMLError | None = None) -> None:
        self.devices = devices if devices is not None else [FakeDevice(UUIDS[0])]
        self.clock = clock or FakeClock()
        self.init_error = init_error
        self.calls: Counter[str] = Counter()
        self.live_inits = 0  # nvmlInit minus nvmlShutdown: must end at 0
        self._lock = threading.Lock()  # the real-thread test calls from two threads

    def _ask(self, name: str, device: FakeDevice) -> Reading:
        with self._lock:
            self.calls[name] += 1
            first = self.calls[name] == 1
        if name in device.unsupported:
            raise NVMLError_NotSupported()
        if name in device.fail_once and first:
            raise NVMLError_Unknown()
        current = device.timeline[0][1]
        for t, reading in device.timeline:
            if t <= self.clock():
                current = reading
        return current

    # life cycle and lookup
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error
        self.live_inits += 1

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        self.live_inits -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        if not 0 <= index < len(self.devices):
            raise NVMLError(2)  # Invalid Argument, as NVML answers an index out of range
        return self.devices[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeDevice:
        for device in self.devices:
            if device.uuid == uuid:
                return device
        raise NVMLError_NotFound()

    def nvmlDeviceGetIndex(self, h: FakeDevice) -> int:
        return self.devices.index(h)

    def nvmlDeviceGetUUID(self, h: FakeDevice) -> str:
        return h.uuid

    # sampled figures
    def nvmlDeviceGetUtilizationRates(self, h):
        r = self._ask("nvmlDeviceGetUtilizationRates", h)
        return _Obj(gpu=r.util_pct, memory=r.util_pct // 2)

    def nvmlDeviceGetMemoryInfo(self, h):
        r = self._ask("nvmlDeviceGetMemoryInfo", h)
        return _Obj(total=80_000_000_000, used=r.mem_used_bytes, free=80_000_000_000 - r.mem_used_bytes)

    def nvmlDeviceGetClockInfo(self, h, clock_type):
        assert clock_type == self.NVML_CLOCK_SM
        return self._ask("nvmlDeviceGetClockInfo", h).sm_mhz

    def nvmlDeviceGetPowerUsage(self, h):
        return self._ask("nvmlDeviceGetPowerUsage", h).power_mw

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._ask("nvmlDeviceGetTemperature", h).temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self._ask("nvmlDeviceGetCurrentClocksEventReasons", h).reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self._ask("nvmlDeviceGetCurrentClocksThrottleReasons", h).reasons

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        r = self._ask("nvmlDeviceGetComputeRunningProcesses", h)
        return [_Obj(pid=pid, usedGpuMemory=used) for pid, used in r.processes]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._ask("nvmlDeviceGetTotalEnergyConsumption", h)
        t_ms = round(self.clock() * 1000)
        return h.energy_base_mj + h.energy_w * (t_ms // h.energy_step_ms * h.energy_step_ms)

    # fingerprint
    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.86.15"

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return 12080

    def nvmlDeviceGetName(self, h) -> str:
        return h.name

    def nvmlDeviceGetEnforcedPowerLimit(self, h) -> int:
        self._ask("nvmlDeviceGetEnforcedPowerLimit", h)
        return 700_000

    def nvmlDeviceGetCudaComputeCapability(self, h):
        self._ask("nvmlDeviceGetCudaComputeCapability", h)
        return (9, 0)

    def nvmlDeviceGetMaxClockInfo(self, h, clock_type):
        self._ask("nvmlDeviceGetMaxClockInfo", h)
        return {self.NVML_CLOCK_SM: 1980, self.NVML_CLOCK_MEM: 2619}[clock_type]

    def nvmlDeviceGetApplicationsClock(self, h, clock_type):
        self._ask("nvmlDeviceGetApplicationsClock", h)
        assert clock_type == self.NVML_CLOCK_SM
        return 1755

    def nvmlDeviceGetMigMode(self, h):
        self._ask("nvmlDeviceGetMigMode", h)
        return [self.NVML_DEVICE_MIG_DISABLE, self.NVML_DEVICE_MIG_ENABLE]  # [current, pending]

    def nvmlDeviceGetEccMode(self, h):
        self._ask("nvmlDeviceGetEccMode", h)
        return [self.NVML_FEATURE_ENABLED, self.NVML_FEATURE_ENABLED]

    def nvmlDeviceGetPersistenceMode(self, h):
        self._ask("nvmlDeviceGetPersistenceMode", h)
        return self.NVML_FEATURE_DISABLED


class _Obj:
    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


def make(timeline=None, clock: FakeClock | None = None, **device_kw) -> tuple[NvmlSampler, FakeNvml, FakeClock]:
    clock = clock or FakeClock()
    device = FakeDevice(UUIDS[0], **device_kw)
    if timeline is not None:
        device.timeline = timeline
    fake = FakeNvml([device], clock)
    sampler = NvmlSampler(0, interval_s=0.1, nvml=fake, clock=clock, pid=PID)
    assert sampler.start(thread=False), sampler.reason
    return sampler, fake, clock


def window(sampler: NvmlSampler, clock: FakeClock, times: list[float]) -> None:
    """mark_start at times[0], sample_once at each time between, mark_end at times[-1]."""
    clock.t = times[0]
    sampler.mark_start()
    for t in times[1:-1]:
        clock.t = t
        assert sampler.sample_once()
    clock.t = times[-1]
    sampler.mark_end()


# --- aggregation -----------------------------------------------------------------------------


def test_aggregates_only_inside_the_window():
    loud = Reading(util_pct=99, mem_used_bytes=70_000_000_000, sm_mhz=900, power_mw=690_000, temp_c=88,
                   reasons=POWER_CAP, processes=((PID, 60_000_000_000),))
    sampler, fake, clock = make(timeline=[
        (0.0, loud),
        (10.0, Reading(util_pct=40, mem_used_bytes=3_000_000_000, sm_mhz=1500, power_mw=200_000,
                       temp_c=61, reasons=IDLE, processes=((PID, 1_000_000_000), (7, 9_000_000_000)))),
        (11.0, Reading(util_pct=60, mem_used_bytes=4_000_000_000, sm_mhz=1700, power_mw=300_000,
                       temp_c=65, reasons=0, processes=((PID, 2_000_000_000),))),
        (12.0, loud),
    ])
    clock.t = 5.0
    assert not sampler.sample_once()  # before the window: not even asked
    assert fake.calls["nvmlDeviceGetUtilizationRates"] == 0
    window(sampler, clock, [10.0, 10.5, 11.0, 11.5])
    clock.t = 12.5
    assert not sampler.sample_once()  # after the window
    sampler.stop()

    rec = sampler.telemetry(samples_in_window=1000)
    assert rec.samples == 4  # 10.0 (mark_start), 10.5, 11.0, 11.5 (mark_end)
    assert rec.window_s == pytest.approx(1.5)
    assert rec.device_index == 0 and rec.uuid == UUIDS[0] and rec.interval_ms == pytest.approx(100.0)
    assert rec.utilization_mean_pct == 50.0 and rec.utilization_max_pct == 60.0
    assert rec.memory_used_max_bytes == 4_000_000_000
    assert rec.process_memory_max_bytes == 2_000_000_000  # our pid only, not pid 7's 9 GB
    assert (rec.sm_clock_mean_mhz, rec.sm_clock_min_mhz, rec.sm_clock_max_mhz) == (1600.0, 1500.0, 1700.0)
    assert rec.power_mean_w == 250.0 and rec.power_max_w == 300.0
    assert rec.temperature_max_c == 65.0
    assert rec.throttle_reasons == ("GpuIdle",) and rec.throttled is False  # the loud PowerCap was outside
    assert fake.live_inits == 0
    # the course over the window: 1.5 s in windows of 0.1 s (the sample interval), each the mean of
    # its samples (10.0 and 10.5 read the first reading, 11.0 and 11.5 the second); empty windows null
    s = rec.series
    assert s.window_s == pytest.approx(0.1) and len(s.utilization_pct) == 15
    assert [(k, v) for k, v in enumerate(s.utilization_pct) if v is not None] == [(0, 40), (5, 40), (10, 60), (14, 60)]
    assert [v for v in s.power_w if v is not None] == [200.0, 200.0, 300.0, 300.0]
    assert [v for v in s.sm_clock_mhz if v is not None] == [1500, 1500, 1700, 1700]
    assert [v for v in s.temperature_c if v is not None] == [61, 61, 65, 65]


def test_a_long_window_is_stored_in_at_most_series_points_windows():
    from bench.measure.nvml_sampler import SERIES_POINTS

    sampler, fake, clock = make(timeline=[(0.0, Reading(util_pct=50, power_mw=100_000)),
                                          (100.0, Reading(util_pct=90, power_mw=300_000))])
    window(sampler, clock, [0.0 + 0.5 * k for k in range(401)])  # 200 s at 2 Hz
    s = sampler.telemetry(samples_in_window=1).series
    assert len(s.utilization_pct) == SERIES_POINTS and s.window_s == pytest.approx(200 / SERIES_POINTS)
    assert s.utilization_pct[0] == 50 and s.utilization_pct[-1] == 90 and None not in s.utilization_pct
    half = SERIES_POINTS // 2
    assert s.power_w[half - 2] == pytest.approx(100.0) and s.power_w[half + 1] == pytest.approx(300.0)


def test_energy_per_sample_from_the_counter_delta():
    sampler, fake, clock = make(energy_w=250)
    window(sampler, clock, [10.0, 10.5, 11.5])
    rec = sampler.telemetry(samples_in_window=1000)
    # 250 W over 1.5 s = 375 J, read from the counter's two edges (10.0 s and 11.5 s).
    assert rec.energy_j == 375.0
    assert rec.energy_per_sample_j == 0.375
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2  # the edges only, not per sample
    assert not any("energy" in n for n in rec.notes)


def test_short_window_gives_no_energy_and_says_why():
    sampler, _, clock = make()
    window(sampler, clock, [10.0, 10.4])
    rec = sampler.telemetry(samples_in_window=50)
    assert rec.energy_j is None and rec.energy_per_sample_j is None
    assert rec.samples == 2  # the two edge samples: a short window still has readings
    assert rec.power_mean_w == 250.0
    assert any("measured window 0.40 s is under 1 s: NVML's energy counter updates too coarsely" in n
               for n in rec.notes), rec.notes


def test_energy_at_exactly_the_minimum_window():
    sampler, _, clock = make(energy_w=300)
    window(sampler, clock, [2.0, 2.0 + ENERGY_MIN_WINDOW_S])
    rec = sampler.telemetry(samples_in_window=0)
    assert rec.energy_j == 300.0
    assert rec.energy_per_sample_j is None
    assert any("no samples" in n for n in rec.notes)


def test_coarse_counter_steps_are_what_the_delta_sees():
    # The counter moves every 100 ms: a window from 10.05 to 11.15 s sees the steps at 10.0 and 11.1.
    sampler, _, clock = make(energy_w=100)
    window(sampler, clock, [10.05, 11.15])
    assert sampler.telemetry(samples_in_window=10).energy_j == 110.0


@pytest.mark.parametrize("bits, names, throttled", [
    (POWER_CAP, ("SwPowerCap",), True),
    (HW_SLOW, ("HwSlowdown",), True),
    (SW_THERMAL, ("SwThermalSlowdown",), True),
    (HW_THERMAL, ("HwThermalSlowdown",), True),
    (POWER_BRAKE, ("HwPowerBrakeSlowdown",), True),
    (IDLE, ("GpuIdle",), False),
    (APP_CLOCKS, ("ApplicationsClocksSetting",), False),
    (IDLE | APP_CLOCKS | SYNC_BOOST | DISPLAY,
     ("GpuIdle", "ApplicationsClocksSetting", "SyncBoost", "DisplayClockSetting"), False),
    (0, (), False),
])
def test_throttle_flagged_for_power_and_thermal_not_for_idle_or_app_clocks(bits, names, throttled):
    sampler, _, clock = make(timeline=[(0.0, Reading(reasons=bits))])
    window(sampler, clock, [1.0, 1.1])
    rec = sampler.telemetry(samples_in_window=1)
    assert rec.throttle_reasons == names
    assert rec.throttled is throttled


def test_throttle_reasons_are_the_union_over_the_window():
    sampler, _, clock = make(timeline=[(0.0, Reading(reasons=APP_CLOCKS)), (1.5, Reading(reasons=HW_THERMAL)),
                                       (2.5, Reading(reasons=0))])
    window(sampler, clock, [1.0, 1.5, 2.5, 3.0])
    rec = sampler.telemetry(samples_in_window=1)
    assert rec.throttle_reasons == ("ApplicationsClocksSetting", "HwThermalSlowdown")
    assert rec.throttled is True


def test_reason_names_keep_unknown_bits():
    assert reason_names(POWER_CAP | 0x1000) == ("SwPowerCap", "Unknown(0x1000)")


def test_reason_table_matches_the_installed_pynvml():
    pynvml = pytest.importorskip("pynvml")
    for name, bit in CLOCK_EVENT_REASON_BITS.items():
        value = getattr(pynvml, f"nvmlClocksEventReason{name}", None)
        if value is None:
            value = getattr(pynvml, f"nvmlClocksThrottleReason{name}")
        assert value == bit, name


def test_older_pynvml_without_event_reasons_falls_back_to_throttle_reasons():
    class OldNvml(FakeNvml):
        nvmlDeviceGetCurrentClocksEventReasons = None  # absent: getattr finds nothing usable

    device = FakeDevice(UUIDS[0], timeline=[(0.0, Reading(reasons=SW_THERMAL))])
    clock = FakeClock()
    fake = OldNvml([device], clock)
    sampler = NvmlSampler(0, nvml=fake, clock=clock, pid=PID)
    sampler.start(thread=False)
    window(sampler, clock, [1.0, 1.2])
    assert sampler.telemetry(1).throttle_reasons == ("SwThermalSlowdown",)
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 2


def test_older_driver_without_event_reasons_falls_back_to_throttle_reasons():
    class OldDriver(FakeNvml):
        def nvmlDeviceGetCurrentClocksEventReasons(self, h):
            raise NVMLError_FunctionNotFound()

    clock = FakeClock()
    fake = OldDriver([FakeDevice(UUIDS[0], timeline=[(0.0, Reading(reasons=POWER_CAP))])], clock)
    sampler = NvmlSampler(0, nvml=fake, clock=clock, pid=PID)
    sampler.start(thread=False)
    window(sampler, clock, [1.0, 1.2])
    rec = sampler.telemetry(1)
    assert rec.throttle_reasons == ("SwPowerCap",) and rec.throttled
    assert not any("clock_event_reasons" in n for n in rec.notes)


# --- unsupported and failing queries ----------------------------------------------------------


def test_unsupported_query_gives_a_null_figure_a_note_and_is_not_asked_again():
    sampler, fake, clock = make(unsupported=frozenset({"nvmlDeviceGetPowerUsage",
                                                       "nvmlDeviceGetTotalEnergyConsumption"}))
    window(sampler, clock, [1.0, 1.5, 2.0, 2.5])
    rec = sampler.telemetry(samples_in_window=100)
    assert rec.power_mean_w is None and rec.power_max_w is None
    assert rec.energy_j is None and rec.energy_per_sample_j is None
    assert rec.utilization_mean_pct == 50.0 and rec.sm_clock_mean_mhz == 1500.0  # the rest stands
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert any(n.startswith("power: not supported") for n in rec.notes), rec.notes
    assert any("energy counter is not supported" in n for n in rec.notes), rec.notes


def test_every_query_unsupported_gives_an_all_null_record():
    everything = frozenset(name for name in dir(FakeNvml) if name.startswith("nvmlDeviceGet")
                           and name not in ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
                                            "nvmlDeviceGetHandleByUUID"))
    sampler, _, clock = make(unsupported=everything)
    window(sampler, clock, [1.0, 3.0])
    rec = sampler.telemetry(samples_in_window=10)
    assert rec.samples == 2
    nulls = ("utilization_mean_pct", "utilization_max_pct", "memory_used_max_bytes",
             "process_memory_max_bytes", "sm_clock_mean_mhz", "sm_clock_min_mhz", "sm_clock_max_mhz",
             "power_mean_w", "power_max_w", "energy_j", "energy_per_sample_j", "temperature_max_c")
    assert all(getattr(rec, name) is None for name in nulls)
    assert rec.throttle_reasons == () and rec.throttled is False


def test_a_failed_reading_nulls_that_sample_only():
    sampler, fake, clock = make(fail_once=frozenset({"nvmlDeviceGetTemperature"}),
                                timeline=[(0.0, Reading(temp_c=70))])
    window(sampler, clock, [1.0, 1.1, 1.2])
    rec = sampler.telemetry(1)
    assert rec.temperature_max_c == 70.0
    assert fake.calls["nvmlDeviceGetTemperature"] == 3  # a transient error is asked again
    assert "temperature: 1 reading(s) failed (Unknown Error)" in rec.notes


def test_process_memory_is_null_with_a_note_when_our_pid_is_not_listed():
    sampler, _, clock = make(timeline=[(0.0, Reading(processes=((1, 5_000_000_000),)))])
    window(sampler, clock, [1.0, 1.2])
    rec = sampler.telemetry(1)
    assert rec.process_memory_max_bytes is None
    assert rec.memory_used_max_bytes == 2_000_000_000
    assert any(f"pid {PID} is not in NVML's running-process list" in n for n in rec.notes)


def test_full_buffer_keeps_the_first_samples_and_says_so():
    clock = FakeClock()
    fake = FakeNvml([FakeDevice(UUIDS[0])], clock)
    sampler = NvmlSampler(0, nvml=fake, clock=clock, pid=PID, capacity=3)
    sampler.start(thread=False)
    clock.t = 1.0
    sampler.mark_start()
    for t in (1.1, 1.2, 1.3):
        clock.t = t
        sampler.sample_once()
    clock.t = 2.5
    sampler.mark_end()
    rec = sampler.telemetry(10)
    assert rec.samples == 3
    assert rec.energy_j == 375.0  # the counter's edges cover the whole window regardless
    assert "2 sample(s) not kept: the buffer holds 3; figures other than energy cover the window's start" in rec.notes


def test_a_second_window_forgets_the_first():
    sampler, _, clock = make(timeline=[(0.0, Reading(util_pct=90)), (5.0, Reading(util_pct=10))])
    window(sampler, clock, [1.0, 1.5, 2.0])
    assert sampler.telemetry(1).utilization_max_pct == 90.0
    window(sampler, clock, [6.0, 6.2])
    rec = sampler.telemetry(1)
    assert rec.samples == 2 and rec.utilization_max_pct == 10.0


def test_no_window_gives_none_and_a_reason():
    sampler, _, _ = make()
    assert sampler.telemetry(1) is None
    assert "mark_start" in sampler.reason


def test_record_survives_the_result_file_codec():
    sampler, _, clock = make(timeline=[(0.0, Reading(reasons=POWER_CAP | IDLE))])
    window(sampler, clock, [1.0, 1.5, 3.0])
    rec = sampler.telemetry(samples_in_window=64)
    assert from_json(GpuTelemetry, to_json(rec)) == rec


# --- NVML that cannot start --------------------------------------------------------------------


def test_init_failure_gives_no_telemetry_and_a_reason_never_an_exception():
    clock = FakeClock()
    fake = FakeNvml(clock=clock, init_error=NVMLError_LibraryNotFound())
    sampler = NvmlSampler(0, nvml=fake, clock=clock, pid=PID)
    assert sampler.start() is False
    sampler.mark_start()
    assert sampler.sample_once() is False
    sampler.mark_end()
    sampler.stop()
    assert sampler.telemetry(10) is None
    assert sampler.reason == "NVML unavailable: NVML Shared Library Not Found"
    assert fake.calls["nvmlShutdown"] == 0  # nothing to shut down after a failed init


def test_missing_device_gives_no_telemetry_and_releases_nvml():
    fake = FakeNvml()
    sampler = NvmlSampler(3, nvml=fake)
    assert sampler.start() is False
    assert sampler.reason.startswith("NVML device 3 not found")
    assert fake.live_inits == 0
    assert sampler.telemetry(1) is None


def _nvml_works() -> bool:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_real_pynvml_without_a_driver_is_unavailable_not_an_error():
    if _nvml_works():
        pytest.skip("NVML works here: this test is about machines without a driver")
    sampler = NvmlSampler(0)
    assert sampler.start() is False
    sampler.mark_start()
    sampler.mark_end()
    sampler.stop()
    assert sampler.telemetry(1) is None
    assert sampler.reason == "NVML unavailable: NVML Shared Library Not Found"


# --- the real thread ----------------------------------------------------------------------------


def test_real_thread_starts_and_stops_and_the_edges_give_samples():
    # A real clock and a 1 ms interval; no sleep: the two edge samples alone make the minimum.
    fake = FakeNvml()
    sampler = NvmlSampler(0, interval_s=0.001, nvml=fake, pid=PID)
    assert sampler.start() is True
    thread = sampler._thread
    assert thread is not None and thread.daemon and thread.is_alive()
    sampler.mark_start()
    sampler.mark_end()
    sampler.stop()
    assert not thread.is_alive()
    assert fake.live_inits == 0
    rec = sampler.telemetry(samples_in_window=1)
    assert rec.samples >= 2
    assert rec.utilization_mean_pct == 50.0
    assert rec.energy_j is None  # a window of microseconds


def test_context_manager_starts_and_stops():
    fake = FakeNvml()
    with NvmlSampler(0, interval_s=0.001, nvml=fake, pid=PID) as sampler:
        assert sampler.available and fake.live_inits == 1
    assert fake.live_inits == 0


# --- picking the device -------------------------------------------------------------------------


def test_from_uuid_accepts_torch_uuids_without_the_prefix():
    assert normalize_uuid("bbbbbbbb-5555-6666-7777-888888888888") == UUIDS[1]
    assert normalize_uuid(UUIDS[1]) == UUIDS[1]
    assert normalize_uuid("MIG-1234") == "MIG-1234"
    clock = FakeClock()
    fake = FakeNvml([FakeDevice(u) for u in UUIDS], clock)
    sampler = NvmlSampler.from_uuid("bbbbbbbb-5555-6666-7777-888888888888", nvml=fake, clock=clock, pid=PID)
    assert sampler.start(thread=False), sampler.reason
    window(sampler, clock, [1.0, 1.1])
    rec = sampler.telemetry(1)
    assert (rec.device_index, rec.uuid) == (1, UUIDS[1])


def test_uuid_prefix_resolves_as_cuda_does():
    fake = FakeNvml([FakeDevice(u) for u in UUIDS])
    sampler = NvmlSampler.for_cuda_device(1, nvml=fake, environ={"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-cccc"})
    assert sampler.start(thread=False), sampler.reason
    assert sampler._index == 2 and sampler._uuid == UUIDS[2]
    sampler.stop()
    ambiguous = NvmlSampler("GPU-", nvml=fake)
    assert ambiguous.start() is False and "not found" in ambiguous.reason


def test_for_cuda_device_that_is_not_visible_is_unavailable():
    fake = FakeNvml()
    sampler = NvmlSampler.for_cuda_device(1, nvml=fake, environ={"CUDA_VISIBLE_DEVICES": "0"})
    assert sampler.start() is False
    assert "CUDA device 1 is not visible" in sampler.reason
    assert fake.calls["nvmlInit"] == 0


@pytest.mark.parametrize("cvd, cuda_index, expected", [
    (None, 0, 0),
    (None, 3, 3),
    ("2,0", 0, 2),
    ("2,0", 1, 0),
    (" 1 , 3 ", 1, 3),
    ("GPU-aaaaaaaa-1111-2222-3333-444444444444,1", 0, "GPU-aaaaaaaa-1111-2222-3333-444444444444"),
    ("GPU-aaaaaaaa-1111-2222-3333-444444444444,1", 1, 1),
    ("GPU-bbbb", 0, "GPU-bbbb"),
    ("MIG-11111111-2222-3333-4444-555555555555", 0, "MIG-11111111-2222-3333-4444-555555555555"),
    ("0,-1,1", 0, 0),
])
def test_nvml_index_for_cuda(cvd, cuda_index, expected):
    environ = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
    assert nvml_index_for_cuda(cuda_index, environ) == expected


@pytest.mark.parametrize("cvd, cuda_index", [("0,-1,1", 1), ("", 0), ("-1", 0), ("1", 1), ("0,x,1", 1)])
def test_nvml_index_for_cuda_rejects_ordinals_that_are_not_visible(cvd, cuda_index):
    with pytest.raises(ValueError, match=f"CUDA device {cuda_index} is not visible"):
        nvml_index_for_cuda(cuda_index, {"CUDA_VISIBLE_DEVICES": cvd})


@pytest.mark.parametrize("cvd, count, note", [
    (None, 4, ""),
    ("1,3", 2, ""),
    ("3,2,1,0", 4, ""),
    ("1,7,2", 1, ""),  # CUDA stops at the first ordinal that names no device
    ("GPU-cccc,0", 2, ""),
    ("", 0, "CUDA_VISIBLE_DEVICES='' hides every device"),
    ("-1", 0, "CUDA_VISIBLE_DEVICES='-1' hides every device"),
    ("GPU-ffff", 0, "CUDA_VISIBLE_DEVICES='GPU-ffff' hides every device"),
])
def test_visible_device_count_with_the_fake(cvd, count, note):
    fake = FakeNvml([FakeDevice(u) for u in UUIDS])
    environ = {} if cvd is None else {"CUDA_VISIBLE_DEVICES": cvd}
    assert visible_device_count(fake, environ) == (count, note)
    assert fake.live_inits == 0


def test_visible_device_count_when_nvml_cannot_start():
    fake = FakeNvml(init_error=NVMLError_LibraryNotFound())
    assert visible_device_count(fake, {}) == (0, "NVML unavailable: NVML Shared Library Not Found")
    assert visible_device_count(FakeNvml([]), {}) == (0, "NVML found no GPU")


def test_visible_device_count_on_this_machine():
    if _nvml_works():
        pytest.skip("NVML works here: this test is about machines without a driver")
    assert visible_device_count(environ=os.environ) == (0, "NVML unavailable: NVML Shared Library Not Found")


# --- the fingerprint --------------------------------------------------------------------------------


def test_gpus_fills_every_field_and_nulls_the_unsupported():
    optional = frozenset({"nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetCudaComputeCapability",
                          "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetApplicationsClock",
                          "nvmlDeviceGetMigMode", "nvmlDeviceGetEccMode", "nvmlDeviceGetPersistenceMode"})
    fake = FakeNvml([FakeDevice(UUIDS[0]), FakeDevice(UUIDS[1], name="Tesla T4", unsupported=optional)])
    found, note = environment.gpus(nvml=fake)
    assert note == ""
    assert found[0] == GpuInfo(
        name="NVIDIA H100 80GB HBM3", uuid=UUIDS[0], driver="570.86.15", memory_total_bytes=80_000_000_000,
        power_limit_w=700.0, cuda="12.8", index=0, compute_capability="9.0", sm_clock_max_mhz=1980,
        memory_clock_max_mhz=2619, sm_clock_app_mhz=1755, mig_mode="disabled", ecc_mode="enabled",
        persistence_mode="disabled")
    assert found[1] == GpuInfo(name="Tesla T4", uuid=UUIDS[1], driver="570.86.15",
                               memory_total_bytes=80_000_000_000, cuda="12.8", index=1)
    # every field the fingerprint declares is filled for a device that answers
    assert all(value is not None for value in dataclasses.asdict(found[0]).values())
    assert fake.live_inits == 0


def test_gpus_when_nvml_cannot_start():
    fake = FakeNvml(init_error=NVMLError_LibraryNotFound())
    assert environment.gpus(nvml=fake) == ((), "NVML unavailable: NVML Shared Library Not Found")
    assert environment.gpus(nvml=FakeNvml([])) == ((), "NVML found no GPU")


def test_gpus_on_this_machine():
    if _nvml_works():
        pytest.skip("NVML works here: this test is about machines without a driver")
    assert environment.gpus() == ((), "NVML unavailable: NVML Shared Library Not Found")


def test_other_processes_on_the_device_during_the_window_are_counted():
    sampler, _, clock = make(timeline=[(0.0, Reading(processes=((PID, 1_000),))),
                                       (1.15, Reading(processes=((PID, 1_000), (5151, 9_000), (5152, 1))))])
    window(sampler, clock, [1.0, 1.1, 1.2, 1.3])
    rec = sampler.telemetry(1)
    assert rec.other_processes == 2  # two other pids computed on the GPU while the cell measured
    alone, _, clock = make(timeline=[(0.0, Reading(processes=((PID, 1_000),)))])
    window(alone, clock, [1.0, 1.2])
    assert alone.telemetry(1).other_processes == 0
