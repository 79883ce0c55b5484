"""The asyncio driver of served targets (bench.served.driver) against a REAL loopback HTTP server.

The server is started by this module on a free port and stopped at its end. Its path picks what it
does: /ok answers `ok`; /every10/NAME answers 500 on every tenth request to that path; /serial/MS
answers one request at a time, each after MS ms (queueing); /stall never answers; /close drops the
connection; /malformed answers garbage. The client is tests/served_echo.py (a user backend with a
Requester over asyncio streams). No assertion is on a measured time's upper bound: only lower
bounds that a slower machine can only exceed, counts, and planted streams.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from bench.codec import from_json, to_json
from bench.errors import RequestFailed
from bench.results.files import read_run
from bench.results.records import SCHEMA_VERSION, Cell, RequestStats, Run
from bench.scenarios import net_requests, net_runs
from bench.scenarios.base import Figures
from bench.served import driver
from tests.helpers import FAST_STOP, load_run_json, run_cli, write_suite
from tests.served_echo import EchoRequester

ROOT = Path(__file__).parents[1]
SCHEMA = json.loads((ROOT / "bench/results/run.schema.json").read_text())
SAMPLE_V12 = ROOT / "tests/data/run_v12.json"
NO_WARMUP = None


class LoopbackServer:
    """HTTP/1.1 keep-alive server on 127.0.0.1 in a thread of its own, with its own event loop."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="loopback-http", daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the loopback server did not start"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.lock = asyncio.Lock()
        self.ready.set()
        self.loop.run_forever()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                length = 0
                while (h := await reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = h.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                path = line.split(b" ")[1].decode()
                n = self.counts[path] = self.counts.get(path, 0) + 1
                if path == "/stall":
                    await asyncio.sleep(3600)
                elif path == "/close":
                    return
                elif path == "/malformed":
                    writer.write(b"BANANA\r\n\r\n")
                elif path.startswith("/every10/") and n % 10 == 0:
                    writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nboom")
                elif path.startswith("/serial/"):
                    async with self.lock:  # one at a time: later arrivals queue
                        await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1e3)
                        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _shutdown(self) -> None:
        self.server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server():
    s = LoopbackServer()
    yield s
    s.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def after(n: int):
    """A stop rule: once n ok requests are in."""
    return lambda elapsed_ns, chunks: f"{n} ok" if sum(c.size for c in chunks) >= n else None


FEEDS = {"x": np.zeros((1, 4), dtype=np.float32)}


# --- open loop: latency from the schedule, errors by kind, lag ---------------------------------

def test_open_loop_latency_runs_from_the_schedule_so_queueing_shows(server):
    """Five requests all due at t0 to a server that answers one at a time, each after 20 ms: the
    k-th to finish waited for the k - 1 before it, and its latency (from the schedule) says so."""
    req = EchoRequester(server.url("/serial/20"))
    net = driver.open_loop(req, [req.prepare(FEEDS)], np.zeros(5, dtype=np.int64), warmup=NO_WARMUP)
    assert net.mode == "open" and net.ok.all() and net.error_code.size == 5
    lat = np.sort(net.latencies_ns)
    for k in range(5):
        assert lat[k] >= (k + 1) * 20_000_000  # queued behind k others: never hidden
    assert (net.lag_ns >= 0).all() and net.lag_ns.size == 5
    assert np.array_equal(net.lag_ns, net.sent_ns - net.scheduled_ns)


def test_open_loop_counts_a_stall_as_a_timeout_never_a_success(server):
    req = EchoRequester(server.url("/stall"), timeout_s=0.2)
    net = driver.open_loop(req, [req.prepare(FEEDS)], np.arange(3, dtype=np.int64) * 1_000_000, timeout_s=0.2,
                           warmup=NO_WARMUP)
    assert net.error_counts() == {"timeout": 3} and net.latencies_ns.size == 0
    assert all((net.end_ns - net.sent_ns) >= 200_000_000)
    tally = net_requests.RequestTally.of(net, "open loop")
    stats = net_requests.stats_of(tally)
    assert (stats.sent, stats.ok, stats.failed, stats.error_rate) == (3, 0, 3, 1.0)
    assert stats.errors == {"timeout": 3} and "timeout" in stats.error_examples
    with pytest.raises(Exception, match="all 3 requests failed: timeout 100.0%"):
        raise net_runs._no_success(tally)


