"""`bench run MODEL`: a model on the command line, a suite built for this machine, the same run.json;
`--print-suite` prints a suite that `bench run FILE` runs unchanged."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.config.suite import load_suite
from bench.runner.plan import plan
from tests.helpers import load_run_json, run_cli
from tests.inputs_models import VOCAB, mlp_with_external_data
from tests.test_models import symbolic_onnx

QUICK = ("--quick", "--quiet")


@pytest.fixture(scope="module")
def models(tmp_path_factory, bert_model) -> Path:
    import shutil

    directory = tmp_path_factory.mktemp("cli-models")
    shutil.copy(bert_model, directory / "bert.onnx")
    (directory / "mlp").mkdir()
    mlp_with_external_data(directory / "mlp")
    return directory


def test_a_bert_like_graph_from_one_command_line_with_seq_swept(tmp_path, capsys, monkeypatch, models):
    monkeypatch.chdir(models)
    code, out, err = run_cli(capsys, "run", "bert.onnx", "--shape", "seq=8,16", "--batch", "1,2", "--out",
                             str(tmp_path / "r"), *QUICK)
    assert code == 0, err
    run = load_run_json(tmp_path / "r")
    assert [c["id"] for c in run["cells"]] == [f"bert/ort-cpu/b{b}/seq={s}/{sc}" for s in (8, 16) for b in (1, 2)
                                              for sc in ("single-stream", "offline")]
    assert all(c["status"] == "ok" for c in run["cells"])
    assert run["suite"]["path"] == "<command line>" and run["cells"][0]["model"]["ref"] == str(models / "bert.onnx")
    ids = run["cells"][0]["inputs"]["tensors"][0]
    assert ids["name"] == "input_ids" and ids["values"].startswith(f"integers in [0, {VOCAB})")


def test_a_torch_exported_mlp_with_external_data_from_one_command_line(tmp_path, capsys, models):
    code, _, err = run_cli(capsys, "run", str(models / "mlp" / "model.onnx"), "--batch", "4",
                           "--scenario", "single-stream", "--out", str(tmp_path / "r"), *QUICK)
    assert code == 0, err
    [cell] = load_run_json(tmp_path / "r")["cells"]
    assert cell["id"] == "model/ort-cpu/b4/single-stream" and cell["status"] == "ok"


def test_a_zoo_model_gets_this_machines_cpu_targets(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "zoo:mlp", "--batch", "2", "--scenario", "single-stream",
                           "--out", str(tmp_path / "r"), *QUICK)
    assert code == 0, err
    cells = load_run_json(tmp_path / "r")["cells"]
    assert [c["target"]["name"] for c in cells] == ["torch-cpu", "ort-cpu"]
    assert cells[1]["agreement"]["verdict"] == "pass" and cells[0]["agreement"]["verdict"] == "reference"


def test_print_suite_prints_a_suite_that_runs_unchanged(tmp_path, capsys, monkeypatch, models):
    monkeypatch.chdir(models)
    code, out, err = run_cli(capsys, "run", "bert.onnx", "--shape", "seq=8,16", "--batch", "1,4", "--print-suite")
    assert code == 0 and err == ""
    kept = tmp_path / "elsewhere" / "kept.toml"
    kept.parent.mkdir()
    kept.write_text(out)
    monkeypatch.chdir(tmp_path)
    cells = plan(load_suite(kept))
    assert [c.id for c in cells][:2] == ["bert/ort-cpu/b1/seq=8/single-stream", "bert/ort-cpu/b1/seq=8/offline"]
    assert len(cells) == 8 and cells[0].benchmark.model == str(models / "bert.onnx")
    assert not (models / "results").exists()  # printing ran nothing


@pytest.mark.parametrize("argv, fragment", [
    (["missing.onnx"], "model 'missing.onnx': no such file: {cwd}/missing.onnx"),
    (["m.onnx", "--shape", "len=4"], "dimension 'len' (dims.len or --shape len=N) is not one of the model's inputs'"),
    (["m.onnx", "--shape", "seq=0"], "--shape seq '0': expected distinct integers >= 1"),
    (["m.onnx", "--shape", "seq"], "--shape 'seq': expected NAME=SIZE"),
    (["m.onnx"], "symbolic dimension 'seq' that the config does not bind; set dims = {{ seq = N }} in the benchmark "
                 "(or --shape seq=N)"),
    (["m.onnx", "--shape", "seq=4", "--target", "ort-cpux"], "--target 'ort-cpux': not allowed; did you mean 'ort-cpu'?"),
    (["m.onnx", "--shape", "seq=4", "--batch", "0"], "--batch '0': expected distinct integers >= 1"),
    (["m.onnx", "--shape", "seq=4", "--scenario", "ofline"], "--scenario 'ofline': not allowed; did you mean 'offline'?"),
    (["suite.toml", "--batch", "4"], "--batch applies to a model on the command line"),
    (["nonsense"], "nonsense: no such file; pass a suite file, a model (path/to/model.onnx"),
])
def test_bad_command_lines_are_one_line(tmp_path, capsys, monkeypatch, argv, fragment):
    symbolic_onnx(tmp_path / "m.onnx")
    (tmp_path / "suite.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "run", *argv, "--out", str(tmp_path / "r"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment.format(cwd=tmp_path) in lines[0], lines[0]
    assert not (tmp_path / "r").exists()
