"""`bench run --executor ray` on a real Ray cluster on this machine: a head on 127.0.0.1 (label
machine=node-a) and a second node process (label machine=node-b, custom resource node_b), started
by the module's fixture with `ray start`; a third node joins for the node-loss test and dies in it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest

from tests.helpers import load_run_json, run_cli, tiny_suite, write_suite

ray = pytest.importorskip("ray", reason="Ray is the fleet extra: pip install -e '.[ray]' (.ci/run installs it)")

ROOT = Path(__file__).parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
SCHEMA = json.loads((ROOT / "bench/results/run.schema.json").read_text())
# Fast node-death detection for the node-loss test (Ray's default takes ~30 s to declare a node dead).
SYSTEM_CONFIG = json.dumps({"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                            "health_check_initial_delay_ms": 0})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The test cluster runs without Ray's token authentication: a `ray start --head` enables it when a
# token file exists (~/.ray/auth_token, which any earlier `ray.init()` on this machine writes) while
# a joining `ray start` does not, and the second node is refused. The driver (this process, and
# the CLI it starts) must then say the same.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _ray(*args: str, env_extra: dict | None = None) -> None:
    env = {**os.environ, **RAY_ENV, **(env_extra or {})}
    done = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _nodes(address: str) -> list[dict]:
    """The cluster's live nodes, asked from a short-lived driver process."""
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(json.dumps([n for n in ray.nodes() if n['Alive']]))" % address)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **RAY_ENV})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _start_node(address: str, *args: str, node_env: str) -> None:
    _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1", *args,
         env_extra={"BENCH_TEST_NODE": node_env})


@pytest.fixture(scope="module")
def cluster():
    if shutil.which(RAY) is None and not Path(RAY).exists():
        pytest.skip("the ray command is not installed beside this Python")
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
             "--labels=machine=node-a", "--include-dashboard=false", "--disable-usage-stats",
             f"--system-config={SYSTEM_CONFIG}", env_extra={"BENCH_TEST_NODE": "a"})
        _start_node(address, "--labels=machine=node-b", '--resources={"node_b": 1}', node_env="b")
        deadline = time.monotonic() + 60
        while len(_nodes(address)) < 2:
            assert time.monotonic() < deadline, "the second Ray node did not join"
            time.sleep(0.5)
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _suite(tmp_path: Path, targets: str, extra_targets: str = "", model: str = "zoo:mlp", stop_extra: str = "",
           bench_extra: str = "") -> Path:
    body = tiny_suite(model=model, targets=targets, batch_sizes="[1, 4]", extra_targets=extra_targets,
                      bench_extra=bench_extra)
    if stop_extra:
        body = body.replace("ci_figures = [] }", f"ci_figures = [], {stop_extra} }}")
    return write_suite(tmp_path, body)


PLACED = """
[targets.ort-a]
backend = "onnxruntime"
providers = ["CPUExecutionProvider"]
intra_op_threads = 1
machine = "node-a"

[targets.ort-b]
backend = "onnxruntime"
providers = ["CPUExecutionProvider"]
intra_op_threads = 1
resources = { node_b = 1 }
"""


