"""single-stream: one request (one batch) at a time, the next issued when the previous returns.

The headline figure is per-request latency, so compare's sample test judges the p50. On a GPU
with inputs on the device each call is timed by its own pair of CUDA events and the device is
waited for after it, outside the events. A served target: one request in flight, each sent when the
last returns (bench.scenarios.net_runs).
"""
from __future__ import annotations

from bench.scenarios import net_runs
from bench.scenarios.base import Scenario, ScenarioRun, Session, measured_run


class SingleStream(Scenario):
    name = "single-stream"
    device_timed = True

    def run(self, session: Session) -> ScenarioRun:
        if (requester := session.backend.requester()) is not None:
            return net_runs.closed_run(session, requester, 1)
        return measured_run(session, wait_each_call=True)

    def compare_policy(self):
        from bench.analysis.compare import SampleTest

        return SampleTest("p50")
