"""The serving overhead (issue 28, item 5): a served cell against an in-process cell of the same
workload, paired by round. Planted repetitions: each round's served p50 is the in-process one's
plus a known cost, so the paired figure recovers it exactly, however much the rounds drift."""
from dataclasses import replace
from pathlib import Path

import pytest

from bench.analysis.serving import serving_overheads
from bench.results.files import read_run
from bench.results.records import RequestStats

DATA = Path(__file__).parent / "data" / "run_v12.json"


def _with_reps(cell, p50s, throughputs):
    reps = tuple(replace(cell.repetitions[0], index=i, used=True, p50_ms=p, throughput=t)
                 for i, (p, t) in enumerate(zip(p50s, throughputs)))
    return replace(cell, repetitions=reps)


def _served(cell, name="kserve-rest", failed=0):
    sent = 1000
    stats = RequestStats(load="closed loop, 1 in flight", sent=sent, ok=sent - failed, failed=failed,
                         error_rate=failed / sent, errors={"http_status": failed} if failed else {})
    return replace(cell, target=replace(cell.target, name=name), requests=stats,
                   id=cell.id.replace(cell.target.name, name))


def test_the_overhead_is_paired_by_round_and_survives_drift():
    run = read_run(DATA)
    local = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    drift = [1.0, 1.6, 0.8, 1.3, 2.0]  # the machine's mood per round: 2.5x between rounds
    local = _with_reps(local, [0.1 * d for d in drift], [40_000 / d for d in drift])
    served = _with_reps(_served(local), [0.1 * d + 0.5 for d in drift], [40_000 / (d * 6) for d in drift])
    got = serving_overheads(replace(run, cells=(local, served)))
    assert len(got) == 1
    o = got[0]
    assert (o.served, o.in_process, o.rounds) == ("kserve-rest", "ort-cpu", 5)
    assert o.added_p50_ms == pytest.approx(0.5)
    assert o.added_p50_low_ms == pytest.approx(0.5) and o.added_p50_high_ms == pytest.approx(0.5)  # no noise left
    assert o.time_ratio == pytest.approx(6.0)
    assert "+0.5 ms p50 per request [0.5, 0.5]" in o.line() and "x6" in o.line() and "5 rounds" in o.line()


def test_a_noisy_overhead_has_an_interval_and_failed_requests_are_named():
    run = read_run(DATA)
    local = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    local = _with_reps(local, [0.1, 0.1, 0.1, 0.1], [40_000] * 4)
    served = _with_reps(_served(local, failed=100), [0.5, 0.7, 0.6, 0.8], [8_000, 7_000, 7_500, 6_500])
    (o,) = serving_overheads(replace(run, cells=(local, served)))
    assert o.added_p50_ms == pytest.approx(0.55)
    assert o.added_p50_low_ms < o.added_p50_ms < o.added_p50_high_ms
    assert "10.0% of its requests failed" in o.line()


def test_cells_of_other_workloads_and_two_in_process_targets_give_no_overhead():
    run = read_run(DATA)
    assert serving_overheads(run) == []  # no served cell at all
    local = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    other = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/multi-stream/c2")
    assert serving_overheads(replace(run, cells=(local, _served(other)))) == []  # different scenario


def test_under_an_open_loop_only_the_added_latency_is_a_figure():
    run = read_run(DATA)
    local = next(c for c in run.cells if c.id == "mlp/ort-cpu/b4/single-stream")
    local = _with_reps(local, [0.1, 0.12, 0.11], [200.0] * 3)
    served = _with_reps(_served(local), [2.1, 2.3, 2.2], [200.0] * 3)
    from bench.results.records import Series, ServerInfo

    info = ServerInfo(200, 200, 200, 1000, True, (), None, Series(1.0, ()))
    (o,) = serving_overheads(replace(run, cells=(local, replace(served, server=info))))
    assert o.time_ratio is None and o.added_p50_ms == pytest.approx(2.09)
    assert "time per sample" not in o.line()
