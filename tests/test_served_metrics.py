"""Server-side figures (bench.served.server_metrics): the Prometheus scrape's parser and deltas on
planted text (exact), a failed scrape as a note, and a served cell against a real MLServer and
KServe (tests/server_venvs.py) whose run.json holds the server's figures and the latency split."""
from __future__ import annotations

import json

import pytest

from bench.served import server_metrics as sm

TRITON_BEFORE = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet",version="1"} 100
nv_inference_request_success{model="other",version="1"} 7
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="resnet",reason="BACKEND",version="1"} 1
nv_inference_request_failure{model="resnet",reason="REJECTED",version="1"} 0
# TYPE nv_inference_count counter
nv_inference_count{model="resnet",version="1"} 400
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="resnet",version="1"} 500000
nv_inference_request_duration_us{model="other",version="1"} 99999999
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="resnet",version="1"} 100000
# TYPE nv_inference_compute_input_duration_us counter
nv_inference_compute_input_duration_us{model="resnet",version="1"} 10000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="resnet",version="1"} 300000
# TYPE nv_inference_compute_output_duration_us counter
nv_inference_compute_output_duration_us{model="resnet",version="1"} 20000
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-x"} 0.5
"""

TRITON_AFTER = """\
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet",version="1"} 300
nv_inference_request_success{model="other",version="1"} 9
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="resnet",reason="BACKEND",version="1"} 3
nv_inference_request_failure{model="resnet",reason="REJECTED",version="1"} 2
# TYPE nv_inference_count counter
nv_inference_count{model="resnet",version="1"} 1200
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="resnet",version="1"} 900000
nv_inference_request_duration_us{model="other",version="1"} 199999999
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="resnet",version="1"} 150000
# TYPE nv_inference_compute_input_duration_us counter
nv_inference_compute_input_duration_us{model="resnet",version="1"} 30000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="resnet",version="1"} 500000
# TYPE nv_inference_compute_output_duration_us counter
nv_inference_compute_output_duration_us{model="resnet",version="1"} 40000
"""

# MLServer 1.7.1 as scraped here (trimmed): its transports carry no model label.
MLSERVER = """\
# TYPE model_infer_request_success_total counter
model_infer_request_success_total{{model="mlp",version="None"}} {ok}
# TYPE model_infer_request_failure_total counter
model_infer_request_failure_total{{model="mlp",version="None"}} 0.0
# TYPE model_infer_request_duration summary
model_infer_request_duration_count{{model="mlp",version="None"}} {ok}
model_infer_request_duration_sum{{model="mlp",version="None"}} {model_s}
# TYPE rest_server_request_duration_seconds histogram
rest_server_request_duration_seconds_bucket{{app_name="mlserver",le="+Inf",method="GET",path="/v2/models/{{model_name}}/ready",status_code="200"}} 1.0
rest_server_request_duration_seconds_count{{app_name="mlserver",method="GET",path="/v2/models/{{model_name}}/ready",status_code="200"}} 1.0
rest_server_request_duration_seconds_sum{{app_name="mlserver",method="GET",path="/v2/models/{{model_name}}/ready",status_code="200"}} 5.0
rest_server_request_duration_seconds_count{{app_name="mlserver",method="POST",path="/v2/models/{{model_name}}/infer",status_code="200"}} {ok}
rest_server_request_duration_seconds_sum{{app_name="mlserver",method="POST",path="/v2/models/{{model_name}}/infer",status_code="200"}} {rest_s}
rest_server_request_duration_seconds_count{{app_name="mlserver",method="POST",path="/v2/models/{{model_name}}/infer",status_code="422"}} {bad}
rest_server_request_duration_seconds_sum{{app_name="mlserver",method="POST",path="/v2/models/{{model_name}}/infer",status_code="422"}} 9.0
"""

KSERVE = """\
# TYPE request_preprocess_seconds histogram
request_preprocess_seconds_count{{model_name="mlp"}} {n}
request_preprocess_seconds_sum{{model_name="mlp"}} {pre}
# TYPE request_predict_seconds histogram
request_predict_seconds_bucket{{le="+Inf",model_name="mlp"}} {n}
request_predict_seconds_count{{model_name="mlp"}} {n}
request_predict_seconds_sum{{model_name="mlp"}} {predict}
# TYPE request_postprocess_seconds histogram
request_postprocess_seconds_count{{model_name="mlp"}} {n}
request_postprocess_seconds_sum{{model_name="mlp"}} {post}
"""


def test_triton_deltas_give_queue_compute_and_the_split_for_the_target_model_only():
    before, after = sm.parse(TRITON_BEFORE, "resnet"), sm.parse(TRITON_AFTER, "resnet")
    assert before.values == {"triton_success": 100, "triton_failure": 1, "triton_inferences": 400,
                             "triton_request_us": 500000, "triton_queue_us": 100000,
                             "triton_compute_input_us": 10000, "triton_compute_infer_us": 300000,
                             "triton_compute_output_us": 20000}
    m = sm.figures("http://user:hunter2@triton:8002/metrics", "resnet", 2.0, before, after, ours_mean_ms=2.5,
                   ours_sent=205)
    assert (m.server, m.requests, m.succeeded, m.failed) == ("Triton", 204, 200, 4)
    # 400,000 us over 200 successes; queue 50,000 us; compute (20,000 + 200,000 + 20,000) us
    assert m.request_mean_ms == pytest.approx(2.0, abs=1e-12)
    assert m.queue_mean_ms == pytest.approx(0.25, abs=1e-12)
    assert m.compute_mean_ms == pytest.approx(1.2, abs=1e-12)
    assert m.network_client_mean_ms == pytest.approx(0.5, abs=1e-12)
    assert m.outside_compute_mean_ms == pytest.approx(1.3, abs=1e-12)
    assert m.not_exposed == () and m.note == ""
    assert m.metrics_url == "http://***@triton:8002/metrics"
    rows = dict(sm.rows(m))
    assert rows["server"] == ("Triton at http://***@triton:8002/metrics (model resnet): 204 requests, 4 failed "
                              "(ours: 205 sent); per request: request 2.000 ms, queue 0.250 ms, compute 1.200 ms")
    assert rows["latency split"] == ("ours 2.500 ms, network+client 0.500 ms, queue 0.250 ms, compute 1.200 ms "
                                     "(means)")


def test_every_model_when_none_is_named():
    s = sm.parse(TRITON_BEFORE)
    assert s.values["triton_success"] == 107 and s.values["triton_request_us"] == 500000 + 99999999


def test_mlserver_counts_failures_from_its_transport_and_its_duration_over_the_answered():
    before = sm.parse(MLSERVER.format(ok=10.0, model_s=0.01, rest_s=0.02, bad=1.0), "mlp")
    after = sm.parse(MLSERVER.format(ok=110.0, model_s=0.06, rest_s=0.22, bad=3.0), "mlp")
    assert after.values["mlserver_rest_count"] == 113 and after.values["mlserver_rest_failed"] == 3
    m = sm.figures("http://127.0.0.1:8082/metrics", "mlp", 1.0, before, after, ours_mean_ms=3.0, ours_sent=102)
    assert (m.server, m.requests, m.succeeded, m.failed) == ("MLServer", 102, 100, 2)
    assert m.request_mean_ms == pytest.approx(2.0)  # 0.2 s over the 100 2xx answers; the GET /ready left out
    assert m.compute_mean_ms == pytest.approx(0.5)
    assert m.queue_mean_ms is None and m.not_exposed == ("queue",)
    assert m.network_client_mean_ms == pytest.approx(1.0)
    assert "queue not exposed" in dict(sm.rows(m))["server"]


def test_kserve_exposes_compute_alone_and_says_what_it_does_not():
    before = sm.parse(KSERVE.format(n=5.0, pre=0.001, predict=0.01, post=0.001), "mlp")
    after = sm.parse(KSERVE.format(n=105.0, pre=0.011, predict=0.11, post=0.006), "mlp")
    m = sm.figures("http://127.0.0.1:8080/metrics", "mlp", 1.0, before, after, ours_mean_ms=4.0, ours_sent=100)
    assert (m.server, m.requests, m.failed) == ("KServe", 100, None)
    assert m.compute_mean_ms == pytest.approx(0.1 + 1.0 + 0.05)
    assert m.not_exposed == ("success/failure", "request duration", "queue")
    assert m.network_client_mean_ms is None and m.outside_compute_mean_ms == pytest.approx(4.0 - 1.15)
    split = dict(sm.rows(m))["latency split"]
    assert "network+client not exposed" in split and "outside compute 2.850 ms" in split


def test_another_model_filtered_out_and_counters_that_went_back():
    other = sm.figures("http://h/metrics", "nosuch", 1.0, sm.parse(TRITON_BEFORE, "nosuch"),
                       sm.parse(TRITON_AFTER, "nosuch"))
    assert other.server == "" and "no metric this harness recognises" in other.note
    back = sm.figures("http://h/metrics", "resnet", 1.0, sm.parse(TRITON_AFTER, "resnet"),
                      sm.parse(TRITON_BEFORE, "resnet"))
    assert back.requests is None and "went back" in back.note and "\n" not in back.note


def test_a_failed_scrape_is_one_line_without_the_credentials():
    def refuse(url, model, timeout_s, context):
        raise sm.ScrapeFailed("Connection refused")

    s = sm.Scraper("http://bob:s3cret-pw@127.0.0.1:9/metrics", "m", fetcher=refuse)
    s.before()
    s.after()
    m = s.window(1.0, 10)
    assert m.server == "" and m.note == "metrics not scraped from http://***@127.0.0.1:9/metrics: Connection refused"
    assert "s3cret" not in json.dumps(m.__dict__)
    assert dict(sm.rows(m))["server"] == m.note


def test_a_real_refused_port_and_a_page_that_is_not_prometheus_text(tmp_path):
    from tests.server_venvs import free_port

    with pytest.raises(sm.ScrapeFailed) as exc:
        sm.fetch(f"http://127.0.0.1:{free_port()}/metrics", "m", timeout_s=2)
    assert "\n" not in exc.value.reason
    assert sm.server_kind(sm.parse("")) == ""


def test_no_label_value_other_than_the_model_reaches_the_record():
    secret = 'nv_inference_request_success{model="resnet",version="1",token="tok-SECRET"} 5\n'
    m = sm.figures("http://h/metrics", "resnet", 1.0, sm.parse(secret.replace(" 5", " 1"), "resnet"),
                   sm.parse(secret, "resnet"))
    assert m.requests == 4 and "SECRET" not in json.dumps(m.__dict__)


def test_the_metrics_url_knob_is_checked_and_recorded_without_credentials():
    from bench.served.kserve_options import KServeV2Options

    bad = KServeV2Options(url="http://127.0.0.1:1", model="m", metrics_url="ftp://x/metrics")
    assert bad.validate()[0] == "metrics_url"
    ok = KServeV2Options(url="http://127.0.0.1:1", model="m", metrics_url="http://a:b@127.0.0.1:2/metrics")
    assert ok.validate() is None and ok.to_dict()["metrics_url"] == "http://***@127.0.0.1:2/metrics"


# --- against real servers (tests/server_venvs.py; the kserve-v2 tests' model and server scripts) ---

def _start_mlserver(root, mlp):
    from tests.server_venvs import ensure_venv, free_port, running
    from tests.test_served_kserve import MLSERVER, MLSERVER_RUNTIME, MODEL, _server_env

    ensure_venv(MLSERVER)
    (root / "ort_runtime.py").write_text(MLSERVER_RUNTIME)
    http, grpc, metrics = free_port(), free_port(), free_port()
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
        "parallel_workers": 0, "debug": False}))
    (root / MODEL).mkdir()
    (root / MODEL / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "ort_runtime.OrtModel", "parameters": {"uri": str(mlp)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}))
    env = {**_server_env(root / "token.log"), "PYTHONPATH": str(root)}
    return running("mlserver", [MLSERVER.executable("mlserver"), "start", str(root)],
                   f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", log_path=root / "server.log",
                   ports={"rest": http, "grpc": grpc, "metrics": metrics}, env=env, cwd=root)


def _start_kserve(root, mlp):
    from tests.server_venvs import ensure_venv, free_port, running
    from tests.test_served_kserve import KSERVE, KSERVE_SERVER, MODEL, _server_env

    ensure_venv(KSERVE)
    (root / "server.py").write_text(KSERVE_SERVER)
    http, grpc = free_port(), free_port()
    argv = [KSERVE.executable(), "server.py", "--model_name", MODEL, "--onnx", str(mlp), "--http_port", str(http),
            "--grpc_port", str(grpc), "--workers", "1"]
    return running("kserve", argv, f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", log_path=root / "server.log",
                   ports={"rest": http, "grpc": grpc, "metrics": http}, env=_server_env(root / "token.log"), cwd=root)


@pytest.fixture(scope="module")
def mlp_model(tmp_path_factory):
    from tests.test_served_kserve import _mlp

    return _mlp(tmp_path_factory.mktemp("metrics-model") / "mlp.onnx")


@pytest.fixture(scope="module")
def mlserver_m(tmp_path_factory, mlp_model):
    with _start_mlserver(tmp_path_factory.mktemp("mlserver-m"), mlp_model) as server:
        yield server


@pytest.fixture(scope="module")
def kserve_m(tmp_path_factory, mlp_model):
    with _start_kserve(tmp_path_factory.mktemp("kserve-m"), mlp_model) as server:
        yield server


def _served_suite(tmp_path, mlp, server, protocol: str, metrics_url: str, scenario: str = "single-stream",
                  extra: str = "") -> str:
    from tests.helpers import FAST_STOP, write_suite

    return str(write_suite(tmp_path, f"""
