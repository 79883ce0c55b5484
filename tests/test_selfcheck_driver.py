"""The driver self-check (`bench self-check --checks driver`, bench.selfcheck.driver_rate): the rate
search on planted probe outcomes, the probe's verdict, wrk's output read back, the built-in server's
framing, the verdict lines and exit codes on injected figures, and one real short run against the
built-in server with wrk where wrk is installed. No assertion is on a measured time or rate beyond
"more than zero": this machine is shared and its figures move."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from bench.selfcheck import CHECKS, DEFAULT_CHECKS
from bench.selfcheck import driver_rate as dr
from bench.selfcheck.check import judge
from bench.selfcheck.driver_server import RESPONSE, split_requests
from tests.helpers import run_cli


def _probe(rate: float, sustained: bool, achieved: float | None = None, lag_us: float = 100.0, k: int = 1) -> dr.Probe:
    return dr.Probe(rate, k, 3.0, rate if achieved is None else achieved, lag_us, 0, 0.001, sustained)


class Planted:
    """A probe function whose outcome is planted: sustained up to `capacity`, and the rates in
    `fail_once` not sustained the first time they are asked again after passing once."""

    def __init__(self, capacity: float, fail_once: tuple[float, ...] = ()):
        self.capacity, self.fail_once, self.asked = capacity, set(fail_once), []

    def __call__(self, rate: float) -> dr.Probe:
        seen = rate in self.asked
        self.asked.append(rate)
        if seen and rate in self.fail_once:
            self.fail_once.discard(rate)
            return _probe(rate, False)
        return _probe(rate, rate <= self.capacity)


# --- the rate search ------------------------------------------------------------------------------

def test_the_search_doubles_bisects_and_repeats_the_best_rate():
    probe = Planted(3000)
    s = dr.search_rate(probe, start_qps=500, bisect_steps=4)
    # up: 500, 1000, 2000 sustained, 4000 not; bisect [2000, 4000]: 3000 yes, 3500 / 3250 / 3125 no;
    # then 3000 once more
    assert probe.asked == [500, 1000, 2000, 4000, 3000, 3500, 3250, 3125, 3000]
    assert s.best_qps == 3000 and [p.rate_qps for p in s.confirming] == [3000, 3000]
    assert [p.rate_qps for p in s.probes] == probe.asked


def test_the_bisection_stops_when_its_bracket_is_within_five_percent():
    probe = Planted(3900)
    s = dr.search_rate(probe, start_qps=1000, bisect_steps=10)
    # [2000, 4000] -> 3000 yes, 3500 yes, 3750 yes, 3875 yes (4000 - 3875 = 125 <= 5% of 4000): stop
    assert probe.asked == [1000, 2000, 4000, 3000, 3500, 3750, 3875, 3875]
    assert s.best_qps == 3875


def test_a_start_too_high_is_halved_until_a_rate_is_sustained():
    probe = Planted(100)
    s = dr.search_rate(probe, start_qps=500, bisect_steps=2)
    # 500, 250, 125 no, 62.5 yes; bisect [62.5, 125]: 93.75 yes, 109.375 no; 93.75 again
    assert probe.asked == [500, 250, 125, 62.5, 93.75, 109.375, 93.75]
    assert s.best_qps == 93.75


def test_a_start_over_the_ceiling_starts_at_the_ceiling_and_halves_from_there():
    probe = Planted(100)
    s = dr.search_rate(probe, start_qps=500, ceiling_qps=400, bisect_steps=0)
    assert probe.asked == [400, 200, 100, 100] and s.best_qps == 100


def test_the_ceiling_caps_the_doubling():
    probe = Planted(1e9)
    s = dr.search_rate(probe, start_qps=500, ceiling_qps=1500)
    assert probe.asked == [500, 1000, 1500, 1500] and s.best_qps == 1500


def test_a_best_rate_whose_repeat_fails_is_stepped_down_and_needs_two_probes_there():
    probe = Planted(3000, fail_once=(3000,))
    s = dr.search_rate(probe, start_qps=500, bisect_steps=1)
    # up to 4000 no; bisect: 3000 yes; repeat 3000: not sustained (planted); 3000 * 0.85 twice
    assert probe.asked == [500, 1000, 2000, 4000, 3000, 3000, 2550, 2550]
    assert s.best_qps == 2550 and [p.rate_qps for p in s.confirming] == [2550, 2550]


def test_no_rate_sustained_gives_none():
    probe = Planted(1)
    s = dr.search_rate(probe, start_qps=500, max_halvings=4)
    assert probe.asked == [500, 250, 125, 62.5, 31.25]
    assert s.best_qps is None and s.confirming == ()


# --- one probe's verdict --------------------------------------------------------------------------

def test_a_probe_is_sustained_only_without_failures_lag_or_backlog():
    lags = np.full(1000, 500_000, dtype=np.int64)  # 0.5 ms
    ok = dr.judge_probe(1000, 1, 1.0, 1000, 0, 1_010_000_000, 999_000_000, lags)
    assert ok.sustained and ok.lag_p99_us == 500 and ok.achieved_qps == pytest.approx(1000 / 1.01)
    assert ok.drain_s == pytest.approx(0.011)
    late = lags.copy()
    late[-20:] = 2_000_000  # 2% of sends 2 ms late: p99 over 1 ms
    assert not dr.judge_probe(1000, 1, 1.0, 1000, 0, 1_010_000_000, 999_000_000, late).sustained
    assert not dr.judge_probe(1000, 1, 1.0, 999, 1, 1_010_000_000, 999_000_000, lags).sustained
    backlog = dr.judge_probe(1000, 1, 1.0, 1000, 0, 1_500_000_000, 999_000_000, lags)  # 501 ms after the last due
    assert not backlog.sustained and backlog.drain_s == pytest.approx(0.501)


def test_the_cpu_others_took_is_what_the_machine_was_busy_less_ours():
    # machine busy 150 of 200 ticks, ours 100 of them: others 50 / 200
    assert dr.CpuMeter.others((1000, 4000, 300), (1150, 4200, 400)) == 0.25
    assert dr.CpuMeter.others(None, (1, 2, 3)) is None
    assert dr.CpuMeter.others((1000, 4000, 300), (1050, 4200, 400)) == 0.0  # never below zero


# --- wrk ------------------------------------------------------------------------------------------

WRK_OUT = """Running 3s test @ http://127.0.0.1:18777/v2/models/echo/infer
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   226.27us    1.03ms  21.38ms   97.14%
    Req/Sec    94.80k    23.94k  136.40k    80.00%
  282256 requests in 3.00s, 53.30MB read