def test_a_suite_splits_across_the_nodes_by_resource_and_label_and_records_each_node(cluster, tmp_path, capsys):
    """Placement: machine = node-a keeps a target on the head, resources = { node_b = 1 } on the
    second node; each cell's repetitions stay on one node; run.json holds each node's fingerprint;
    the same suite run locally has the same cell ids and the same schema; the history store (a
    real PostgreSQL server where CI gives one) records each cell under its machine kind."""
    suite = _suite(tmp_path, '["ort", "ort-a", "ort-b"]', PLACED, stop_extra="repeats = 2")
    # A schema of its own on the shared CI server: the gate below must see only this test's series.
    pg = os.environ.get("BENCH_TEST_PG_URL")
    db = (f"{pg}{'&' if '?' in pg else '?'}schema=fleet_{uuid.uuid4().hex[:12]}" if pg
          else f"sqlite:///{tmp_path / 'history.sqlite'}")
    code, out, err = run_cli(capsys, "run", str(suite), "--executor", "ray", "--address", cluster,
                             "--out", str(tmp_path / "ray"), "--record", "--db", db)
    assert code == 0, err
    doc = load_run_json(tmp_path / "ray")
    jsonschema.validate(doc, SCHEMA)
    assert doc["executor"] == "ray"
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert sorted(n["label"] for n in nodes.values()) == ["node-a", "node-b"]
    assert all(n["environment"]["python"] and n["kind"] == n["label"] for n in nodes.values())
    by_label = {n["label"]: i for i, n in nodes.items()}
    for c in doc["cells"]:
        assert c["status"] == "ok", c["reason"]
        assert {r["node"] for r in c["repetitions"]} == {c["node"]}, c["id"]  # one machine per cell
        if c["target"]["name"] == "ort-a":
            assert c["node"] == by_label["node-a"]
        if c["target"]["name"] == "ort-b":
            assert c["node"] == by_label["node-b"]
    for target in ("ort", "ort-a", "ort-b"):  # a sweep's curve comes from one machine
        assert len({c["node"] for c in doc["cells"] if c["target"]["name"] == target}) == 1, target
    assert "node" in out and "n0" in out and "n1" in out  # the summary table says where each cell ran

    # The same suite on the local executor: the same cells, the same schema, no nodes.
    code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / "local"))
    assert code == 0, err
    local = load_run_json(tmp_path / "local")
    jsonschema.validate(local, SCHEMA)
    assert local["executor"] == "local" and local["nodes"] == []
    assert [c["id"] for c in local["cells"]] == [c["id"] for c in doc["cells"]]
    assert local["schema_version"] == doc["schema_version"]
    # A cell measured on a labelled node compares only with one measured on the same kind.
    code, out, _ = run_cli(capsys, "compare", str(next((tmp_path / "local").glob("*/run.json"))),
                           str(next((tmp_path / "ray").glob("*/run.json"))), "--json")
    verdicts = {c["key"]: c for c in json.loads(out)["cells"]}
    assert all(c["verdict"] == "not comparable" and "different machine kinds" in c["reason"]
               for c in verdicts.values()), verdicts

    # The history store got each cell under its node's machine kind; the gate runs per kind.
    from bench.results.stores import open_store

    store = open_store(db)
    try:
        rows = [r for r in store.rows() if r.run_id == doc["run_id"]]
    finally:
        store.close()
    kinds = {(r.target, r.batch_size): r.machine for r in rows}
    assert {kinds[("ort-a", 1)], kinds[("ort-a", 4)]} == {"node-a"}
    assert {kinds[("ort-b", 1)], kinds[("ort-b", 4)]} == {"node-b"}
    code, out, err = run_cli(capsys, "history", "--db", db)
    assert code == 4, err  # one run per series: each kind's gate has no data yet
    assert "gate on node-a: no data" in out and "gate on node-b: no data" in out


def _mlp_with_external_data(tmp_path: Path) -> Path:
    """A small MLP laid out as torch 2.13's default exporter writes it (external_data=True): the
    graph in model.onnx, every weight in model.onnx.data beside it, named by relative location;
    a dynamic batch axis. Built with onnx directly: the exporter's logging outlives a test's capture."""
    import numpy as np
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    path = tmp_path / "model" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
    assert (path.parent / "model.onnx.data").stat().st_size == (16 * 32 + 32 + 32 * 4 + 4) * 4
    return path


