"""kserve-v2 against real Open Inference Protocol v2 servers: MLServer (REST with JSON tensors, gRPC)
and KServe's ModelServer (REST with binary tensors, gRPC), each serving the same tiny ONNX MLP on
onnxruntime that the suite also runs in-process as the reference.

The servers run from venvs of their own (tests/server_venvs.py: built once, cached across runs),
started once per module on loopback ports, in their own process groups. Each server's model script
notes whether the secret header it was sent matches the value the test set (never the value
itself) in a file the tests read.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bench.served.v2_inputs import InputMismatch, TensorMeta, plan_inputs
from tests.helpers import FAST_STOP, load_run_json, run_cli, write_suite
from tests.server_venvs import ServerVenv, ensure_venv, free_port, running

# The versions measured installable and working on the project's machine (2026-12-06, DESIGN.md's
# pitfalls): MLServer 1.7 and KServe 0.21. Newer ones change their dependency pins (pydantic,
# fastapi, grpcio) often enough that an unpinned build could break CI overnight; the cache key is
# these strings, so changing a pin builds a new venv.
ORT_PIN = "onnxruntime==1.22.1"
MLSERVER = ServerVenv("mlserver", ("mlserver==1.7.1", ORT_PIN))
KSERVE = ServerVenv("kserve", ("kserve==0.21.0", ORT_PIN))

TOKEN_VAR = "BENCH_TEST_V2_TOKEN"
TOKEN = "tok-9f2c7e-secret-value"  # what the client sends in x-api-key; must appear in no output
PASSWORD = "pw-5b1d-url-secret"  # inside the target URLs; must appear in no output
MODEL = "mlp"

pytestmark = [pytest.mark.timeout(1800)]  # the first run builds two server venvs (cached after)


# --- the model and the two servers' scripts ---------------------------------------------------

def _mlp(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
               for name, shape in (("w1", (16, 32)), ("b1", (32,)), ("w2", (32, 4)), ("b2", (4,)))]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["h2"]),
             helper.make_node("Relu", ["h2"], ["h3"]), helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
             helper.make_node("Add", ["h4", "b2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], weights)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


# Both servers' models note the x-api-key header they got: "ok" when it is the expected value,
# "mismatch" otherwise, once per kind (a file write per request would slow the server).
TOKEN_NOTE = '''
import os

_seen = set()


def note_token(headers):
    got = {str(k).lower(): v for k, v in (headers or {}).items()}.get("x-api-key")
    if got is None:
        return
    state = "ok" if got == os.environ["BENCH_TEST_EXPECTED_TOKEN"] else "mismatch"
    if state not in _seen:
        _seen.add(state)
        with open(os.environ["BENCH_TEST_TOKEN_LOG"], "a") as f:
            f.write(state + "\\n")
'''

MLSERVER_RUNTIME = TOKEN_NOTE + '''
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtModel(MLModel):
    async def load(self) -> bool:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(self.settings.parameters.uri, so, providers=["CPUExecutionProvider"])
        self._names = [o.name for o in self._sess.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        note_token(getattr(payload.parameters, "headers", None) if payload.parameters else None)
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        outs = self._sess.run(None, feeds)
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self._names, outs)])
'''

KSERVE_SERVER = TOKEN_NOTE + '''
import argparse

import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server


class OrtModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.ready = True

    # KServe's model metadata lists no tensors unless the model says them
    def get_input_types(self):
        return [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]

    def get_output_types(self):
        return [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    async def predict(self, payload, headers=None, response_headers=None):
        note_token(headers)
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        outs = self.sess.run(None, feeds)
        outputs = []
        for meta, arr in zip(self.sess.get_outputs(), outs):
            out = InferOutput(name=meta.name, shape=list(arr.shape), datatype="FP32")
            out.set_data_from_numpy(arr)
            outputs.append(out)
        # As KServe's own runtimes answer (kserve.utils.utils.get_predict_response): the outputs in
        # binary where the request asked for them so; without these, REST answers JSON whatever
        # the client asked.
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=outputs,
                             use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--onnx", required=True)
    args, _ = parser.parse_known_args()
    ModelServer().start([OrtModel(args.model_name, args.onnx)])
'''


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    return _mlp(tmp_path_factory.mktemp("v2-model") / "mlp.onnx")


def _server_env(token_log: Path) -> dict[str, str]:
    return {"BENCH_TEST_EXPECTED_TOKEN": TOKEN, "BENCH_TEST_TOKEN_LOG": str(token_log),
            "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory, mlp):
    ensure_venv(MLSERVER)
    root = tmp_path_factory.mktemp("mlserver")
    (root / "ort_runtime.py").write_text(MLSERVER_RUNTIME)
    http, grpc, metrics = free_port(), free_port(), free_port()
    # parallel_workers = 0: inference in the server's own process (one fewer process on 2 cores)
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics,
        "parallel_workers": 0, "debug": False}))
    (root / MODEL).mkdir()
    (root / MODEL / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "ort_runtime.OrtModel", "parameters": {"uri": str(mlp)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}))
    token_log = root / "token.log"
    env = {**_server_env(token_log), "PYTHONPATH": str(root)}
    with running("mlserver", [MLSERVER.executable("mlserver"), "start", str(root)],
                 f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", log_path=root / "server.log",
                 ports={"rest": http, "grpc": grpc}, env=env, cwd=root) as server:
        server.token_log = token_log  # type: ignore[attr-defined]
        yield server


# KServe 0.21 binds its REST and gRPC ports on every interface (0.0.0.0 and [::], hard-coded, no
# host option); the tests reach it on loopback only.
@pytest.fixture(scope="module")
def kserve(tmp_path_factory, mlp):
    ensure_venv(KSERVE)
    root = tmp_path_factory.mktemp("kserve")
    (root / "server.py").write_text(KSERVE_SERVER)
    http, grpc = free_port(), free_port()
    token_log = root / "token.log"
    argv = [KSERVE.executable(), "server.py", "--model_name", MODEL, "--onnx", str(mlp), "--http_port", str(http),
            "--grpc_port", str(grpc), "--workers", "1"]
    with running("kserve", argv, f"http://127.0.0.1:{http}/v2/models/{MODEL}/ready", log_path=root / "server.log",
                 ports={"rest": http, "grpc": grpc}, env=_server_env(token_log), cwd=root) as server:
        server.token_log = token_log  # type: ignore[attr-defined]
        yield server


# --- suites ---------------------------------------------------------------------------------

# (server fixture, protocol, REST binary tensors): MLServer's REST refuses binary tensors.
VARIANTS = {
    "mlserver-rest": ("mlserver", "rest", False),
    "mlserver-grpc": ("mlserver", "grpc", False),
    "kserve-rest": ("kserve", "rest", True),
    "kserve-grpc": ("kserve", "grpc", False),
}


def _target(name: str, server, protocol: str, binary: bool, *, model: str = MODEL, scheme: str = "http",
            credentials: bool = True) -> str:
    userinfo = f"benchuser:{PASSWORD}@" if credentials else ""
    lines = [f"[targets.{name}]", 'backend = "kserve-v2"',
             f'url = "{scheme}://{userinfo}127.0.0.1:{server.ports[protocol]}"',
             f'model = "{model}"', f'protocol = "{protocol}"', f'header_env = {{ "x-api-key" = "{TOKEN_VAR}" }}',
             "timeout_s = 10", "connect_timeout_s = 5"]
    if binary:
        lines.append("binary_data = true")
    return "\n".join(lines) + "\n"


def _suite(tmp_path: Path, mlp: Path, targets: dict[str, str]) -> Path:
    names = ", ".join(f'"{n}"' for n in ["ort", *targets])
    body = "\n".join(targets.values())
    return write_suite(tmp_path, f"""