def test_closed_loop_workers_time_out_a_stall_and_go_on(server):
    """The watchdog cancels each stalled request past the timeout; the worker counts it and sends
    its next. Every request sent ends as a timeout (those in flight at the window's end too)."""
    req = EchoRequester(server.url("/stall"))
    net = driver.closed_loop(req, req.prepare(FEEDS), 2, lambda e, c: "enough" if e >= 250_000_000 else None,
                             timeout_s=0.1, warmup=NO_WARMUP)
    counts = net.error_counts()
    assert set(counts) == {"timeout"} and counts["timeout"] >= 2 and net.cut_at_end == 0
    assert set(np.unique(net.client)) == {0, 1} and net.latencies_ns.size == 0
    assert all((net.end_ns - net.sent_ns) >= 100_000_000)
    assert net.examples[0] == ("timeout", "no response within the driver's timeout (0.1 s)")


@pytest.mark.parametrize("path, kind", [("/close", "connect"), ("/malformed", "malformed")])
def test_a_dropped_connection_and_a_garbage_answer_are_counted_by_kind(server, path, kind):
    req = EchoRequester(server.url(path))
    net = driver.open_loop(req, [req.prepare(FEEDS)], np.arange(4, dtype=np.int64) * 100_000, warmup=NO_WARMUP)
    assert net.error_counts() == {kind: 4} and not net.ok.any()
    assert [k for k, _ in net.examples] == [kind] * len(net.examples) and 1 <= len(net.examples) <= 3


def test_an_unreachable_server_is_a_connect_error_per_request():
    req = EchoRequester(f"http://127.0.0.1:{closed_port()}/ok")
    net = driver.closed_loop(req, req.prepare(FEEDS), 2, lambda e, c: "enough" if e > 100_000_000 else None,
                             warmup=NO_WARMUP)
    counts = net.error_counts()
    assert set(counts) == {"connect"} and counts["connect"] >= 2 and net.latencies_ns.size == 0
    assert "cannot connect" in net.examples[0][1]


def test_a_slow_client_lags_and_its_cell_is_driver_limited(server):
    """Every send blocks the event loop for 3 ms while requests are due every 0.5 ms: each leaves
    later than the one before, so the lag grows past the 1 ms limit whatever the machine."""
    req = EchoRequester(server.url("/ok"), send_block_s=0.003)
    schedule = np.arange(40, dtype=np.int64) * 500_000
    net = driver.open_loop(req, [req.prepare(FEEDS)], schedule, warmup=NO_WARMUP)
    assert net.ok.all()
    assert net.lag_ns[-1] >= 39 * 2_500_000  # sent no earlier than 39 blocked sends, due at 19.5 ms
    assert driver.lag_limited(net.lag_ns).startswith("the driver's send lag p99")
    stats = net_requests.stats_of(net_requests.RequestTally.of(net, "open loop"))
    assert stats.driver_limited and stats.send_lag_p99_us > driver.DRIVER_LAG_LIMIT_NS / 1e3
    assert dict(net_requests.request_rows(_cell(stats)))["driver"].startswith("DRIVER-LIMITED")


def test_prepare_runs_once_outside_the_timed_loop(server):
    """A slow prepare (50 ms planted) is paid once, before the clock: the driver never prepares."""
    calls = []

    class Counting(EchoRequester):
        def prepare(self, feeds):
            calls.append(1)
            return super().prepare(feeds)

    req = Counting(server.url("/ok"), prepare_delay_s=0.05)
    prepared = req.prepare(FEEDS)  # as the scenario does, before the driver starts its clock
    net = driver.closed_loop(req, prepared, 1, after(20), warmup=driver.WarmupRule(3, 0.0, 5.0))
    assert net.ok.all() and net.latencies_ns.size >= 20 and net.warmup_latencies_ns.size >= 3
    assert len(calls) == 1