def test_a_model_with_external_data_runs_on_every_node_with_its_weights(cluster, tmp_path, capsys):
    """A .onnx whose weights live in model.onnx.data: the weights travel with the graph and land
    beside it on each node (before, only the .onnx did, and every cell failed with 'External data
    path does not exist')."""
    model = _mlp_with_external_data(tmp_path)
    suite = _suite(tmp_path, '["ort-a", "ort-b"]', PLACED, model=str(model))
    code, _, err = run_cli(capsys, "run", str(suite), "--executor", "ray", "--address", cluster,
                           "--out", str(tmp_path / "r"))
    assert code == 0, err
    doc = load_run_json(tmp_path / "r")
    assert len(doc["cells"]) == 4 and len({c["node"] for c in doc["cells"]}) == 2  # both nodes ran it
    assert all(c["status"] == "ok" for c in doc["cells"]), [(c["id"], c["reason"]) for c in doc["cells"]]


def test_models_from_one_command_line_run_on_the_cluster(cluster, tmp_path, capsys, monkeypatch, bert_model):
    """The first hour on a fleet: a torch-exported MLP (weights in model.onnx.data) and a BERT-like
    graph with its sequence length swept, each from one command line; then the BERT fed from the
    user's own samples, which travel to the node with the model."""
    import numpy as np

    from tests.inputs_models import VOCAB

    _mlp_with_external_data(tmp_path).parent.rename(tmp_path / "mlp")  # the torch export is tested locally
    shutil.copy(bert_model, tmp_path / "bert.onnx")
    np.savez(tmp_path / "samples.npz", input_ids=np.random.default_rng(0).integers(0, VOCAB, (3, 12)),
             attention_mask=np.ones((3, 12), dtype=np.int64))
    monkeypatch.chdir(tmp_path)
    fleet = ("--executor", "ray", "--address", cluster, "--quick", "--quiet", "--scenario", "single-stream")
    for argv, ids in [
        (["mlp/model.onnx", "--batch", "4"], ["model/ort-cpu/b4/single-stream"]),
        (["bert.onnx", "--shape", "seq=8,16", "--batch", "2"],
         ["bert/ort-cpu/b2/seq=8/single-stream", "bert/ort-cpu/b2/seq=16/single-stream"]),
        (["bert.onnx", "--inputs", "samples.npz", "--batch", "2"], ["bert/ort-cpu/b2/single-stream"]),
    ]:
        out = tmp_path / f"r{len(ids)}-{argv[0].replace('/', '-')}-{len(argv)}"
        code, _, err = run_cli(capsys, "run", *argv, *fleet, "--out", str(out))
        assert code == 0, err
        doc = load_run_json(out)
        assert doc["executor"] == "ray" and [c["id"] for c in doc["cells"]] == ids
        assert all(c["status"] == "ok" and c["node"] for c in doc["cells"]), [c["reason"] for c in doc["cells"]]
    assert doc["cells"][0]["inputs"]["source"] == "file" and doc["cells"][0]["inputs"]["samples"] == 3
    # this cluster's nodes share one disk, so the driver's path would open there too: the samples
    # are among the files a unit ships (and reads from the node's copy)
    from bench.models.loader import ModelRef, prepare
    from bench.runner.ray_executor import _model_files

    model = prepare(ModelRef(str(tmp_path / "bert.onnx"), "onnx", input_file=str(tmp_path / "samples.npz")),
                    need_onnx=True, need_torch=False)
    assert _model_files(model) == {str(tmp_path / "bert.onnx"), str(tmp_path / "samples.npz")}


def test_a_worker_killed_mid_unit_is_retried_once_on_the_other_node_then_fails(cluster, tmp_path, capsys):
    """A unit whose worker dies by SIGKILL is retried once on another eligible node; killed again,
    the unit fails with both reasons; the other target's cells complete (exit 3)."""
    suite = _suite(tmp_path, '["torch", "ort"]', model="tests.fleet_models:killed", stop_extra="repeats = 1")
    code, _, err = run_cli(capsys, "run", str(suite), "--executor", "ray", "--address", cluster,
                           "--out", str(tmp_path / "r"), "--only", "*/b1/*")
    assert code == 3, err
    doc = load_run_json(tmp_path / "r")
    cells = {c["target"]["name"]: c for c in doc["cells"]}
    assert cells["ort"]["status"] == "ok"  # ONNX Runtime runs the exported graph: nothing kills it
    failed = cells["torch"]
    assert failed["status"] == "failed" and failed["failure_kind"] == "crash", failed
    reason = failed["reason"]
    assert reason.count("worker killed by SIGKILL") == 2 and "retried once after" in reason, reason
    first, second = re.findall(r"\[node ([^\]]+)\]", reason)
    assert first != second, reason  # the retry went to the other node