[suite]
name = "served"

[targets.ort]
backend = "onnxruntime"
providers = ["CPUExecutionProvider"]
intra_op_threads = 1

{body}

[[benchmark]]
name = "m"
model = "{mlp}"
batch_sizes = [2]
scenarios = ["single-stream"]
targets = [{names}]
stop = {FAST_STOP}
""")


def _everything_written(out: Path, stdout: str, stderr: str) -> bytes:
    blob = b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())
    return blob + stdout.encode() + stderr.encode()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_served_model_agrees_with_the_in_process_one_and_keeps_secrets(variant, request, tmp_path, capsys, mlp,
                                                                          monkeypatch):
    fixture, protocol, binary = VARIANTS[variant]
    server = request.getfixturevalue(fixture)
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    suite = _suite(tmp_path, mlp, {"served": _target("served", server, protocol, binary)})
    out = tmp_path / "r"
    code, stdout, stderr = run_cli(capsys, "run", str(suite), "--out", str(out))
    assert code == 0, stderr
    cells = {c["target"]["name"]: c for c in load_run_json(out)["cells"]}
    served = cells["served"]
    assert served["status"] == "ok", served.get("reason")
    assert served["agreement"]["verdict"] == "pass", served["agreement"]
    lat = served["metrics"]["latency_ms"]
    assert 0 < lat["p50"]["value"] <= lat["p99"]["value"] and served["metrics"]["throughput"]["value"] > 0
    # what ran, from the server's own metadata; the URL recorded without its credentials
    runtime = served["target"]["runtime"]
    assert runtime.startswith("tritonclient ") and ("(gRPC)" if protocol == "grpc" else "(REST)") in runtime
    assert ("mlserver" if fixture == "mlserver" else "kserve") in runtime.lower()
    assert served["target"]["details"]["tensors"] == ("raw bytes (gRPC)" if protocol == "grpc" else
                                                       "binary (v2 binary extension)" if binary else "JSON")
    port = server.ports[protocol]
    assert served["target"]["knobs"]["url"] == f"http://***@127.0.0.1:{port}"
    assert served["target"]["knobs"]["header_env"] == {"x-api-key": f"${TOKEN_VAR}"}
    # the token reached the server, and neither secret is anywhere the run wrote or printed
    assert "ok" in server.token_log.read_text().split() and "mismatch" not in server.token_log.read_text()
    written = _everything_written(out, stdout, stderr)
    assert TOKEN.encode() not in written and PASSWORD.encode() not in written


def test_a_model_the_server_lacks_fails_its_cell_in_one_line(request, tmp_path, capsys, mlp, monkeypatch):
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    targets = {}
    for variant, (fixture, protocol, binary) in VARIANTS.items():
        server = request.getfixturevalue(fixture)
        targets[variant] = _target(variant, server, protocol, binary, model="nosuchmodel")
    out = tmp_path / "r"
    code, stdout, stderr = run_cli(capsys, "run", str(_suite(tmp_path, mlp, targets)), "--out", str(out))
    assert code == 3
    cells = {c["target"]["name"]: c for c in load_run_json(out)["cells"]}
    assert cells["ort"]["status"] == "ok"
    for variant in VARIANTS:
        reason = cells[variant]["reason"]
        assert cells[variant]["status"] == "failed" and "\n" not in reason, reason
        assert "'nosuchmodel'" in reason and "***@127.0.0.1" in reason, reason
        if variant.endswith("rest") or variant == "mlserver-grpc":  # the servers that list their models there
            assert "it has: mlp" in reason, reason
    assert "Traceback" not in stderr
    written = _everything_written(out, stdout, stderr)
    assert TOKEN.encode() not in written and PASSWORD.encode() not in written


def test_https_against_a_plain_server_is_one_clear_line(request, tmp_path, capsys, mlp, monkeypatch):
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    mls, ks = request.getfixturevalue("mlserver"), request.getfixturevalue("kserve")
    targets = {"tls-rest": _target("tls-rest", mls, "rest", False, scheme="https", credentials=False)
               + "verify_tls = false\n",
               "tls-grpc": _target("tls-grpc", ks, "grpc", False, scheme="https", credentials=False)}
    out = tmp_path / "r"
    code, _, stderr = run_cli(capsys, "run", str(_suite(tmp_path, mlp, targets)), "--out", str(out))
    assert code == 3
    cells = {c["target"]["name"]: c for c in load_run_json(out)["cells"]}
    for name in targets:
        reason = cells[name]["reason"]
        assert cells[name]["status"] == "failed" and "\n" not in reason and "TLS" in reason, reason
    assert "Traceback" not in stderr


# --- the pieces without a server ---------------------------------------------------------------

def _spec(name: str, shape: tuple, dtype: str = "float32"):
    from bench.models.inputs import InputSpec

    return InputSpec(name, shape, dtype)


def test_input_plan_renames_a_single_input_and_converts_within_a_kind():
    plan = plan_inputs((_spec("input_ids", (8,), "int64"),), (TensorMeta("ids", "INT32", (-1, 8)),), "m")
    (name, datatype, arr), = plan.tensors({"input_ids": np.ones((2, 8), np.int64)})
    assert (name, datatype, arr.dtype) == ("ids", "INT32", np.int32)
    assert any("sent as the server's 'ids'" in n for n in plan.notes)
    assert any("int64 sent as INT32" in n for n in plan.notes)


@pytest.mark.parametrize(("server", "words"), [
    ((TensorMeta("x", "INT64", (-1, 16)),), "does not convert"),
    ((TensorMeta("x", "FP32", (-1, 8)),), "size 8 in dimension 1"),
    ((TensorMeta("x", "FP32", (-1,)),), "has 1 dimensions"),
    ((TensorMeta("x", "BYTES", (-1, 16)),), "not a numeric tensor"),
    ((TensorMeta("a", "FP32", (-1, 16)), TensorMeta("b", "FP32", (-1, 16))), "takes a (FP32 [-1, 16]), b"),
])
def test_input_plan_mismatch_is_one_line(server, words):
    with pytest.raises(InputMismatch) as err:
        plan_inputs((_spec("x", (16,)),), server, "m")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_input_plan_checks_a_cells_shape_against_fixed_server_dims():
    plan = plan_inputs((_spec("x", ("seq",)),), (TensorMeta("x", "FP32", (1, 16)),), "m")
    with pytest.raises(InputMismatch, match=r"shape \[2, 16\] does not fit the server's 'x' of shape \[1, 16\]"):
        plan.tensors({"x": np.zeros((2, 16), np.float32)})


@pytest.mark.parametrize(("knobs", "key", "words"), [
    ({"protocol": "http2"}, "protocol", "not allowed"),
    ({"protocol": "grpc", "binary_data": True}, "binary_data", "applies to protocol = \"rest\""),
    ({"protocol": "grpc", "url": "http://h:1/prefix"}, "url", "no path"),
    ({"protocol": "grpc", "url": "https://h:1", "verify_tls": False}, "verify_tls", "ca_file"),
    ({"model_version": "1/2"}, "model_version", "not a version name"),
])
def test_kserve_options_refuse_bad_knobs_in_one_line(knobs, key, words):
    from bench.served.kserve_options import KServeV2Options

    opts = KServeV2Options(**{"url": "http://127.0.0.1:1", "model": "m", **knobs})
    problem = opts.validate()
    assert problem is not None and problem[0] == key and words in problem[1], problem


def test_scripts_are_valid_python():
    for script in (MLSERVER_RUNTIME, KSERVE_SERVER):
        compile(textwrap.dedent(script), "<server script>", "exec")


# --- the asynchronous request path the served driver uses -------------------------------------

def _loaded(url: str, protocol: str = "rest", binary: bool = False, **knobs):
    """A kserve-v2 backend loaded as a worker would load it, for the tiny MLP's one input."""
    from types import SimpleNamespace

    from bench.backends.kserve_v2 import KServeV2Backend
    from bench.served.kserve_options import KServeV2Options

    opts = KServeV2Options(url=url, model=MODEL, protocol=protocol, binary_data=binary,
                           header_env={"x-api-key": TOKEN_VAR}, **knobs)
    assert opts.validate() is None, opts.validate()
    backend = KServeV2Backend()
    backend.load(SimpleNamespace(inputs=(_spec("x", (16,)),)), SimpleNamespace(options=opts))
    return backend


