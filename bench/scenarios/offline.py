"""offline: batches issued back to back for throughput.

The headline figure is samples/s over the measured window (latency per batch is kept too), so
compare's sample test judges the time per sample. On a GPU with inputs on the device the calls
are queued back to back and timed by CUDA events, read after one synchronize per chunk. A served
target: one batch request in flight at a time (the server, not the client, decides how it overlaps
work; bench.scenarios.net_runs).
"""
from __future__ import annotations

from bench.scenarios import net_runs
from bench.scenarios.base import Scenario, ScenarioRun, Session, measured_run


class Offline(Scenario):
    name = "offline"
    device_timed = True

    def run(self, session: Session) -> ScenarioRun:
        if (requester := session.backend.requester()) is not None:
            return net_runs.closed_run(session, requester, 1)
        return measured_run(session, wait_each_call=False)