def test_a_worker_killed_once_is_retried_and_the_cell_completes(cluster, tmp_path, capsys):
    marker = tmp_path / "killed-once"
    suite = _suite(tmp_path, '["torch"]', model="tests.fleet_models:killed", stop_extra="repeats = 1",
                   bench_extra=f'model_args = {{ marker = "{marker}" }}')
    code, _, err = run_cli(capsys, "run", str(suite), "--executor", "ray", "--address", cluster,
                           "--out", str(tmp_path / "r"), "--only", "*/b1/*")
    assert code == 0, err
    cell = load_run_json(tmp_path / "r")["cells"][0]
    assert marker.exists() and cell["status"] == "ok"
    assert "retried after: worker killed by SIGKILL" in cell["repetitions"][0]["stop_reason"], cell["repetitions"]


def test_a_target_no_node_can_run_is_skipped_with_the_reason_not_a_hang(cluster, tmp_path, capsys):
    extra = """
[targets.h100]
backend = "onnxruntime"
providers = ["CPUExecutionProvider"]
machine = "node-c"

[targets.gpu]
backend = "torch"
device = "cuda"
"""
    suite = _suite(tmp_path, '["ort", "h100", "gpu"]', extra)
    code, out, err = run_cli(capsys, "run", str(suite), "--executor", "ray", "--address", cluster,
                             "--out", str(tmp_path / "r"), "--only", "*/b1/*")
    assert code == 0, err
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["ort"]["status"] == "ok"
    assert cells["h100"]["status"] == "skipped"
    assert "no node with label machine=node-c" in cells["h100"]["reason"]
    assert "node-a, node-b" in cells["h100"]["reason"] and "did you mean" in cells["h100"]["reason"]
    assert cells["gpu"]["status"] == "skipped" and "no node with 1 GPU" in cells["gpu"]["reason"]


def test_ctrl_c_cancels_the_units_in_flight_and_keeps_the_finished_cells(cluster, tmp_path):
    """Two benchmarks: `m` finishes in round 2, `slow` needs a third round; Ctrl-C while round 3's
    units run (on both nodes, 5 s each: the signal lands inside them even on a loaded machine)
    cancels them and keeps every cell measured so far (exit 130)."""
    body = tiny_suite(targets='["ort", "torch"]', batch_sizes="[1]").replace("ci_figures = [] }",
                                                                            "ci_figures = [], repeats = 2 }")
    slow = """
        [[benchmark]]
        name = "slow"
        model = "zoo:mlp"
        model_args = { in_features = 16, width = 32, depth = 2, classes = 4 }
        batch_sizes = [1]
        scenarios = ["single-stream"]
        targets = ["ort", "torch"]
        stop = { min_seconds = 5, max_seconds = 6, min_iterations = 5, warmup_iterations = 2, warmup_seconds = 0.0, ci_figures = [], repeats = 3 }
    """
    suite = write_suite(tmp_path, body + slow)
    # SIGINT at its default in the child, as a terminal's shell leaves it: a CI job run in the
    # background starts everything with SIGINT ignored, and the CLI keeps ignoring it then.
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", str(suite), "--executor", "ray", "--address",
                             cluster, "--out", str(tmp_path / "r"), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while True:  # until m's cells are in run.json (written after round 2), with round 3 under way
            runs = list((tmp_path / "r").glob("*/run.json"))
            if runs and json.loads(runs[0].read_text() or "{}").get("cells"):
                break
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)  # round 3's units have started (each measures for 5 s at least)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out[-3000:], err)
    assert "Traceback" not in err and "interrupted" in err
    doc = load_run_json(tmp_path / "r")
    assert doc["status"] == "interrupted", doc["status"]
    cells = {c["id"]: c for c in doc["cells"]}
    assert {c["status"] for c in cells.values()} == {"ok"} and len(cells) == 4, cells.keys()
    for target in ("ort", "torch"):  # the slow cells keep the 2 repetitions measured before Ctrl-C
        slow_cell = cells[f"slow/{target}/b1/single-stream"]
        assert len(slow_cell["repetitions"]) == 2 and "interrupted after 2 of 3" in slow_cell["stop_reason"]
    # No unit's worker outlives the run: Ray killed the tasks in flight, and their workers with them.
    import psutil

    deadline = time.monotonic() + 20
    while any("fleet_unit" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])):
        assert time.monotonic() < deadline, "a fleet unit's Ray worker outlived the interrupted run"
        time.sleep(0.5)