FEEDS = {"x": np.random.default_rng(1).standard_normal((2, 16)).astype(np.float32)}


def _sends(requester, prepared, n: int, concurrency: int) -> list[BaseException | None]:
    """n sends, `concurrency` at a time, in one fresh event loop (as the driver runs a cell)."""
    import asyncio

    async def main():
        await requester.open(concurrency)
        try:
            sem = asyncio.Semaphore(concurrency)

            async def one():
                async with sem:
                    try:
                        await requester.send(prepared)
                    except Exception as exc:  # noqa: BLE001 (the kinds are what the test looks at)
                        return exc
                    return None

            return await asyncio.gather(*(one() for _ in range(n)))
        finally:
            await requester.close()

    return asyncio.run(main())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_requester_sends_many_in_flight_and_names_each_failure_kind(variant, request, monkeypatch):
    from bench.errors import RequestFailed

    fixture, protocol, binary = VARIANTS[variant]
    server = request.getfixturevalue(fixture)
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    url = f"http://127.0.0.1:{server.ports[protocol]}"
    backend = _loaded(url, protocol, binary)
    requester = backend.requester()
    prepared = requester.prepare(FEEDS)
    assert _sends(requester, prepared, 40, 4) == [None] * 40
    # the same requester opens again in another loop (the driver runs one loop per cell)
    assert _sends(requester, prepared, 4, 2) == [None] * 4

    # a request the server refuses: a body for a model it lacks (gRPC) or an unparsable body (REST)
    if protocol == "grpc":
        from tritonclient.grpc import service_pb2

        refused = service_pb2.ModelInferRequest(model_name="nosuchmodel").SerializeToString()
    else:
        from bench.backends.kserve_v2 import RestBody

        refused = RestBody(b"{not json", {"Content-Type": "application/json"})
    (exc,) = _sends(requester, refused, 1, 1)
    assert isinstance(exc, RequestFailed) and exc.kind == "http_status", exc
    assert ("gRPC" if protocol == "grpc" else "HTTP 4") in exc.reason and "\n" not in exc.reason

    # nothing listening: the server went away after load (a closed port)
    gone = _loaded(url, protocol, binary)
    port = free_port()
    if protocol == "grpc":
        from bench.backends.kserve_v2 import GrpcRequester, Scrubber

        opts = gone._opts.__class__(**{**gone._opts.__dict__, "url": f"http://127.0.0.1:{port}"})
        closed = GrpcRequester(opts, {}, Scrubber(()), gone._prepare, ("y",))
    else:
        gone._wire.port = port
        closed = gone.requester()
    (exc,) = _sends(closed, closed.prepare(FEEDS), 1, 1)
    assert isinstance(exc, RequestFailed) and exc.kind == "connect", exc


