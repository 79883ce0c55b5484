"""`bench export mlflow`: runs written to a local SQLite tracking store and read back through
MLflow's own client; an unreachable store is one line with no password and nothing written."""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytest.importorskip("mlflow", reason="bench export mlflow needs MLflow's client: pip install -e '.[mlflow]'")
pytest.importorskip("sqlalchemy", reason="a SQLite tracking store needs sqlalchemy: pip install -e '.[mlflow]'")

ROOT = Path(__file__).parents[1]
SAMPLE = ROOT / "tests/data/run_v12.json"


@pytest.fixture
def store(tmp_path):
    """A SQLite tracking store in tmp_path, its artifacts beside it."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("bench-test", artifact_location=(tmp_path / "artifacts").as_uri())
    return uri, client


def test_each_cell_becomes_a_nested_run_with_its_knobs_figures_and_environment(tmp_path, capsys, store):
    uri, client = store
    capsys.readouterr()  # MLflow's own lines from creating the store
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(SAMPLE.read_text())
    (run_dir / "report.html").write_text("<!DOCTYPE html><html><body>report</body></html>")
    code, out, err = run_cli(capsys, "export", "mlflow", str(run_dir), "--tracking-uri", uri,
                             "--experiment", "bench-test")
    assert code == 0, err
    doc = json.loads(SAMPLE.read_text())
    exp = client.get_experiment_by_name("bench-test")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(doc["cells"])
    parent = parents[0]
    assert f"MLflow run {parent.info.run_id}" in out
    assert parent.data.tags["bench.run_id"] == doc["run_id"] and parent.data.tags["env.host"] == doc["environment"]["host"]
    assert parent.data.tags["env.harness_commit"] == doc["environment"]["harness_commit"]
    assert parent.data.tags["env.package.onnxruntime"] == doc["environment"]["packages"]["onnxruntime"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id)) == ["report.html", "run.json"]
    by_cell = {c.data.tags["bench.cell"]: c for c in children}
    for cell in doc["cells"]:
        r = by_cell[cell["id"]]
        assert r.data.params["target"] == cell["target"]["name"] and r.data.params["batch_size"] == str(cell["batch_size"])
        assert r.data.tags["bench.status"] == cell["status"]
        if cell["status"] != "ok":
            assert r.info.status == {"failed": "FAILED", "skipped": "KILLED"}[cell["status"]]
            assert "throughput" not in r.data.metrics
            continue
        tp = cell["metrics"]["throughput"]
        assert r.data.metrics["throughput"] == pytest.approx(tp["value"])
        assert r.data.metrics["throughput_ci_low"] == pytest.approx(tp["ci_low"])
        assert r.data.metrics["p99_ms_ci_high"] == pytest.approx(cell["metrics"]["latency_ms"]["p99"]["ci_high"])
        for knob, value in cell["target"]["knobs"].items():
            if value is not None:
                assert r.data.params[f"knobs.{knob}"] == str(value)
        assert r.info.status == "FINISHED"


def test_an_unreachable_store_is_one_line_without_the_password_and_writes_nothing(tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), "--tracking-uri",
                             f"http://bench:s3cret-pw@127.0.0.1:{port}", "--experiment", "x")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot use the MLflow store" in lines[0] and "Traceback" not in err
    assert "s3cret-pw" not in err and "***" in lines[0]


def test_a_bad_run_file_exports_nothing(tmp_path, capsys, store):
    uri, client = store
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    bad.write_text(SAMPLE.read_text()[:3000])
    code, _, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), str(bad), "--tracking-uri", uri,
                           "--experiment", "bench-test")
    assert code == 2 and len(err.strip().splitlines()) == 1
    exp = client.get_experiment_by_name("bench-test")
    assert client.search_runs([exp.experiment_id]) == []  # every file is read before anything is written