[suite]
name = "served-metrics"

[targets.served]
backend = "kserve-v2"
url = "http://127.0.0.1:{server.ports[protocol]}"
model = "mlp"
protocol = "{protocol}"
metrics_url = "{metrics_url}"
timeout_s = 10

[[benchmark]]
name = "m"
model = "{mlp}"
batch_sizes = [2]
scenarios = ["{scenario}"]
targets = ["served"]
stop = {FAST_STOP}
{extra}
"""))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("variant", ["mlserver-rest", "mlserver-grpc", "kserve-rest"])
def test_a_served_cell_records_the_servers_figures_beside_ours(variant, request, tmp_path, capsys, mlp_model):
    from tests.helpers import load_run_json, run_cli

    name, protocol = variant.split("-")
    server = request.getfixturevalue(f"{name}_m")
    url = f"http://u:pw-metrics-secret@127.0.0.1:{server.ports['metrics']}/metrics"
    suite = _served_suite(tmp_path, mlp_model, server, protocol, url)
    out = tmp_path / "r"
    code, stdout, stderr = run_cli(capsys, "run", suite, "--out", str(out))
    assert code == 0, stderr
    (cell,) = load_run_json(out)["cells"]
    s = cell["server_metrics"]
    assert s["server"] == {"mlserver": "MLServer", "kserve": "KServe"}[name], s
    assert s["metrics_url"] == f"http://***@127.0.0.1:{server.ports['metrics']}/metrics"
    assert s["model"] == "mlp" and s["compute_mean_ms"] > 0 and s["client_mean_ms"] > s["compute_mean_ms"]
    # the server counted this window's requests (our sent, give or take the one in flight at a scrape)
    assert s["requests"] is not None and abs(s["requests"] - s["client_sent"]) <= 2, s
    if name == "mlserver":
        assert s["request_mean_ms"] > 0 and s["failed"] == 0 and s["not_exposed"] == ["queue"]
        assert s["network_client_mean_ms"] == pytest.approx(s["client_mean_ms"] - s["request_mean_ms"])
    else:
        assert s["request_mean_ms"] is None and "request duration" in s["not_exposed"]
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file()) + (stdout + stderr).encode()
    assert b"pw-metrics-secret" not in written


@pytest.mark.timeout(600)
def test_a_metrics_url_that_fails_is_a_note_not_a_failed_cell(tmp_path, capsys, mlp_model, mlserver_m):
    from tests.helpers import load_run_json, run_cli
    from tests.server_venvs import free_port

    port = free_port()
    suite = _served_suite(tmp_path, mlp_model, mlserver_m, "rest", f"http://u:pw-x@127.0.0.1:{port}/metrics")
    out = tmp_path / "r"
    code, _, stderr = run_cli(capsys, "run", suite, "--out", str(out))
    assert code == 0, stderr
    (cell,) = load_run_json(out)["cells"]
    assert cell["status"] == "ok"
    note = cell["server_metrics"]["note"]
    assert note.startswith(f"metrics not scraped from http://***@127.0.0.1:{port}/metrics: ") and "\n" not in note


@pytest.mark.timeout(600)
def test_an_open_loop_server_cell_splits_its_latency_too(tmp_path, capsys, mlp_model, mlserver_m):
    from tests.helpers import load_run_json, run_cli

    url = f"http://127.0.0.1:{mlserver_m.ports['metrics']}/metrics"
    suite = _served_suite(tmp_path, mlp_model, mlserver_m, "rest", url, "server",
                          "server = { qps = 150, duration_s = 0.5 }")
    out = tmp_path / "r"
    code, _, stderr = run_cli(capsys, "run", suite, "--out", str(out))
    assert code in (0, 1), stderr  # 1: a short invalid server run (too few requests for its p99), still measured
    (cell,) = load_run_json(out)["cells"]
    assert cell["status"] == "ok", cell["reason"]
    s = cell["server_metrics"]
    assert s["server"] == "MLServer" and s["requests"] == s["client_sent"] == cell["requests"]["sent"], s
    assert s["network_client_mean_ms"] == pytest.approx(s["client_mean_ms"] - s["request_mean_ms"])


def test_combine_sums_counts_and_weights_means_by_requests():
    a = sm.figures("http://h/metrics", "resnet", 1.0, sm.parse(TRITON_BEFORE, "resnet"), sm.parse(TRITON_AFTER, "resnet"),
                   ours_mean_ms=2.5, ours_sent=205)
    from dataclasses import replace

    b = replace(a, requests=100, succeeded=100, failed=0, request_mean_ms=1.0, queue_mean_ms=0.1, compute_mean_ms=0.6,
                client_mean_ms=1.5, client_sent=100)
    failed = sm.figures("http://h/metrics", "resnet", 1.0, None, None, note="metrics not scraped from http://h/metrics: x")
    c = sm.combine([a, b, failed], "processes")
    assert (c.requests, c.succeeded, c.failed, c.client_sent) == (304, 300, 4, 305)
    assert c.request_mean_ms == pytest.approx((2.0 * 204 + 1.0 * 100) / 304)
    assert c.client_mean_ms == pytest.approx((2.5 * 205 + 1.5 * 100) / 305)
    assert c.network_client_mean_ms == pytest.approx(c.client_mean_ms - c.request_mean_ms)
    assert c.note.startswith("1 of 3 processes not scraped; metrics not scraped from http://h/metrics: x")