class _FakeV2:
    """A v2 REST server in a thread that answers its infer requests as `mode` says: a valid answer,
    a body that is not JSON, JSON without the model's output, or a 500 whose error echoes the
    request's secret header (which the client must scrub). It keeps the x-api-key values it got."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = self
        self.mode, self.keys, self.auths = "ok", [], []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                meta = {"/v2/health/ready": {}, f"/v2/models/{MODEL}/ready": {}, "/v2": {"name": "fake", "version": "0"},
                        f"/v2/models/{MODEL}": {"name": MODEL, "versions": ["1"], "platform": "fake",
                                                "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}],
                                                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}}
                if self.path in meta:
                    self._answer(200, json.dumps(meta[self.path]).encode())
                else:
                    self._answer(404, b'{"error": "not found"}')

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key, auth = self.headers.get("x-api-key"), self.headers.get("Authorization")
                fake.keys.append(key)
                fake.auths.append(auth)
                ok = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 4], "data": [0.5] * 8}]}
                answers = {"ok": (200, json.dumps(ok).encode()), "garbage": (200, b"<html>busy</html>"),
                           "missing": (200, b'{"outputs": []}'),
                           "short": (200, json.dumps({"outputs": [{**ok["outputs"][0], "data": [0.5] * 7}]}).encode()),
                           "error": (500, json.dumps({"error": f"bad key {key} auth {auth}"}).encode())}
                self._answer(*answers[fake.mode])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_v2():
    fake = _FakeV2()
    yield fake
    fake.close()


@pytest.mark.parametrize(("mode", "kind", "words"), [
    ("garbage", "malformed", "not v2 JSON"),
    ("missing", "malformed", "lacks output 'y'"),
    ("short", "malformed", "7 values for shape [2, 4]"),
    ("error", "http_status", "HTTP 500: bad key *** auth ***"),
])
def test_a_bad_answer_is_its_kind_on_both_paths_and_never_shows_the_token(fake_v2, monkeypatch, mode, kind, words):
    import base64

    from bench.errors import RequestFailed

    basic = base64.b64encode(f"benchuser:{PASSWORD}".encode()).decode()
    monkeypatch.setenv(TOKEN_VAR, TOKEN)
    backend = _loaded(fake_v2.url.replace("http://", f"http://benchuser:{PASSWORD}@"))
    np.testing.assert_array_equal(backend.outputs(FEEDS)[0], np.full((2, 4), 0.5))
    fake_v2.mode = mode
    requester = backend.requester()
    (exc,) = _sends(requester, requester.prepare(FEEDS), 1, 1)
    with pytest.raises(RequestFailed) as sync:
        backend.bind(FEEDS)()
    for failed in (exc, sync.value):
        assert isinstance(failed, RequestFailed) and failed.kind == kind and words in failed.reason, failed
        assert TOKEN not in str(failed) and PASSWORD not in str(failed) and basic not in str(failed)
    assert fake_v2.keys and set(fake_v2.keys) == {TOKEN}  # both paths sent the header
    assert set(fake_v2.auths) == {f"Basic {basic}"}  # and the URL's user:password as HTTP Basic


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_server_that_never_answers_is_a_timeout(protocol):
    """A listener that accepts connections and never answers (a hung server): each request ends
    at timeout_s as a "timeout", not a hang and not a connection error."""
    import socket
    import time

    from bench.backends.kserve_v2 import GrpcRequester, RestBody, RestRequester, Scrubber, _Grpc, _Rest
    from bench.errors import RequestFailed
    from bench.served.kserve_options import KServeV2Options

    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        opts = KServeV2Options(url=f"http://127.0.0.1:{hole.getsockname()[1]}", model=MODEL, protocol=protocol,
                               timeout_s=0.3)
        body = RestBody(b"{}", {"Content-Type": "application/json"}) if protocol == "rest" else b""
        if protocol == "rest":
            requester = RestRequester(_Rest(opts, {}, Scrubber(())), lambda feeds: body, ())
        else:
            requester = GrpcRequester(opts, {}, Scrubber(()), lambda feeds: body, ())
        t0 = time.monotonic()
        (exc,) = _sends(requester, body, 1, 1)
        assert isinstance(exc, RequestFailed) and exc.kind == "timeout", exc
        # the synchronous path (bind()'s call) too: timeout_s, not connect_timeout_s, bounds a request
        wire = _Rest(opts, {}, Scrubber(())) if protocol == "rest" else _Grpc(opts, {}, Scrubber(()))
        with pytest.raises(RequestFailed) as sync:
            wire.infer(body, (), False)
        assert sync.value.kind == "timeout", sync.value
        wire.close()
        assert time.monotonic() - t0 < 5
