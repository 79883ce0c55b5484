"""loadgen-server, loadgen-offline: the same target under MLPerf LoadGen (bench.scenarios.loadgen_sut).

The cell keeps LoadGen's own figures and its VALID/INVALID beside ours. loadgen-server reads the
server scenario's table (its rate and duration); loadgen-offline expects the rate the warm-up
suggests, and LoadGen sizes its one query from it. LoadGen's latencies, not per-request ones in
Offline (every sample goes in one query), are kept as LoadGen counted them: no warm-up cut.
Both compare by capacity, LoadGen's samples/s for Offline; a Server run's queueing latencies are
autocorrelated, so it compares only through the server scenario's peak search.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from bench.config.records import BenchmarkSpec, TargetSpec
from bench.errors import CellFailure
from bench.results.records import Cell, CellKey, LoadGenInfo
from bench.scenarios import loadgen_sut
from bench.scenarios.base import Figures, Scenario, ScenarioRun, Session, steady_figures
from bench.scenarios.loops import warm_up
from bench.scenarios.server import require_server_table

DEFAULT_LATENCY_MS = 100.0  # LoadGen Server's latency target when the benchmark sets no p99 SLO


class _LoadGen(Scenario):
    mode = ""  # LoadGen's scenario: "server" | "offline"
    slo_applies = True

    def rate_and_duration(self, session: Session, warm: np.ndarray) -> tuple[float, float]:
        raise NotImplementedError

    def run(self, session: Session) -> ScenarioRun:
        if not loadgen_sut.available():
            raise CellFailure("MLPerf LoadGen is not installed: pip install mlcommons-loadgen")
        with session.context():
            warm = warm_up(session.call, session.stop, time.perf_counter_ns)
            qps, duration = self.rate_and_duration(session, warm)
            result = loadgen_sut.run_loadgen(
                session.call, self.mode, qps, duration,
                latency_ms=session.bench.slo_limits().get("p99_ms", DEFAULT_LATENCY_MS),
                context=session.context, window_marks=session.window)
        lat = result.latencies_ns
        return ScenarioRun(lat, int(lat.size / max(result.samples_per_s, 1e-9) * 1e9), warm,
                           f"MLPerf LoadGen {self.mode} at {qps:,.1f}/s for at least {duration:g} s: "
                           f"{'VALID' if result.valid else 'INVALID'}",
                           detail=replace(result, latencies_ns=None))

    def figures(self, run: ScenarioRun, bench: BenchmarkSpec, key: CellKey) -> Figures:
        r = run.detail
        figures = steady_figures(run, bench, key, steady=False, slo=self.slo_applies)
        return replace(figures, records={"loadgen": LoadGenInfo(r.scenario, r.valid, r.samples_per_s,
                                                                 r.scheduled_per_s, r.mean_ms, r.p50_ms, r.p99_ms)})

    def detail_rows(self, cell: Cell) -> tuple[tuple[str, str], ...]:
        g = cell.loadgen
        if g is None:
            return ()
        figures = [f"{g.samples_per_s:,.1f} samples/s"]
        figures += [f"{name} {value:.3g} ms" for name, value in (("mean", g.mean_ms), ("p50", g.p50_ms), ("p99", g.p99_ms))
                    if value is not None]
        return (("LoadGen", f"{'VALID' if g.valid else 'INVALID'}: " + ", ".join(figures)),)


class LoadGenServer(_LoadGen):
    name = "loadgen-server"
    mode = "server"  # its table is the server scenario's (bench.scenarios.server)

    def check(self, reader, bench: BenchmarkSpec, targets: dict[str, TargetSpec], path: str) -> None:
        require_server_table(reader, bench, self.name, path)

    def busy_s(self, bench: BenchmarkSpec) -> float:
        return bench.table("server").duration_s

    def rate_and_duration(self, session: Session, warm: np.ndarray) -> tuple[float, float]:
        spec = session.bench.table("server")
        return spec.qps, spec.duration_for(session.stop)

    def compare_policy(self):
        from bench.analysis.compare import NotComparable

        return NotComparable("queueing latencies are autocorrelated, so sample tests do not apply: compare server "
                             "cells by a peak search (server.search = true)")


class LoadGenOffline(_LoadGen):
    name = "loadgen-offline"
    mode = "offline"
    slo_applies = False  # every sample goes in one query: its latencies are not per request
    latency_figures = False

    def rate_and_duration(self, session: Session, warm: np.ndarray) -> tuple[float, float]:
        return 1e9 / max(float(np.median(warm)), 1.0), max(session.stop.min_seconds, 1.0)

    def compare_policy(self):
        from bench.analysis.compare import CapacityRatio

        return CapacityRatio("LoadGen Offline samples/s", lambda c: c.metrics.throughput.value if c.metrics else None,
                             "no LoadGen Offline throughput in one of the cells")
