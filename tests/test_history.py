"""History stores (SQLite and a real PostgreSQL) and `bench history`: planted steps found at the right run."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.results.files import read_run
from bench.analysis.history import analyse
from bench.results.records import Run
from bench.codec import to_json
from bench.results.stores import StoreError, open_store, redact
from tests.helpers import run_cli

TEMPLATE = Path(__file__).parent / "data/run_v2.json"
PG_URL = os.environ.get("BENCH_TEST_PG_URL")

needs_pg = pytest.mark.skipif(
    not PG_URL and not os.environ.get("CI"),
    reason="set BENCH_TEST_PG_URL to a PostgreSQL database (.ci/run starts one with .ci/postgres.sh)",
)


def nightly(i: int, throughput: float, commit: str | None = None, host: str = "nightly-1") -> Run:
    """A run of the template suite on night i whose ok cells have the given throughput."""
    run = read_run(TEMPLATE)
    cells = []
    for c in run.cells:
        if c.metrics is not None:
            tp = replace(c.metrics.throughput, value=throughput, ci_low=throughput * 0.99, ci_high=throughput * 1.01)
            c = replace(c, metrics=replace(c.metrics, throughput=tp))
        cells.append(c)
    env = replace(run.environment, host=host, harness_commit=commit or hashlib.sha1(str(i).encode()).hexdigest())
    return replace(run, run_id=f"night-{host}-{i:03d}", created_at=f"2026-10-{1 + i // 24:02d}T{i % 24:02d}:00:00Z",
                   environment=env, cells=tuple(cells))


def planted_series(n: int, step_at: int, drop: float, seed: int = 0) -> list[Run]:
    rng = np.random.default_rng(seed)
    return [nightly(i, 1000.0 * (1 - (drop if i >= step_at else 0)) * (1 + 0.005 * rng.standard_normal()))
            for i in range(n)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "history.sqlite")
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"  # a new schema per test (schema=NAME): the database is shared
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_store_records_once_and_reads_back(store_url):
    store = open_store(store_url)
    try:
        run = nightly(0, 1234.0)
        assert store.add_run(run) is True
        assert store.add_run(run) is False  # the same run again: no duplicate
        rows = store.rows()
    finally:
        store.close()
    ok = [c for c in run.cells if c.status == "ok"]
    assert len(rows) == len(ok) and {r.throughput for r in rows} == {1234.0}
    assert rows[0].commit_sha == run.environment.harness_commit


def _writer(url: str, worker: int, shared: list[int], own: int) -> None:
    store = open_store(url)
    try:
        for i in shared:
            store.add_run(nightly(i, 1000.0 + i))
        for j in range(own):
            store.add_run(nightly(100 + worker * own + j, 2000.0, host=f"w{worker}"))
    finally:
        store.close()


def test_parallel_writers_neither_corrupt_nor_duplicate(store_url):
    ctx = mp.get_context("spawn")
    shared, own, workers = list(range(8)), 4, 4
    procs = [ctx.Process(target=_writer, args=(store_url, w, shared, own)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * workers
    store = open_store(store_url)
    try:
        rows = store.rows()
    finally:
        store.close()
    per_run = len([c for c in read_run(TEMPLATE).cells if c.status == "ok"])
    run_ids = {r.run_id for r in rows}
    assert len(run_ids) == len(shared) + workers * own
    assert len(rows) == len(run_ids) * per_run  # every cell once


def test_history_finds_a_planted_step_at_the_right_run(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    runs = planted_series(30, step_at=18, drop=0.10)
    store = open_store(db)
    for run in runs:
        store.add_run(run)
    store.close()
    reports = analyse(open_store(db).rows(), "throughput", 0.05)
    assert reports and all(len(r.changes) == 1 for r in reports)
    change = reports[0].changes[0]
    assert change.index == 18 and change.run_id == runs[18].run_id
    assert change.commit_sha == runs[18].environment.harness_commit
    assert change.regression and change.step == pytest.approx(-0.10, abs=0.01)
    assert not reports[0].latest_starts_regression
    code, out, _ = run_cli(capsys, "history", "--db", db)
    assert code == 0  # the regression is old news: the latest run does not start it
    assert f"REGRESSION at run 19/30 {runs[18].run_id}" in out
    assert f"commit {runs[18].environment.harness_commit[:12]}" in out and "(-9.8%)" in out


def test_history_gate_fails_when_the_latest_run_starts_a_regression(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    runs = planted_series(20, step_at=19, drop=0.12, seed=3)
    for r in runs:
        (tmp_path / r.run_id).mkdir()
        (tmp_path / r.run_id / "run.json").write_text(json.dumps(to_json(r)))
    code, out, _ = run_cli(capsys, "history", "add", *[str(tmp_path / r.run_id) for r in runs[:-1]], "--db", db)
    assert code == 0 and out.count("recorded") == 19
    code, _, _ = run_cli(capsys, "history", "--db", db)
    assert code == 0
    code, out, err = run_cli(capsys, "history", "add", str(tmp_path / runs[-1].run_id), "--db", db)
    assert code == 0, err
    assert out.strip() == f"{runs[-1].run_id}: recorded in {db}"
    code, out, err = run_cli(capsys, "history", "add", str(tmp_path / runs[-1].run_id), "--db", db)
    assert code == 0 and out.strip() == f"{runs[-1].run_id}: already recorded in {db}"  # adding twice is no error
    code, out, err = run_cli(capsys, "history", "--db", db)
    assert code == 1
    assert "the latest run starts a regression" in err and "the latest run starts a regression: " in out


def test_history_with_a_single_run_says_so(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    store = open_store(db)
    store.add_run(nightly(0, 1000.0))
    store.close()
    code, out, _ = run_cli(capsys, "history", "--db", db)
    assert code == 4 and "1 run: too few for change points (need 4)" in out  # nothing gated: no data


def test_history_that_tested_no_series_is_no_data_exit_4_never_pass(tmp_path, capsys):
    """Issue 27: a gate that tested nothing has not passed. Series too short to test, an empty
    store and an --only that matches nothing are each "no data", exit 4, naming how many series
    it tested; once every series has its 4th run the same store passes (exit 0)."""
    db = str(tmp_path / "h.sqlite")
    store = open_store(db)
    for i in range(3):
        store.add_run(nightly(i, 1000.0 + i))
    store.close()
    code, out, err = run_cli(capsys, "history", "--db", db)
    assert code == 4
    gate = out.splitlines()[-2]
    assert gate.startswith("gate: no data; 0 of 2 series tested (a series is tested from its 4th run on; 2 have fewer)")
    assert "gate: pass" not in out and ", so nothing passed;" in gate
    assert err.strip() == "bench: no data: the gate tested 0 of 2 series (each needs 4 runs); exit 4"
    code, out, _ = run_cli(capsys, "history", "--db", db, "--json")
    assert code == 4 and len(json.loads(out)) == 2  # --json keeps stdout JSON
    code, out, _ = run_cli(capsys, "history", "--db", db, "--only", "nothing*")
    assert code == 4 and out.strip() == "history: no data: no recorded cells match --only 'nothing*'; the gate tested 0 series"
    code, out, err = run_cli(capsys, "history", "--db", db, "--only", "nothing*", "--json")
    assert code == 4 and json.loads(out) == [] and "no data" in err
    empty = str(tmp_path / "empty.sqlite")
    open_store(empty).close()
    code, out, _ = run_cli(capsys, "history", "--db", empty)
    assert code == 4 and out.strip() == "history: no data: no recorded cells; the gate tested 0 series"
    store = open_store(db)
    store.add_run(nightly(3, 1001.0))
    store.close()
    code, out, _ = run_cli(capsys, "history", "--db", db)
    assert code == 0 and "gate: pass; 2 of 2 series tested" in out


def test_a_fleet_kind_with_no_tested_series_says_no_data_beside_the_kinds_gates(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    store = open_store(db)
    for i in range(5):
        store.add_run(nightly(i, 1000.0 + i, host="old"))
    store.add_run(nightly(5, 1000.0, host="new"))
    store.close()
    code, out, _ = run_cli(capsys, "history", "--db", db)
    assert code == 0  # one kind's gate tested and passed; the other's is said to have no data
    assert "gate on old: pass; 2 of 2 series tested" in out
    assert "gate on new: no data; 0 of 2 series tested" in out


def test_unreachable_database_is_one_line_without_the_password(tmp_path, capsys):
    url = "postgresql://nightly:s3cret-pw@127.0.0.1:1/history"
    code, _, err = run_cli(capsys, "history", "--db", url)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "s3cret-pw" not in err and "postgresql://nightly:***@127.0.0.1:1/history" in err
    with pytest.raises(StoreError, match="not a history URL"):
        open_store("mysql://x@y/z")
    assert redact(url) == "postgresql://nightly:***@127.0.0.1:1/history"


@needs_pg
def test_run_record_to_postgres_keeps_the_password_out_of_results(tmp_path, capsys):
    from tests.helpers import tiny_suite, write_suite

    suite = write_suite(tmp_path, tiny_suite(targets='["ort"]', batch_sizes="[1]"))
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "r"), "--record", "--db", PG_URL)
    assert code == 0, err
    password = PG_URL.split(":")[2].split("@")[0]
    run_json = next((tmp_path / "r").glob("*/run.json")).read_text()
    assert password not in run_json and password not in err
    assert "history: recorded in" in err
    store = open_store(PG_URL)
    try:
        assert json.loads(run_json)["run_id"] in {r.run_id for r in store.rows()}
    finally:
        store.close()
    import psycopg

    with psycopg.connect(PG_URL) as conn:  # no schema=NAME: the harness's own schema, bench
        assert conn.execute("SELECT 1 FROM bench.runs WHERE run_id = %s", (json.loads(run_json)["run_id"],)).fetchone()


def test_history_add_refuses_bad_files_and_writes_nothing(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run_cli(capsys, "history", "add", str(bad), "--db", str(db))
    assert code == 2 and "not JSON" in err
    code, _, err = run_cli(capsys, "history", "add", "--db", str(db))
    assert code == 2 and "name at least one run" in err


@pytest.mark.parametrize("text, secret", [
    ("--db=postgresql://nightly:Top5ecret@10.0.0.1/h", "Top5ecret"),
    ("postgresql://nightly@127.0.0.1:1/h?sslmode=off&password=s3cretQ", "s3cretQ"),
    ("postgresql://nightly:Sup3rSecret@[::1/h", "Sup3rSecret"),
])
def test_redact_catches_passwords_anywhere(text, secret):
    assert secret not in redact(text) and "***" in redact(text)


def test_odd_urls_never_echo_their_password(capsys):
    for url in ("postgresql://nightly@127.0.0.1:1/h?password=s3cretQ", "postgresql://nightly:Sup3rSecret@[::1/h"):
        code, _, err = run_cli(capsys, "history", "--db", url)
        assert code == 2 and "s3cretQ" not in err and "Sup3rSecret" not in err
        assert len(err.strip().splitlines()) == 1


def test_a_run_still_running_is_not_recorded(tmp_path, capsys):
    run = replace(nightly(0, 1000.0), status="running")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text(json.dumps(to_json(run)))
    code, _, err = run_cli(capsys, "history", "add", str(tmp_path / "r"), "--db", str(tmp_path / "h.sqlite"))
    assert code == 2 and "is still running" in err


def test_gate_on_simulated_nights_controls_false_alarms_per_night_and_finds_a_step():
    from bench.analysis.gate_sim import simulate

    # this machine's noise (a third of processes 25% slow, 3% jitter), 24 series x 30 runs,
    # 5 processes per run (the default suite's repeats); seeded, so the figures are fixed
    sim = simulate(nights=200, series=24, runs=30, processes=5, step=0.15, stepped=24, seed=11)
    assert sim.false_alarm_nights <= 0.05  # alpha 0.05 per night (1.7% over 600 nights)
    assert sim.found_within_2 >= 0.9
    one = simulate(nights=100, series=24, runs=30, processes=5, step=0.15, stepped=1, seed=12)
    assert 0.2 <= one.found_within_2 < sim.found_within_2  # one series alone: BH needs it to stand out


def test_gate_uses_benjamini_hochberg_across_series():
    from bench.analysis.history import SeriesReport, gate

    def rep(p, step):
        return SeriesReport("k", "m", "throughput", (), (), (), (), (), "", p, step)

    # 24 series: one at p = 0.01 alone is not enough (0.01 > 0.05 / 24) ...
    lone = gate([rep(0.5, 0.0)] * 23 + [rep(0.01, -0.2)], 0.05)
    assert not any(r.alarm for r in lone)
    # ... but many moved together pass BH (p_(k) <= 0.05 k / 24), and only where the step is worse
    many = gate([rep(0.5, 0.0)] * 12 + [rep(0.02, -0.2)] * 11 + [rep(0.001, +0.2)], 0.05)
    assert [r.alarm for r in many] == [False] * 12 + [True] * 11 + [False]
    small = gate([rep(0.001, -0.02)], 0.05)  # significant, but under the 5% threshold
    assert not small[0].alarm
