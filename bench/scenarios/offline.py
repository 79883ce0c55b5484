"""offline: batches issued back to back for throughput.

The headline figure is samples/s over the measured window (latency per batch is kept too), so
compare's sample test judges the time per sample. On a GPU with inputs on the device the calls
are queued back to back and timed by CUDA events, read after one synchronize per chunk.
"""
from __future__ import annotations

from bench.scenarios.base import Scenario, ScenarioRun, Session, measured_run


class Offline(Scenario):
    name = "offline"
    device_timed = True

    def run(self, session: Session) -> ScenarioRun:
        return measured_run(session, wait_each_call=False)