def test_driver_lag_limit_on_planted_lags():
    assert driver.lag_limited(np.full(1000, 10_000, dtype=np.int64)) == ""
    planted = np.full(1000, 10_000, dtype=np.int64)
    planted[:20] = 5_000_000  # 2% of sends 5 ms late: the p99 is past 1 ms
    assert "over 1,000 µs" in driver.lag_limited(planted)
    planted[:20] = 10_000
    planted[:5] = 5_000_000  # 0.5%: the p99 is not
    assert driver.lag_limited(planted) == ""
    assert driver.lag_limited(np.zeros(0, dtype=np.int64)) == ""


def test_a_lag_well_inside_the_latency_tail_does_not_limit_the_cell():
    planted = np.full(1000, 10_000, dtype=np.int64)
    planted[:20] = 2_000_000  # lag p99 2 ms
    assert driver.lag_limited(planted, latency_p99_ns=50e6) == ""  # a 50 ms tail is the server's
    why = driver.lag_limited(planted, latency_p99_ns=5e6)  # 40% of a 5 ms tail: the driver's
    assert "over 1,000 µs and 40% of the requests' latency p99 (5 ms)" in why, why


# --- closed loop: reuse, error rate, per-client ------------------------------------------------

def test_closed_loop_reuses_connections_and_counts_every_tenth_500(server):
    req = EchoRequester(server.url("/every10/closed"))
    net = driver.closed_loop(req, req.prepare(FEEDS), 2, after(180), warmup=driver.WarmupRule(4, 0.0, 5.0))
    assert net.mode == "closed" and net.concurrency == 2
    assert req.opened <= 4  # two workers, a connection each (a 500 answer keeps its connection)
    counts = net.error_counts()
    sent = int(net.error_code.size)
    assert set(counts) == {"http_status"} and abs(counts["http_status"] - sent / 10) <= 2
    assert net.latencies_ns.size == sent - counts["http_status"]  # failed requests are never timed
    assert set(np.unique(net.client)) == {0, 1}
    assert any("HTTP 500" in r for _, r in net.examples)
    assert net.lag_ns.size >= 1 and (net.lag_ns >= 0).all()  # the event loop's lag, sampled
    stats = net_requests.stats_of(net_requests.RequestTally.of(net, "closed loop, 2 in flight"))
    assert stats.errors == {"http_status": counts["http_status"]} and stats.error_examples == {"http_status": "HTTP 500"}
    assert abs(stats.error_rate - 0.1) <= 0.02


def test_a_requester_bug_is_raised_not_counted(server):
    class Buggy(EchoRequester):
        async def send(self, prepared):
            raise KeyError("bug")

    req = Buggy(server.url("/ok"))
    with pytest.raises(KeyError):
        driver.closed_loop(req, b"", 1, after(5), warmup=NO_WARMUP)
    with pytest.raises(KeyError):
        driver.open_loop(req, [b""], np.zeros(3, dtype=np.int64), warmup=NO_WARMUP)


def test_request_failed_kinds_are_the_contracts():
    with pytest.raises(ValueError):
        RequestFailed("dns", "x")


# --- the records: stats, merging, validity, reports, schema ------------------------------------

def _cell(stats: RequestStats) -> Cell:
    cell = next(c for c in read_run(SAMPLE_V12).cells if c.status == "ok")
    return replace(cell, requests=stats)


def _planted(sent: int, failed: dict[str, int], lag_us: list[float]) -> net_requests.RequestTally:
    return net_requests.RequestTally("open loop, Poisson at 100/s", sent, sent - sum(failed.values()), failed,
                                 tuple((k, f"{k} example") for k in failed), (np.asarray(lag_us) * 1e3).astype(np.int64),
                                 "send - scheduled send, per request")


