"""Our server scenario against MLPerf LoadGen's on one synthetic target of known service time
(with the M/D/1 prediction), and our back-to-back loop against LoadGen's Offline."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.selfcheck.check import Check


@dataclass(frozen=True)
class LoadGenCheck:
    service_us: float
    rate_qps: float
    ours_server_qps: float
    ours_server_p99_ms: float
    ours_server_mean_ms: float
    loadgen_server: Any
    ours_offline_qps: float
    loadgen_offline: Any
    md1_mean_ms: float


def _service_call(service_ns: int, spin_ns: int = 200_000):
    """A near-deterministic service time that leaves the GIL free most of the time, as a runtime
    computing in C does: sleep until spin_ns before the end, then spin. (A pure Python spin holds
    the GIL, which delays LoadGen's issue callback and inflates its latencies by 10-25% here.)"""
    clock = time.perf_counter_ns

    def call() -> None:
        end = clock() + service_ns
        if service_ns > spin_ns:
            time.sleep((service_ns - spin_ns) / 1e9)
        while clock() < end:
            pass
    return call


def check_loadgen(service_us: float = 1000.0, rate_qps: float = 500.0, duration_s: float = 5.0) -> LoadGenCheck:
    """One synthetic target of deterministic service time under our server scenario and LoadGen's,
    and back to back (ours) against LoadGen's Offline."""
    from bench.scenarios import loadgen_sut as loadgen
    from bench.scenarios.open_loop import md1_mean_latency_s, poisson_schedule, run_server

    call = _service_call(int(service_us * 1000))
    ours = run_server(call, poisson_schedule(rate_qps, duration_s, seed=0))
    lat_ms = ours.latencies_ns / 1e6
    lg_server = loadgen.run_loadgen(call, "server", rate_qps, duration_s, latency_ms=50.0)
    n = int(duration_s * 1e6 / service_us)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        call()
    ours_offline = n / ((time.perf_counter_ns() - t0) / 1e9)
    lg_offline = loadgen.run_loadgen(call, "offline", ours_offline, duration_s)
    return LoadGenCheck(service_us, rate_qps, ours.achieved_qps(), float(np.percentile(lat_ms, 99)),
                        float(lat_ms.mean()), lg_server, ours_offline, lg_offline,
                        md1_mean_latency_s(service_us / 1e6, rate_qps) * 1e3)


def lines(lg: LoadGenCheck) -> list[str]:
    s, o = lg.loadgen_server, lg.loadgen_offline
    return [
        f"server scenario vs MLPerf LoadGen (synthetic target, {lg.service_us:g} µs service, GIL released, "
        f"Poisson {lg.rate_qps:g}/s, rho = {lg.rate_qps * lg.service_us / 1e6:.2f}; M/D/1 mean {lg.md1_mean_ms:.3f} ms)",
        f"  ours     achieved {lg.ours_server_qps:8.1f}/s   mean {lg.ours_server_mean_ms:.3f} ms   "
        f"p99 {lg.ours_server_p99_ms:.3f} ms",
        f"  LoadGen  achieved {s.samples_per_s:8.1f}/s   mean {s.mean_ms:.3f} ms   p99 {s.p99_ms:.3f} ms   "
        f"({'VALID' if s.valid else 'INVALID'})",
        f"  offline: ours back to back {lg.ours_offline_qps:,.1f}/s; LoadGen Offline {o.samples_per_s:,.1f}/s "
        f"({'VALID' if o.valid else 'INVALID'})",
    ]


CHECK = Check("loadgen", False, lambda o: check_loadgen(), lines, needs_loadgen=True)