Requests/sec:  94062.19
Transfer/sec:     17.76MB
"""

WRK_ERRORS = """Running 1m test @ http://127.0.0.1:8080/x
  1 threads and 64 connections
  12000 requests in 1.00m, 1.20MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 1200
Requests/sec:    199.98
Transfer/sec:     20.48KB
"""


def test_wrk_output_is_read_back():
    w = dr.parse_wrk(WRK_OUT, 16)
    assert w == dr.WrkRun(16, 282256, 3.0, 94062.19, 0, 0)
    assert w.ok_qps == pytest.approx(282256 / 3.0)
    e = dr.parse_wrk(WRK_ERRORS, 64)
    assert (e.requests, e.duration_s, e.non_2xx, e.socket_errors) == (12000, 60.0, 1200, 6)
    assert e.ok_qps == pytest.approx(10800 / 60.0)  # only the 2xx answers count
    with pytest.raises(RuntimeError, match="no request count"):
        dr.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n", 4)


def test_the_wrk_script_posts_the_body_even_one_that_holds_a_lua_long_bracket():
    script = dr.wrk_script(b'{"a":"]]"}')
    assert 'wrk.method = "POST"' in script and 'wrk.headers["Content-Type"] = "application/json"' in script
    assert 'wrk.body = [=[{"a":"]]"}]=]' in script


# --- the endpoint ---------------------------------------------------------------------------------

def test_a_v2_infer_url_is_split_and_anything_else_refused():
    assert dr.parse_infer_url("http://h:8000/v2/models/m/infer") == ("http://h:8000", "m", "")
    assert dr.parse_infer_url("https://u:p@h/ingress/v2/models/m/versions/3/infer") == ("https://u:p@h/ingress", "m", "3")
    with pytest.raises(dr.DriverCheckError, match=r"'http://\*\*\*@h:1/v2/models/m': expected a v2 REST infer URL"):
        dr.parse_infer_url("http://u:secret@h:1/v2/models/m")


def test_the_body_is_zeros_shaped_from_the_models_metadata():
    meta = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}, {"name": "n", "datatype": "INT64", "shape": [1]}]}
    assert json.loads(dr.body_from_metadata(meta)) == {"id": "0", "inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0.0, 0.0, 0.0]},
        {"name": "n", "shape": [1], "datatype": "INT64", "data": [0]}]}
    assert dr.body_from_metadata({"inputs": [{"name": "s", "datatype": "BYTES", "shape": [1]}]}) is None
    assert dr.body_from_metadata({"error": "no model"}) is None


def test_the_built_in_server_frames_pipelined_and_partial_requests():
    one = b"POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    assert split_requests(one + one + one[:20]) == (2, 2 * len(one), False)
    assert split_requests(one[:-1]) == (0, 0, False)  # the body not all here yet
    assert split_requests(b"GET / HTTP/1.1\r\n\r\n") == (1, 18, False)  # no body
    assert split_requests(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n")[2]
    assert b'"outputs":[{"name":"OUTPUT0"' in RESPONSE and RESPONSE.startswith(b"HTTP/1.1 200 OK\r\n")


# --- verdict lines and exit codes -----------------------------------------------------------------

def _inject(monkeypatch, record=None, raises: Exception | None = None) -> None:
    def run(options):
        if raises is not None:
            raise raises
        return record

    monkeypatch.setitem(CHECKS, "driver", replace(CHECKS["driver"], run=run))


def _record(one_qps: float | None, processes: int | None, multi=(), not_tried=()) -> dr.DriverCheck:
    wrk = (dr.WrkRun(4, 30000, 3.0, 10000.0, 0, 0), dr.WrkRun(16, 60000, 3.0, 20000.0, 0, 0))
    if one_qps is None:
        one = dr.Search((_probe(500, False, lag_us=5000), _probe(250, False, lag_us=3000)), None, ())
    else:
        confirming = (_probe(one_qps, True, lag_us=400), _probe(one_qps, True, achieved=one_qps * 0.99, lag_us=700))
        one = dr.Search((_probe(one_qps * 2, False),) + confirming, one_qps, confirming)
    return dr.DriverCheck("http://127.0.0.1:1/v2/models/echo/infer", True, 2, 3.0, 3.0, wrk,
                          dr.WrkRun(16, 57000, 3.0, 19000.0, 0, 0), 20000.0, one, 16000.0, processes,
                          tuple(multi), tuple(not_tried))


def test_the_driver_check_is_not_in_the_default_set():
    assert "driver" in CHECKS and "driver" not in DEFAULT_CHECKS


def test_met_in_one_process_exits_0(capsys, monkeypatch):
    _inject(monkeypatch, _record(17000, 1))
    code, out, err = run_cli(capsys, "self-check", "--checks", "driver")
    assert code == 0 and err == "", err
    last = out.strip().splitlines()[-1]
    # 17,000 offered; the lower achieved of its two confirming probes is 16,830; lag p99 the higher, 700
    assert last == ("wrk: 20,000 req/s; driver: 16,830 req/s in 1 process with lag p99 700 µs (ratio 0.84); "
                    "goal: >= 80% of wrk's rate (16,000/s) with lag p99 < 1 ms: met (1 process)")
    assert "-c 4: 10,000/s, -c 16: 20,000/s; after: -c 16: 19,000/s" in out


def test_not_met_exits_1_and_says_how_far_the_processes_went(capsys, monkeypatch):
    _inject(monkeypatch, _record(6000, None, not_tried=(2,)))
    code, out, err = run_cli(capsys, "self-check", "--checks", "driver")
    assert code == 1
    assert out.strip().splitlines()[-1] == (
        "wrk: 20,000 req/s; driver: 5,940 req/s in 1 process with lag p99 700 µs (ratio 0.30); goal: >= 80% of "
        "wrk's rate (16,000/s) with lag p99 < 1 ms: NOT met (not reached with up to 2 processes)")
    assert "2 processes not tried: even at 2 times one process's 5,940/s they stay under 16,000/s" in out
    assert err.strip() == "bench: self-check: 1 of 1 goals NOT met: driver (1)"


def test_met_with_two_processes_and_the_json_verdict(capsys, monkeypatch):
    multi = (_probe(16000, True, k=2), _probe(16000, True, k=2))
    _inject(monkeypatch, _record(9000, 2, multi=multi))
    code, out, _ = run_cli(capsys, "self-check", "--checks", "driver")
    assert code == 0 and out.strip().endswith(": met (2 processes)")
    assert "16,000/s offered x 3 s in 2 processes: achieved 16,000/s" in out
    code, out, _ = run_cli(capsys, "self-check", "--checks", "driver", "--json")
    report = json.loads(out)["driver"]
    assert code == 0 and report["verdict"] == "met" and report["processes"] == 2
    assert report["goals"][0]["line"].startswith("wrk: 20,000 req/s; driver: 8,910 req/s in 1 process")


def test_no_rate_sustained_is_not_met_and_the_cpu_others_took_is_said(capsys, monkeypatch):
    record = _record(None, None, not_tried=(2,))
    one = replace(record.one, probes=tuple(replace(p, others_cpu=0.6) for p in record.one.probes))
    _inject(monkeypatch, replace(record, one=one))
    code, out, _ = run_cli(capsys, "self-check", "--checks", "driver")
    assert code == 1
    assert ("driver: 0 req/s sustained twice in 1 process (at 250/s, the lowest tried: lag p99 3,000 µs) "
            "(ratio 0.00)") in out
    assert "  2 processes not tried: one process sustained no rate" in out
    assert "250/s offered x 3 s in 1 process: achieved 250/s, lag p99 3,000 µs, 0 failed, drained in 1 ms, " \
           "others took 60% of the CPU: not sustained" in out
    assert ("  other processes took 60% of this machine's CPU during the probes (mean): a driver preempted by them "
            "lags; run the check on a quiet machine for the driver's own figure") in out


def test_a_rate_sustained_once_but_not_on_its_repeat_is_said_and_not_counted(capsys, monkeypatch):
    probes = (_probe(500, True, lag_us=563), _probe(1000, False, lag_us=2542), _probe(750, True, lag_us=936),
              _probe(750, False, lag_us=1319), _probe(637.5, False, lag_us=1100))
    _inject(monkeypatch, replace(_record(None, None), one=dr.Search(probes, None, ())))
    code, out, _ = run_cli(capsys, "self-check", "--checks", "driver")
    assert code == 1
    assert ("driver: 0 req/s sustained twice in 1 process (highest sustained once, not on its repeat: 750/s with "
            "lag p99 936 µs) (ratio 0.00)") in out


def test_a_driver_check_that_cannot_run_exits_2_in_one_line(capsys, monkeypatch):
    _inject(monkeypatch, raises=dr.DriverCheckError("the driver self-check needs wrk on PATH (Debian: apt-get install -y wrk)"))
    code, out, err = run_cli(capsys, "self-check", "--checks", "driver")
    assert code == 2 and out == ""
    assert err.strip() == ("bench: self-check driver could not run: the driver self-check needs wrk on PATH "
                           "(Debian: apt-get install -y wrk)")


def test_url_is_checked_before_any_check_runs(capsys):
    code, _, err = run_cli(capsys, "self-check", "--checks", "timer", "--url", "http://127.0.0.1:1/v2/models/m/infer")
    assert code == 2 and "--url applies to --checks driver" in err
    code, out, err = run_cli(capsys, "self-check", "--checks", "driver", "--url", "http://127.0.0.1:1/health")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "expected a v2 REST infer URL" in err


def test_an_unreachable_url_cannot_run(capsys):
    code, out, err = run_cli(capsys, "self-check", "--checks", "driver", "--url", "http://127.0.0.1:1/v2/models/m/infer")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "self-check driver could not run: " in err
    assert ("cannot reach http://127.0.0.1:1/v2/models/m/infer" in err) or ("needs wrk" in err)


# --- one real run ---------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (Debian: apt-get install -y wrk)")
def test_a_short_real_run_against_the_built_in_server(capsys, monkeypatch):
    """Both sides measured on the built-in server in one short run (probes of 0.5 s, one process):
    only that each figure is above zero and the lines are printed; the verdict is the machine's."""
    d = dr.check_driver(probe_s=0.5, wrk_s=1.0, connections=(4,), start_qps=200, bisect_steps=1, max_processes=1)
    assert d.built_in and d.wrk_qps > 0
    assert d.one.probes and max(p.achieved_qps for p in d.one.probes) > 0  # the driver's requests were answered
    shown, goals = judge(dr.lines, d)
    assert len(goals) == 1 and shown[-1].startswith("wrk: ") and "driver: " in shown[-1]
    assert any("offered x 0.5 s in 1 process" in line for line in shown)

    # and through the command, the same short run standing in for the default one
    monkeypatch.setitem(CHECKS, "driver", replace(CHECKS["driver"], run=lambda o: d))
    code, out, _ = run_cli(capsys, "self-check", "--checks", "driver")
    assert code in (0, 1) and "wrk: " in out