def test_request_stats_from_a_planted_tally_and_merged_over_processes():
    a = net_requests.stats_of(_planted(100, {"http_status": 10}, [10.0] * 100))
    b = net_requests.stats_of(_planted(300, {"timeout": 3, "http_status": 20}, [20.0] * 296 + [3000.0] * 4))
    assert (a.failed, a.error_rate, a.driver_limited) == (10, 0.1, False)
    assert b.errors == {"timeout": 3, "http_status": 20}  # in REQUEST_ERROR_KINDS order
    assert list(b.errors) == ["timeout", "http_status"] and b.driver_limited
    figs = [Figures(None, np.zeros(0), 0, 0, None, None, {"requests": s}) for s in (a, b)]
    merged = net_requests.merge_requests(figs, {"requests": a})["requests"]
    assert (merged.sent, merged.ok, merged.failed) == (400, 367, 33) and merged.error_rate == 33 / 400
    assert merged.errors == {"timeout": 3, "http_status": 30} and merged.driver_limited
    assert merged.send_lag_p99_us == b.send_lag_p99_us and "1 of 2 processes" in merged.driver_limited_why


def test_failed_requests_and_a_lagging_driver_make_a_server_cell_invalid():
    cell = next(c for c in read_run(ROOT / "tests/data/run_v12.json").cells if c.server is not None)
    stats = net_requests.stats_of(_planted(1000, {"http_status": 100}, [10.0] * 980 + [2000.0] * 20))
    info = net_requests.server_validity(replace(cell.server, valid=True, validity=()), stats)
    assert not info.valid
    assert "100 of 1,000 requests failed (http_status 10.0%)" in info.validity[0]
    assert info.validity[1].startswith("driver-limited: the driver's send lag p99")


def test_the_run_table_and_the_reports_show_the_error_rate():
    from bench.report.markdown import run_summary
    from bench.report.run_tables import summary_table
    from bench.scenarios.registry import detail_rows

    stats = net_requests.stats_of(_planted(1000, {"http_status": 100}, [10.0] * 1000))
    run = read_run(SAMPLE_V12)
    cell = replace(next(c for c in run.cells if c.status == "ok" and c.server is None), requests=stats)
    run = replace(run, cells=(cell,))
    table = summary_table(run)
    status = [str(getattr(v, "text", v)) for row in table.rows for v in row]
    assert any("errors 10.0% (http_status 10.0%)" in s for s in status)
    rows = dict(detail_rows(cell))
    assert rows["requests"].startswith("1,000 sent (open loop, Poisson at 100/s), 900 ok, 100 failed: errors 10.0%")
    assert "http_status 100, e.g. http_status example" in rows["requests"]
    md = run_summary(run, detail_rows)
    assert "errors 10.0%" in md and "figures are from the ok requests" in md


