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
SAMPLE = ROOT / "tests/data/run_v14.json"


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


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("uri", ["file:./mlruns", "./mlruns", "ABSOLUTE", "file:ABSOLUTE"])
def test_a_file_store_is_one_line_suggesting_a_database_and_writes_nothing(tmp_path, capsys, monkeypatch, uri):
    """MLflow 3 refuses file stores with a paragraph and a traceback (exit 1); here: one line, exit 2."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = uri.replace("ABSOLUTE", str(tmp_path / "mlruns"))
    code, out, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), "--tracking-uri", uri)
    line = _one_line(err)
    assert code == 2 and out == ""
    assert line.startswith(f"bench: --tracking-uri {uri}: MLflow ") and "refuses file stores" in line, line
    assert "e.g. --tracking-uri sqlite:///mlflow.db" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no artifacts


def test_a_file_store_from_the_environment_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "./mlruns")
    code, _, err = run_cli(capsys, "export", "mlflow", str(SAMPLE))
    line = _one_line(err)
    assert code == 2 and "MLFLOW_TRACKING_URI=./mlruns: MLflow" in line and "refuses file stores" in line, line


def test_mlflows_own_opt_in_to_file_stores_is_honoured(tmp_path, capsys, monkeypatch):
    """MLFLOW_ALLOW_FILE_STORE=true is the user's word to MLflow: the file store is then used."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    code, _, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), "--tracking-uri", str(tmp_path / "mlruns"),
                           "--experiment", "bench-test")
    assert code == 0, err
    client = MlflowClient(tracking_uri=str(tmp_path / "mlruns"))
    exp = client.get_experiment_by_name("bench-test")
    cells = json.loads(SAMPLE.read_text())["cells"]
    assert len(client.search_runs([exp.experiment_id], max_results=100)) == 1 + len(cells)


def test_a_scheme_mlflow_does_not_know_is_one_line_naming_the_allowed_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), "--tracking-uri", "foo://x")
    line = _one_line(err)
    assert code == 2 and out == ""
    assert "--tracking-uri foo://x: 'foo' is not a tracking store scheme MLflow knows" in line, line
    allowed = line.split("(allowed: ")[1]
    assert "sqlite" in allowed and "postgresql" in allowed and "http" in allowed, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_without_a_uri_the_store_is_sqlite_mlflow_db_here_even_beside_an_old_mlruns(tmp_path, capsys, monkeypatch):
    """No --tracking-uri, no MLFLOW_TRACKING_URI: ./mlflow.db. MLflow's own default would be the
    file store ./mlruns here (it holds an experiment), which MLflow 3 then refuses. A run file
    given by a name of its own is the artifact run.json."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\nexperiment_id: '0'\n")
    code, out, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), "--experiment", "bench-test")
    assert code == 0, err
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert f"exported to {uri}," in out, out
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("bench-test")
    parents = [r for r in client.search_runs([exp.experiment_id], max_results=100)
               if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    assert [a.path for a in client.list_artifacts(parents[0].info.run_id)] == ["run.json"]


def test_a_failure_part_way_is_one_line_and_keeps_nothing(tmp_path, capsys, store):
    """The experiment's artifact location is a file, not a directory: run.json cannot be logged
    after the cells' runs were made; they are deleted and the error is one line (exit 2)."""
    uri, client = store
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    exp_id = client.create_experiment("blocked", artifact_location=blocker.as_uri())
    capsys.readouterr()
    code, out, err = run_cli(capsys, "export", "mlflow", str(SAMPLE), "--tracking-uri", uri, "--experiment", "blocked")
    line = _one_line(err)
    assert code == 2 and out == ""
    doc = json.loads(SAMPLE.read_text())
    assert f"--tracking-uri {uri}: exporting {doc['run_id']} failed part-way (nothing of it kept)" in line, line
    assert client.search_runs([exp_id]) == []