def _join(cluster: str, label: str, nodes: int) -> None:
    _start_node(cluster, f"--labels=machine=node-{label}", f'--resources={{"node_{label}": 1}}', node_env=label)
    deadline = time.monotonic() + 60
    while len(_nodes(cluster)) < nodes:
        assert time.monotonic() < deadline, f"node-{label} did not join"
        time.sleep(0.5)


def test_a_node_lost_mid_unit_has_its_units_retried_on_the_others(cluster, tmp_path, capsys):
    """A third node joins; the first unit that lands on it kills its raylet (the node is lost mid-
    unit). That unit is retried on another node; the run completes with every cell measured."""
    _join(cluster, "c", 3)
    suite = _suite(tmp_path, '["torch"]', model="tests.fleet_models:kills_its_node", stop_extra="repeats = 2").read_text()
    # Three sweeps that may run side by side, so that units start on all three nodes at once.
    suite = suite.replace('targets = ["torch"]', 'targets = ["torch", "torch2", "torch3"]').replace(
        "[[benchmark]]", '[targets.torch2]\nbackend = "torch"\nthreads = 1\n\n[targets.torch3]\nbackend = "torch"\n'
                         'threads = 1\n\n[[benchmark]]')
    path = write_suite(tmp_path, suite, "nodes.toml")
    code, _, err = run_cli(capsys, "run", str(path), "--executor", "ray", "--address", cluster,
                           "--out", str(tmp_path / "r"))
    assert code == 0, err
    doc = load_run_json(tmp_path / "r")
    assert all(c["status"] == "ok" for c in doc["cells"]), [(c["id"], c["reason"]) for c in doc["cells"]]
    retried = [r for c in doc["cells"] for r in c["repetitions"] if "retried after" in r["stop_reason"]]
    assert retried, "no unit ran on the lost node"
    assert any("NodeDiedError" in r["stop_reason"] or "WorkerCrashedError" in r["stop_reason"]
               or "died" in r["stop_reason"] for r in retried), [r["stop_reason"] for r in retried]
    labels = {n["id"]: n["label"] for n in doc["nodes"]}
    assert all(labels[c["node"]] != "node-c" for c in doc["cells"])  # no figure from the lost node