def test_two_driver_processes_run_at_half_the_rate_each_and_are_merged():
    """K spawned processes over the kserve-v2 requester on the built-in server: each answers its
    own open loop, and the probe sums their answers (counts only: no time is asserted)."""
    with dr.BuiltInServer() as server, dr.DriverPool(server.endpoint, 2, 0.5, server.endpoint.pids) as pool:
        assert len(pool.procs) == 2 and all(p.is_alive() for p in pool.procs)
        p = pool.probe(200)
    assert p.processes == 2 and p.rate_qps == 200 and p.seconds == 0.5
    assert p.achieved_qps > 0 and p.lag_p99_us > 0
    assert server.proc.poll() is not None and not any(q.is_alive() for q in pool.procs)  # both stopped


def test_wrk_without_a_2xx_answer_stops_the_check_before_any_probe(monkeypatch):
    monkeypatch.setattr(dr, "run_wrk", lambda endpoint, c, s: dr.WrkRun(c, 0, 1.0, 0.0, 0, 12))
    monkeypatch.setattr(dr, "DriverPool", None)  # a probe would fail loudly
    endpoint = dr.Endpoint("http://127.0.0.1:1/v2/models/m/infer", "http://127.0.0.1:1", "m", "", dr.DEFAULT_BODY,
                           "http://127.0.0.1:1/v2/models/m/infer", False)
    with pytest.raises(dr.DriverCheckError, match=r"wrk got no 2xx answer from http://127.0.0.1:1/v2/models/m/infer "
                                                  r"\(0 non-2xx, 12 socket errors\)"):
        dr._measure(endpoint, 2, 2, 1.0, 1.0, (4, 16), 500, 1)
