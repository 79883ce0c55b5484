"""`bench monitor` on a served target: the served driver window by window, errors by kind in each
window's line, the error-rate alarm, the server's scraped figures beside ours, and `--url URL
--model NAME` without a suite; against a real MLServer and KServe (tests/server_venvs.py) and the
driver tests' loopback HTTP server (500 on every tenth request)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from bench.scenarios.monitor import ErrorRateAlarm, error_share
from tests.helpers import load_run_json, run_cli, write_suite
from tests.server_venvs import free_port

ROOT = Path(__file__).parents[1]


def _w(index: int, ok: int, errors: int, kinds: dict | None = None) -> dict:
    return {"index": index, "requests": ok, "errors": errors, "errors_by_kind": kinds or {},
            "error_examples": {k: "HTTP 500" for k in (kinds or {})}}


def test_the_error_rate_alarm_on_a_planted_window_stream():
    alarm = ErrorRateAlarm(0.01)
    stream = [_w(0, 100, 0), _w(1, 99, 1), _w(2, 98, 2, {"http_status": 2}), _w(3, 90, 10, {"http_status": 10}),
              _w(4, 100, 0), _w(5, 0, 0), _w(6, 0, 5, {"timeout": 3, "connect": 2})]
    got = [alarm.update(w) for w in stream]
    # 1% is not over the limit; 2% raises; 10% still over: the same episode, no second alarm; a clean
    # window ends it; an empty window is no evidence; all failed raises a new one
    assert [g is not None for g in got] == [False, False, True, False, False, False, True]
    assert got[2] == (0.02, "error rate 2.0% over the limit 1.0% in window 2: 2 of 100 requests failed "
                            "(http_status 2 (HTTP 500))")
    assert got[6][0] == 1.0 and "timeout 3" in got[6][1] and "connect 2" in got[6][1]
    assert error_share(_w(0, 0, 0)) is None and alarm.active


@pytest.fixture(scope="module")
def echo():
    from tests.test_served_driver import LoopbackServer

    server = LoopbackServer()
    yield server
    server.loop.call_soon_threadsafe(server.loop.stop)


def _echo_suite(tmp_path, url: str):
    return write_suite(tmp_path, f"""
        [suite]
        name = "served-monitor"

        [targets.echo]
        backend = "tests.served_echo:EchoBackend"
        url = "{url}"
        timeout_s = 2.0

        [[benchmark]]
        name = "m"
        model = "zoo:mlp"
        model_args = {{ in_features = 16, width = 32, depth = 2, classes = 4 }}
        batch_sizes = [1]
        scenarios = ["single-stream"]
        targets = ["echo"]
    """)


def test_a_served_monitor_counts_errors_by_kind_and_raises_the_error_rate_alarm(echo, tmp_path, capsys, monkeypatch):
    from tests.test_served_driver import ROOT

    monkeypatch.syspath_prepend(str(ROOT))
    suite = _echo_suite(tmp_path, echo.url("/every10/monitor"))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "monitor", str(suite), "--benchmark", "m", "--target", "echo", "--qps", "300",
                           "--window-s", "0.5", "--duration-s", "1.5", "--port", str(free_port()), "--out", str(out),
                           "--fail-on-alarm")
    assert code == 1, err  # the alarm with --fail-on-alarm
    lines = [l for l in err.splitlines() if "window 0:" in l]
    assert lines and re.search(r"\d+ errors \(http_status \d+\)", lines[0]), err
    assert "ALARM (error_rate) at window 0" in err and "over the limit 1.0%" in err
    (cell,) = load_run_json(out)["cells"]
    m = cell["monitor"]
    assert cell["status"] == "ok" and m["error_rate_limit"] == 0.01
    assert m["alarms"][0]["kind"] == "error_rate" and 0.05 <= m["alarms"][0]["change"] <= 0.15
    assert m["errors_by_kind"][0] == {"http_status": m["errors_per_window"][0]} and m["errors_per_window"][0] > 0
    assert cell["server_metrics"] is None  # no metrics_url


def test_an_unreachable_url_is_one_line_and_exit_2_before_the_worker(tmp_path, capsys):
    port = free_port()
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "monitor", "--url", f"http://u:pw-never-shown@127.0.0.1:{port}", "--model", "m",
                                "--port", str(free_port()), "--out", str(out))
    assert code == 2
    assert err.strip().count("\n") == 0 and f"cannot connect to http://***@127.0.0.1:{port}" in err, err
    assert "pw-never-shown" not in err + stdout and not out.exists()


def test_url_flags_are_checked(capsys):
    code, _, err = run_cli(capsys, "monitor", "--url", "http://127.0.0.1:1")
    assert code == 2 and "--model" in err
    code, _, err = run_cli(capsys, "monitor", "--benchmark", "m")
    assert code == 2 and "--target" in err
    code, _, err = run_cli(capsys, "monitor", "s.toml", "--benchmark", "m", "--target", "t", "--model", "x")
    assert code == 2 and "--model goes with --url" in err


# --- real servers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v2_model(tmp_path_factory):
    from tests.test_served_kserve import _mlp

    return _mlp(tmp_path_factory.mktemp("monitor-model") / "mlp.onnx")


@pytest.fixture(scope="module")
def mlserver_mon(tmp_path_factory, v2_model):
    from tests.test_served_metrics import _start_mlserver

    with _start_mlserver(tmp_path_factory.mktemp("mlserver-mon"), v2_model) as server:
        yield server


@pytest.fixture(scope="module")
def kserve_mon(tmp_path_factory, v2_model):
    from tests.test_served_metrics import _start_kserve

    with _start_kserve(tmp_path_factory.mktemp("kserve-mon"), v2_model) as server:
        yield server


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_monitor_a_deployed_model_by_url_with_the_servers_metrics(protocol, mlserver_mon, tmp_path, capsys):
    ports = mlserver_mon.ports
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "monitor", "--url", f"http://127.0.0.1:{ports[protocol]}", "--model", "mlp",
                           "--protocol", protocol, "--metrics-url", f"http://127.0.0.1:{ports['metrics']}/metrics",
                           "--qps", "150", "--window-s", "1", "--duration-s", "3", "--port", str(free_port()),
                           "--out", str(out))
    assert code == 0, err
    lines = [l for l in err.splitlines() if re.search(r"window \d+:", l)]
    assert len(lines) == 3 and all("; ours mean" in l and "MLServer: " in l and "queue n/e" in l for l in lines), err
    (cell,) = load_run_json(out)["cells"]
    assert cell["status"] == "ok" and cell["target"]["knobs"]["protocol"] == protocol
    per = cell["monitor"]["server_per_window"]
    assert len(per) == 3
    for w, n in zip(per, cell["monitor"]["errors_per_window"]):
        assert w["server"] == "MLServer" and w["failed"] == 0 and n == 0
        assert w["requests"] == w["client_sent"], w  # scraped after the warm-up and after the window's drain
        assert w["request_mean_ms"] > 0 and w["compute_mean_ms"] > 0
    overall = cell["server_metrics"]
    assert overall["requests"] == sum(w["requests"] for w in per) == cell["monitor"]["requests"]


@pytest.mark.timeout(1800)
def test_monitor_a_suite_kserve_target_closed_loop_with_its_metrics(kserve_mon, v2_model, tmp_path, capsys):
    ports = kserve_mon.ports
    suite = write_suite(tmp_path, f"""
        [suite]
        name = "kserve-monitor"

        [targets.ks]
        backend = "kserve-v2"
        url = "http://127.0.0.1:{ports['rest']}"
        model = "mlp"
        binary_data = true
        metrics_url = "http://127.0.0.1:{ports['metrics']}/metrics"

        [[benchmark]]
        name = "m"
        model = "{v2_model}"
        batch_sizes = [2]
        scenarios = ["single-stream"]
        targets = ["ks"]
    """)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "monitor", str(suite), "--benchmark", "m", "--target", "ks", "--concurrency", "2",
                           "--window-s", "0.5", "--duration-s", "1.5", "--port", str(free_port()), "--out", str(out))
    assert code == 0, err
    lines = [l for l in err.splitlines() if re.search(r"window \d+:", l)]
    assert len(lines) == 3 and all("KServe: " in l and "request n/e" in l for l in lines), err
    (cell,) = load_run_json(out)["cells"]
    for w in cell["monitor"]["server_per_window"]:
        assert w["server"] == "KServe" and w["compute_mean_ms"] > 0 and w["requests"] == w["client_sent"], w
    assert json.dumps(cell).count("not exposed") == 0  # the record names what is missing in not_exposed
    assert "request duration" in cell["server_metrics"]["not_exposed"]


def test_a_served_monitor_cell_reports_its_requests_and_the_servers_figures(mlserver_mon, tmp_path, capsys):
    ports = mlserver_mon.ports
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "monitor", "--url", f"http://127.0.0.1:{ports['rest']}", "--model", "mlp",
                           "--metrics-url", f"http://127.0.0.1:{ports['metrics']}/metrics", "--concurrency", "1",
                           "--window-s", "0.5", "--duration-s", "1", "--port", str(free_port()), "--out", str(out))
    assert code == 0, err
    doc = load_run_json(out)
    jsonschema.validate(doc, json.loads((ROOT / "bench/results/run.schema.json").read_text()))
    (cell,) = doc["cells"]
    r = cell["requests"]
    assert r["sent"] == r["ok"] == cell["monitor"]["requests"] and r["failed"] == 0
    code, report, _ = run_cli(capsys, "report", str(out / next(p.name for p in out.iterdir())))
    assert code == 0
    assert "MLServer at http://127.0.0.1:" in report and "network+client" in report, report
    print(report)


def test_a_model_the_server_lacks_is_one_line_and_credentials_are_never_written(mlserver_mon, tmp_path, capsys):
    port = mlserver_mon.ports["rest"]
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "monitor", "--url", f"http://u:pw-mon-secret@127.0.0.1:{port}", "--model", "nosuch",
                           "--port", str(free_port()), "--out", str(out))
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "'nosuch' is not on the server at http://***@127.0.0.1:" in err and "it has: mlp" in err, err
    assert "pw-mon-secret" not in err and not out.exists()
    code, stdout, err = run_cli(capsys, "monitor", "--url", f"http://u:pw-mon-secret@127.0.0.1:{port}", "--model",
                                "mlp", "--metrics-url",
                                f"http://u:pw-mon-secret@127.0.0.1:{mlserver_mon.ports['metrics']}/metrics",
                                "--qps", "200", "--window-s", "0.5", "--duration-s", "0.5", "--port", str(free_port()),
                                "--out", str(out))
    assert code == 0, err
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file()) + (stdout + err).encode()
    assert b"pw-mon-secret" not in written
    (cell,) = load_run_json(out)["cells"]
    assert cell["server_metrics"]["metrics_url"].startswith("http://***@127.0.0.1:")