def test_a_unit_only_a_lost_node_could_run_fails_at_the_scheduling_timeout(cluster, tmp_path, capsys, monkeypatch):
    """A target pinned to node-d (machine = node-d): its unit kills node-d; the retry has no node
    to go to, waits the scheduling timeout, and fails with both reasons; the run ends (exit 3)."""
    monkeypatch.setenv("BENCH_RAY_SCHEDULING_TIMEOUT_S", "3")
    alive = len(_nodes(cluster))
    _join(cluster, "d", alive + 1)
    extra = '[targets.on-d]\nbackend = "torch"\nthreads = 1\nmachine = "node-d"\n'
    suite = _suite(tmp_path, '["ort", "on-d"]', extra, model="tests.fleet_models:kills_its_node",
                   stop_extra="repeats = 1", bench_extra='model_args = { node_env = "d" }')
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, "run", str(suite), "--executor", "ray", "--address", cluster,
                           "--out", str(tmp_path / "r"), "--only", "*/b1/*")
    assert code == 3, err
    cells = {c["target"]["name"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert cells["ort"]["status"] == "ok"
    reason = cells["on-d"]["reason"]
    assert cells["on-d"]["status"] == "failed" and "no live node with label machine=node-d for 3 s" in reason, reason
    assert "a retry after:" in reason and "node-d" in reason, reason
    assert time.monotonic() - t0 < 120  # ended, not hung


# --- bad input: one line, exit 2, before anything runs (no cluster needed) ------------------------


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_an_unknown_executor_is_refused_with_did_you_mean(tmp_path, capsys):
    suite = _suite(tmp_path, '["ort"]')
    code, _, err = run_cli(capsys, "run", str(suite), "--executor", "rya", "--out", str(tmp_path / "r"))
    line = _one_line(err)
    assert code == 2 and "--executor 'rya' is not an executor" in line and "did you mean 'ray'" in line
    assert "allowed: local, ray" in line and not (tmp_path / "r").exists()


@pytest.mark.parametrize("damage", ["missing", "outside"])
def test_external_data_that_is_not_beside_the_model_is_one_line_naming_the_path(tmp_path, capsys, damage):
    """Checked where the model is prepared, so the local executor says it too: one line, exit 2,
    instead of every cell failing in ONNX Runtime."""
    import onnx

    model = _mlp_with_external_data(tmp_path)
    data = model.parent / "model.onnx.data"
    if damage == "missing":
        data.unlink()
    else:  # a location that leaves the model's directory, which ONNX refuses to read
        graph = onnx.load(str(model), load_external_data=False)
        for tensor in graph.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = "../model.onnx.data"
        onnx.save_model(graph, str(model))
        data.rename(tmp_path / "model.onnx.data")
    code, _, err = run_cli(capsys, "run", str(_suite(tmp_path, '["ort"]', model=str(model))),
                           "--out", str(tmp_path / "r"))
    line = _one_line(err)
    assert code == 2 and not (tmp_path / "r").exists(), err
    if damage == "missing":
        assert f"its external data file {data} does not exist" in line and "'model.onnx.data'" in line, line
    else:
        assert "keeps its data at '../model.onnx.data'" in line and "relative to the model's directory" in line, line


def test_an_address_without_the_ray_executor_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", str(_suite(tmp_path, '["ort"]')), "--address", "127.0.0.1:6379")
    assert code == 2 and "needs --executor ray" in _one_line(err)


def test_an_address_that_does_not_answer_is_refused_within_the_connect_timeout(tmp_path, capsys):
    from bench.runner.ray_executor import CONNECT_TIMEOUT_S

    port = _free_port()  # nothing listens there
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, "run", str(_suite(tmp_path, '["ort"]')), "--executor", "ray", "--address",
                           f"127.0.0.1:{port}", "--out", str(tmp_path / "r"))
    line = _one_line(err)
    assert code == 2 and f"no Ray head answers there within {CONNECT_TIMEOUT_S:g} s" in line, line
    assert f"ray start --head --port={port}" in line
    assert time.monotonic() - t0 < CONNECT_TIMEOUT_S + 30  # refused, not left to ray.init's own waits
    code, _, err = run_cli(capsys, "run", str(_suite(tmp_path, '["ort"]')), "--executor", "ray", "--address",
                           "head-without-port", "--out", str(tmp_path / "r"))
    assert code == 2 and "expected the head's HOST:PORT" in _one_line(err)


def test_the_ray_executor_without_ray_installed_names_the_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, _, err = run_cli(capsys, "run", str(_suite(tmp_path, '["ort"]')), "--executor", "ray",
                           "--out", str(tmp_path / "r"))
    line = _one_line(err)
    assert code == 2 and "needs Ray, which is not installed here" in line and "pip install 'bench-harness[ray]'" in line


@pytest.mark.parametrize("keys, fragment", [
    ('machine = "h 100"', "targets.bad.machine: 'h 100' is not a node label"),
    ("machine = 3", "targets.bad.machine"),
    ("resources = { h100 = 0 }", "targets.bad.resources.h100: 0 is not allowed; expected a number > 0"),
    ("resources = { GPU = 1 }", "targets.bad.resources.GPU: not a custom resource name"),
    ('resources = "h100"', "targets.bad.resources"),
    ("cpus = -1", "targets.bad.cpus: -1 is not allowed"),
])
def test_bad_placement_keys_are_one_line_naming_the_key(tmp_path, capsys, keys, fragment):
    extra = f'[targets.bad]\nbackend = "onnxruntime"\n{keys}\n'
    code, _, err = run_cli(capsys, "run", str(_suite(tmp_path, '["ort", "bad"]', extra)), "--out", str(tmp_path / "r"))
    assert code == 2 and fragment in _one_line(err), err


def test_placement_is_read_into_the_target_and_sets_what_a_unit_reserves(tmp_path):
    from bench.config.suite import load_suite
    from bench.runner.ray_executor import _request

    extra = '[targets.placed]\nbackend = "torch"\nthreads = 3\nmachine = "h100-node"\nresources = { h100 = 1 }\n'
    suite = load_suite(str(_suite(tmp_path, '["ort", "placed"]', extra)))
    placed = suite.targets["placed"]
    assert placed.placement.machine == "h100-node" and placed.placement.resources == (("h100", 1.0),)
    assert _request(placed) == ({"CPU": 3.0, "h100": 1.0}, "h100-node")  # its 3 threads' cores
    assert _request(suite.targets["ort"]) == ({"CPU": 1.0}, "")
    assert "machine" not in placed.to_dict()["knobs"]  # placement is not a backend knob


def test_a_bad_scheduling_timeout_is_one_line_naming_the_variable(monkeypatch):
    from bench.errors import ConfigError
    from bench.runner.ray_executor import SCHEDULING_TIMEOUT_S, scheduling_timeout_s

    assert scheduling_timeout_s() == SCHEDULING_TIMEOUT_S
    monkeypatch.setenv("BENCH_RAY_SCHEDULING_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match=r"BENCH_RAY_SCHEDULING_TIMEOUT_S='soon': expected a number of seconds > 0"):
        scheduling_timeout_s()


def test_a_tune_search_races_on_the_cluster_like_any_suite(cluster, tmp_path, capsys):
    """bench tune drives the same runner: its rounds' units are placed by the Ray executor, the
    session's run.json says so, and the answer comes from the journal as it does locally."""
    suite = _suite(tmp_path, '["ort"]', bench_extra="")
    suite.write_text(suite.read_text() + '\n[tune]\nmax_rounds = 2\nconfirm_rounds = 2\n\n[tune.space]\n'
                                          'batch_size = [1, 4]\ngraph_optimization_level = ["basic", "all"]\n')
    out = tmp_path / "tune"
    code, stdout, err = run_cli(capsys, "tune", str(suite), "--executor", "ray", "--address", cluster,
                                "--out", str(out), "--quiet")
    assert code == 0, err
    answer = json.loads((out / "tune.json").read_text())
    # 2 levels x 2 batch sizes; the target as declared sets no level and runs at "all": it is ort/b1
    assert answer["pick"] and answer["cost"]["space"] == 4 and answer["cost"]["processes"] >= 8
    assert {c["id"] for c in answer["candidates"]} == {"ort/b1", "ort/b4", "ort~graph_optimization_level=basic/b1",
                                                       "ort~graph_optimization_level=basic/b4"}
    assert load_run_json(out)["executor"] == "ray"
    assert f"pick: {answer['pick']}" in stdout
