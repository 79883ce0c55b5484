"""The scenarios the harness knows, by name: one line each (bench.scenarios.base says what one is)."""
from __future__ import annotations

from bench.scenarios.base import Scenario
from bench.scenarios.generate import Generate
from bench.scenarios.loadgen import LoadGenOffline, LoadGenServer
from bench.scenarios.monitor import Monitor
from bench.scenarios.multi_stream import MultiStream
from bench.scenarios.offline import Offline
from bench.scenarios.server import Server
from bench.scenarios.single_stream import SingleStream

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    SingleStream(),
    Offline(),
    Server(),
    MultiStream(),
    LoadGenServer(),
    LoadGenOffline(),
    Monitor(),
    Generate(),
)}
DEFAULT = ("single-stream", "offline")  # a benchmark that names no scenarios runs these


def table_owners() -> dict[str, Scenario]:
    """Each [[benchmark]] key a scenario reads, and the first scenario that reads it."""
    owners: dict[str, Scenario] = {}
    for s in SCENARIOS.values():
        if s.table_key is not None:
            owners.setdefault(s.table_key, s)
    return owners


def compare_policy(name: str):
    """How cells of scenario `name` compare; a scenario this harness does not know is not comparable."""
    from bench.analysis.compare import NotComparable

    scenario = SCENARIOS.get(name)
    if scenario is None:
        return NotComparable(f"scenario {name!r} is unknown to this harness")
    return scenario.compare_policy()


def detail_rows(cell) -> tuple[tuple[str, str], ...]:
    """The scenario's own lines, then a served target's requests (errors by kind, the driver's lag)."""
    from bench.scenarios.net_requests import request_rows

    scenario = SCENARIOS.get(cell.scenario)
    if scenario is None or cell.status != "ok":
        return ()
    return scenario.detail_rows(cell) + request_rows(cell)