def test_the_current_schema_validates_and_a_schema_12_file_still_loads():
    assert SCHEMA_VERSION >= 13 and SCHEMA["$defs"]["Run"]["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    doc = json.loads(SAMPLE_V12.read_text())
    assert doc["schema_version"] == 12
    run = read_run(SAMPLE_V12)
    assert run.schema_version == SCHEMA_VERSION and all(c.requests is None for c in run.cells)
    jsonschema.validate(to_json(run), SCHEMA)
    stats = net_requests.stats_of(_planted(50, {"malformed": 1}, [5.0] * 50))
    served = replace(run, cells=tuple(replace(c, requests=stats) if c.status == "ok" else c for c in run.cells))
    doc = to_json(served)
    jsonschema.validate(doc, SCHEMA)
    assert from_json(Run, doc) == served
    bad = json.loads(json.dumps(doc))
    bad["cells"][0]["requests"]["failed"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


# --- whole runs: scenarios on a served target, pre-flight --------------------------------------

def _served_suite(tmp_path: Path, url: str, scenarios: str, extra: str = "",
                  stop: str = FAST_STOP[:-1] + ", repeats = 1 }") -> Path:
    return write_suite(tmp_path, f"""
        [suite]
        name = "served"

        [targets.echo]
        backend = "tests.served_echo:EchoBackend"
        url = "{url}"
        timeout_s = 2.0

        [[benchmark]]
        name = "m"
        model = "zoo:mlp"
        model_args = {{ in_features = 16, width = 32, depth = 2, classes = 4 }}
        batch_sizes = [1]
        scenarios = {scenarios}
        targets = ["echo"]
        stop = {stop}
        {extra}
    """)


def test_a_served_run_records_its_requests_in_run_json_and_the_table(server, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    suite = _served_suite(tmp_path, server.url("/every10/run"), '["single-stream", "multi-stream", "server"]',
                          "concurrency = [2]\n        server = { qps = 200, duration_s = 0.5 }")
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "out"))
    doc = load_run_json(tmp_path / "out")
    assert doc["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(doc, SCHEMA)
    cells = {c["scenario"]: c for c in doc["cells"]}
    assert set(cells) == {"single-stream", "multi-stream", "server"}, err
    for name, c in cells.items():
        assert c["status"] == "ok", (name, c["reason"])
        r = c["requests"]
        assert r["sent"] == r["ok"] + r["failed"] and set(r["errors"]) <= {"http_status"}
        assert abs(r["error_rate"] - 0.1) <= 0.05, (name, r)
        assert c["metrics"]["latency_ms"]["n"] <= r["ok"]  # figures from the ok requests alone
        # the server under test is another process on this CPU by design: recorded, never "interfered"
        assert all(not rep["interfered"] for rep in c["repetitions"]), (name, c["repetitions"])
    assert cells["multi-stream"]["clients"]["concurrency"] == 2
    server_cell = cells["server"]
    assert not server_cell["server"]["valid"]
    assert any("requests failed (http_status" in v for v in server_cell["server"]["validity"])
    assert "errors" in out and "http_status" in out  # the run table marks the cells


def test_an_unreachable_url_exits_2_before_any_cell_with_one_line(tmp_path, capsys):
    port = closed_port()
    suite = write_suite(tmp_path, f"""
        [suite]
        name = "served"

        [targets.remote]
        backend = "kserve-v2"
        url = "http://127.0.0.1:{port}"
        model = "m"
        connect_timeout_s = 2.0

        [[benchmark]]
        name = "m"
        model = "zoo:mlp"
        model_args = {{ in_features = 16, width = 32, depth = 2, classes = 4 }}
        batch_sizes = [1]
        scenarios = ["single-stream"]
        targets = ["remote"]
        stop = {FAST_STOP}
    """)
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "out"))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and f"target remote: cannot connect to http://127.0.0.1:{port}" in lines[0], err
    assert not list((tmp_path / "out").glob("*/run.json"))  # nothing measured, no run started


def test_a_peak_search_on_a_served_target_uses_the_probe_function(server, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    suite = _served_suite(tmp_path, server.url("/ok"), '["server"]',
                          "server = { qps = 50, duration_s = 0.3, search = true, max_probes = 3 }\n"
                          "        slo = { p99_ms = 10000 }")
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "out"))
    cell = load_run_json(tmp_path / "out")["cells"][0]
    assert cell["status"] == "ok", cell["reason"]
    curve = cell["server"]["curve"]
    assert len(curve) == 3 and all(p["requests"] > 0 for p in curve)
    assert cell["requests"]["failed"] == 0 and cell["requests"]["load"].startswith("open loop, Poisson at")
    assert "peak search on a served target: 3 rates tried" in cell["repetitions"][0]["stop_reason"]


def test_a_server_that_fails_every_request_fails_the_cell_naming_the_kind(server, tmp_path, capsys, monkeypatch):
    """Every answer garbage, under the interval stop rule (which needs a latency): the cell fails
    with the error kind and an example, it is not measured as fast."""
    monkeypatch.syspath_prepend(str(ROOT))
    suite = _served_suite(tmp_path, server.url("/malformed"), '["single-stream"]', stop=(
        "{ min_seconds = 0.05, max_seconds = 0.5, min_iterations = 5, warmup_iterations = 2, warmup_seconds = 0.0, "
        "repeats = 1 }"))
    code, out, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "out"))
    cell = load_run_json(tmp_path / "out")["cells"][0]
    assert code == 3 and cell["status"] == "failed" and cell["failure_kind"] == "error"
    assert "requests failed: malformed 100.0% (not an HTTP status line" in cell["reason"]
