"""Repetitions in rounds, and workers forked from hosts: the order, and real processes."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from bench.config.suite import parse_suite
from bench.runner.isolation import WorkerFailure, WorkerHosts
from bench.runner.plan import plan
from bench.runner.schedule import InPlanOrder, ShuffledRounds
from tests.helpers import load_run_json, run_cli, tiny_suite, write_suite


def _cells(batch_sizes: str = "[1, 2, 4, 8]"):
    return plan(parse_suite(tiny_suite(batch_sizes=batch_sizes, scenarios='["single-stream", "offline"]')))


def test_rounds_are_seeded_shuffles_that_keep_each_sweep_ascending():
    cells = _cells()
    rounds = [ShuffledRounds().order(cells, r) for r in range(4)]
    assert all(sorted(c.index for c in order) == list(range(len(cells))) for order in rounds)
    assert len({tuple(c.index for c in order) for order in rounds}) == 4  # each round its own order
    assert [c.index for c in ShuffledRounds().order(cells, 2)] == [c.index for c in rounds[2]]  # seeded
    assert [c.index for c in ShuffledRounds(seed=1).order(cells, 2)] != [c.index for c in rounds[2]]
    for order in rounds:
        # interleaved: the targets are mixed, not one block each
        targets = [c.key.target for c in order]
        assert targets != sorted(targets) and targets != sorted(targets, reverse=True)
        seen: dict[tuple, int] = {}
        for c in order:  # within a sweep (benchmark, target, scenario), batch sizes ascend
            sweep = (c.key.benchmark, c.key.target, c.key.scenario)
            assert c.key.batch_size > seen.get(sweep, 0)
            seen[sweep] = c.key.batch_size
    assert [c.index for c in InPlanOrder().order(list(reversed(cells)), 0)] == list(range(len(cells)))


def _pid(_job) -> int:
    return os.getpid()


def _hang(_job) -> None:
    time.sleep(600)


def _rss(_job) -> int:
    from bench.measure.memory import peak_rss_bytes

    return peak_rss_bytes()


def test_hosts_fork_a_fresh_worker_per_unit_and_keep_one_host_per_family(tmp_path):
    with WorkerHosts(tmp_path) as hosts:
        pids = [hosts.run("a", ("numpy",), _pid, None, tmp_path / "e", 30) for _ in range(3)]
        other = hosts.run("b", (), _pid, None, tmp_path / "e", 30)
        host_a = hosts._hosts["a"].proc.pid
        assert len({*pids, other}) == 4 and os.getpid() not in pids  # a new process every unit
        assert hosts._hosts["b"].proc.pid != host_a  # another family, another host
    assert not psutil.pid_exists(host_a) or psutil.Process(host_a).status() == psutil.STATUS_ZOMBIE


def test_a_hung_worker_is_killed_at_its_timeout_and_the_host_serves_the_next(tmp_path):
    with WorkerHosts(tmp_path) as hosts:
        got = hosts.run("a", (), _hang, None, tmp_path / "e", 1)
        assert isinstance(got, WorkerFailure) and got.kind == "timeout" and got.reason == "timed out after 1 s"
        assert isinstance(hosts.run("a", (), _pid, None, tmp_path / "e", 30), int)


def test_a_dead_host_fails_its_unit_as_a_crash_and_is_replaced(tmp_path):
    with WorkerHosts(tmp_path) as hosts:
        hosts.run("a", (), _pid, None, tmp_path / "e", 30)
        first = hosts._hosts["a"].proc
        first.kill()
        first.join()
        got = hosts.run("a", (), _pid, None, tmp_path / "e", 30)
        # the dead host is noticed before sending: a new one serves the unit
        assert isinstance(got, int) and hosts._hosts["a"].proc.pid != first.pid


def test_a_forked_worker_reports_the_memory_of_what_its_host_imported(tmp_path):
    # A worker forked from a host that imported ONNX Runtime holds its pages, as a spawned worker
    # that imported it would: peak RSS stays comparable between the two ways of starting, and a
    # family's host imports only its own runtime (an ORT worker does not carry torch).
    with WorkerHosts(tmp_path) as hosts:
        bare = hosts.run("bare", (), _rss, None, tmp_path / "e", 30)
        with_ort = hosts.run("ort", ("onnxruntime",), _rss, None, tmp_path / "e", 30)
    assert with_ort > bare + 5 * 2**20


def test_a_real_run_interleaves_the_repetitions_of_all_cells_in_rounds(tmp_path, capsys):
    suite = write_suite(tmp_path, tiny_suite(batch_sizes="[1, 2]").replace("ci_figures = []", "ci_figures = [], repeats = 3"))
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, stderr
    starts = [line for line in stderr.splitlines() if line.endswith(" ...")]
    rounds = [int(line.rsplit("repetition ", 1)[1].split()[0]) for line in starts]
    assert rounds == [1] * 4 + [2] * 4 + [3] * 4  # every cell once per round
    orders = [[line.split("] ", 1)[1].split(" ")[0] for line in starts[4 * r:4 * r + 4]] for r in range(3)]
    assert len({tuple(o) for o in orders}) > 1  # shuffled per round
    doc = load_run_json(tmp_path / "r")
    for c in doc["cells"]:
        reps = c["repetitions"]
        clean = [r for r in reps if not r["interfered"]]
        assert [r["index"] for r in reps] == [0, 1, 2]
        assert all(r["used"] == (not r["interfered"] or len(clean) < 2) for r in reps)


def test_reproducibility_check_slows_only_the_onnxruntime_cpu_targets():
    from bench.selfcheck.reproducibility import SLOWED_BACKEND, _slowed

    suite = parse_suite(tiny_suite(batch_sizes="[1, 2]"))
    slowed, n = _slowed(suite)
    assert n == 1 and slowed.targets["ort"].backend == SLOWED_BACKEND
    assert slowed.targets["torch"].backend == "torch"
    assert [b.targets for b in slowed.benchmarks] == [("ort",)]
    assert plan(slowed) and all(c.key.target == "ort" for c in plan(slowed))
    # --slowdown 10: the factor travels in the backend's name, to every worker
    from bench.backends.registry import backend_class

    ten, _ = _slowed(suite, 0.10)
    assert ten.targets["ort"].backend == "bench.selfcheck.slowed:SlowedOrt_10"
    assert backend_class(ten.targets["ort"].backend).slowdown == 0.10


def test_a_planted_slowdown_makes_each_call_that_much_slower():
    """The slowed call spins exactly its factor of the call's own time (a fake clock's calls)."""
    from bench.selfcheck import slowed

    ticks = iter([0, 1000, 1000, 1050, 1100])  # the call takes 1000 ns; then the spin's reads
    seen = []
    real = slowed.time.perf_counter_ns
    slowed.time.perf_counter_ns = lambda: (seen.append(1), next(ticks))[1]
    try:
        slowed._slowed_call(lambda: None, slowdown=0.10)
    finally:
        slowed.time.perf_counter_ns = real
    assert len(seen) == 5  # the spin ran until 1000 + 10% of 1000 = 1100, not past it


def test_reproducibility_pairs_count_re_run_coverage_and_a_a_verdicts(tmp_path):
    import json
    import shutil

    from bench.selfcheck.reproducibility import _pair

    sample = Path(__file__).parent / "data/run_v6.json"
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        shutil.copy(sample, d / "run.json")
    doc = json.loads(sample.read_text())
    ok = [c for c in doc["cells"] if c["status"] == "ok"]
    moved = ok[0]  # B's first ok cell moves its throughput far outside A's interval
    moved["metrics"]["throughput"]["value"] = moved["metrics"]["throughput"]["ci_high"] * 2
    (b / "run.json").write_text(json.dumps(doc))
    got = _pair(a, b)
    assert got.cells == len(ok)
    assert got.throughput_inside == len(ok) - 1 and got.p50_inside == len(ok)
    assert got.exit_zero  # compare decides on the per-process figures, which did not move


@pytest.mark.parametrize("width, reps, words", [
    ("0.0001", 4, "target ±0.0% not reached; max_repeats 4 reached"),  # never precise: up to max_repeats
    # precise at once: repeats alone. At 95% a 2-process interval is 12.7 standard errors wide
    # (Student t, 1 df), so an 11% gap between two processes on a loaded CI machine already misses
    # ±99%; at 50% confidence the t quantile is 1 and only a 99% gap would.
    ("0.99, confidence = 0.5", 2, "target ±99.0% reached"),
])
def test_adaptive_repeats_add_processes_until_the_process_level_precision(tmp_path, capsys, width, reps, words):
    stop = "ci_figures = [], repeats = 2, max_repeats = 4"
    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]").replace(
        "ci_figures = []", f'ci_figures = ["throughput"], ci_rel_width = {width}, repeats = 2, max_repeats = 4'))
    assert stop not in suite.read_text()
    code, _, stderr = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"))
    assert code == 0, stderr
    (cell,) = load_run_json(tmp_path / "r")["cells"]
    assert len(cell["repetitions"]) == reps
    assert f"precision across {reps} processes: throughput ±" in cell["stop_reason"] and words in cell["stop_reason"]


def test_an_unstable_cell_whose_threads_take_every_core_is_told_why():
    from dataclasses import replace

    from bench.results.files import read_run
    from bench.runner.assemble import _with_thread_hint

    cell = next(c for c in read_run(Path(__file__).parent / "data/run_v6.json").cells if c.status == "ok")
    cores = len(os.sched_getaffinity(0))
    every = replace(cell, target=replace(cell.target, details={**cell.target.details, "compute_threads": cores}))
    fewer = replace(cell, target=replace(cell.target, details={**cell.target.details, "compute_threads": cores - 1}))
    hint = _with_thread_hint("throughput varies 20% between processes", every)
    assert hint.startswith("throughput varies 20%") and f"take all {cores} cores" in hint
    assert _with_thread_hint("throughput varies 20% between processes", fewer) == "throughput varies 20% between processes"
    assert _with_thread_hint(None, every) is None  # a steady cell needs no advice
