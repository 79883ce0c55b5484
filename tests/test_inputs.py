"""Inputs as the user means them: named dynamic dimensions swept like the batch, per-input specs,
the user's own samples (.npz, a directory of .npy; never unpickled), defaults that suit the
common graphs, and models and factories that resolve against the suite file's directory."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import load_run_json, run_cli, tiny_suite
from tests.inputs_models import BERT_SOURCE, MAX_POSITIONS, VOCAB
from tests.test_models import symbolic_onnx


@pytest.fixture
def bert(bert_model) -> Path:
    return bert_model


def suite_text(model: str, extra: str = "", targets: str = '["ort"]', batch_sizes: str = "[1, 2]") -> str:
    return tiny_suite(model=model, targets=targets, batch_sizes=batch_sizes, bench_extra=textwrap.dedent(extra))


def one_line(err: str, *fragments: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def test_a_bert_like_graph_sweeps_its_sequence_length_from_the_suite_directory(tmp_path, capsys, monkeypatch, bert):
    """Relative to the suite file, from another directory; input_ids drawn within the vocabulary the
    graph's embedding table has, attention_mask all ones; seq a sweep axis in the ids and records;
    a length past the model's position table fails its cell and stops that sweep."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "bert.onnx").write_bytes(bert.read_bytes())
    (project / "suite.toml").write_text(suite_text("bert.onnx", f"dims = {{ seq = [8, 16, {MAX_POSITIONS * 2}, "
                                                                 f"{MAX_POSITIONS * 4}] }}\n"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = run_cli(capsys, "run", str(project / "suite.toml"), "--out", str(tmp_path / "r"))
    assert code == 3, err  # the seq=64 cells failed; the others completed
    cells = {c["id"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    ok = cells["m/ort/b2/seq=16/single-stream"]
    assert ok["status"] == "ok" and ok["dims"] == {"seq": 16}
    assert ok["model"]["ref"] == str(project / "bert.onnx") and ok["model"]["prepare_s"] > 0
    tensors = {t["name"]: t for t in ok["inputs"]["tensors"]}
    assert ok["inputs"]["source"] == "generated"
    assert tensors["input_ids"]["shape"] == [2, 16] and tensors["attention_mask"]["shape"] == [2, 16]
    assert tensors["input_ids"]["values"] == f"integers in [0, {VOCAB}) (rows of the embedding table 'tok.weight')"
    assert tensors["attention_mask"]["values"] == "fixed 1"
    assert cells["m/ort/b1/seq=8/single-stream"]["status"] == "ok"
    past = cells[f"m/ort/b1/seq={MAX_POSITIONS * 2}/single-stream"]
    assert past["status"] == "failed" and past["failure_kind"] == "error"
    further = cells[f"m/ort/b1/seq={MAX_POSITIONS * 4}/single-stream"]
    assert further["status"] == "skipped" and f"seq={MAX_POSITIONS * 2} failed" in further["reason"]


def test_the_users_samples_feed_every_cell(tmp_path, capsys, bert):
    """An .npz with an array per input: each batch takes the first samples, cycling; the cell says
    where its inputs came from; a directory of NAME.npy files works the same."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (3, 12))
    mask = np.ones((3, 12), dtype=np.int64)
    np.savez(tmp_path / "samples.npz", input_ids=ids, attention_mask=mask)
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "input_ids.npy", ids)
    np.save(tmp_path / "dir" / "attention_mask.npy", mask)
    for source in ("samples.npz", "dir"):
        suite = tmp_path / f"suite-{source}.toml"
        suite.write_text(suite_text(str(bert), f'input_file = "{source}"\n', batch_sizes="[4]"))
        code, _, err = run_cli(capsys, "run", str(suite), "--out", str(tmp_path / f"out-{source}"))
        assert code == 0, err
        cell = load_run_json(tmp_path / f"out-{source}")["cells"][0]
        assert cell["inputs"]["source"] == "file" and cell["inputs"]["file"] == str(tmp_path / source)
        assert cell["inputs"]["samples"] == 3 and cell["dims"] == {}  # the file fixes seq: not a sweep axis
        assert [t["shape"] for t in cell["inputs"]["tensors"]] == [[4, 12], [4, 12]]
    from bench.models.input_files import FileSamples
    from bench.models.inputs import InputSpec

    feeds = FileSamples(str(tmp_path / "samples.npz"), (InputSpec("input_ids", ("seq",), "int64"),)).feeds(4)
    assert (feeds["input_ids"] == ids[[0, 1, 2, 0]]).all()  # the first samples, cycling


@pytest.mark.parametrize("arrays, fragment", [
    ({"y": np.zeros((2, 3, 4), np.float32)}, "no array for input 'x' (it holds: y"),
    ({"x": np.zeros((2, 3, 4), np.int64)}, "input 'x' is int64 in the file; the model takes float32"),
    ({"x": np.zeros((2, 3, 5), np.float32)}, "axis 2 must be 4"),
    ({"x": np.zeros((2, 4), np.float32)}, "expected (samples, seq, 4)"),
    ({"x": np.array([{"a": 1}, None], dtype=object)}, "object array, which only pickle can load; refused"),
])
def test_bad_sample_files_are_one_line(tmp_path, capsys, arrays, fragment):
    path = symbolic_onnx(tmp_path / "m.onnx")
    np.savez(tmp_path / "bad.npz", **arrays)  # numpy pickles an object array into the archive
    (tmp_path / "s.toml").write_text(suite_text(str(path), 'input_file = "bad.npz"\n'))
    code, _, err = run_cli(capsys, "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "r"))
    assert code == 2
    one_line(err, f"input_file '{tmp_path / 'bad.npz'}'", fragment)
    assert not (tmp_path / "r").exists()


def test_an_object_array_is_never_unpickled(tmp_path, monkeypatch):
    """The refusal happens before pickle is asked for anything."""
    import pickle

    from bench.errors import ModelError
    from bench.models.input_files import read_samples

    np.savez(tmp_path / "evil.npz", x=np.array([object()], dtype=object))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load called"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    with pytest.raises(ModelError, match="refused"):
        read_samples(tmp_path / "evil.npz", ("x",))


@pytest.mark.parametrize("extra, fragment", [
    ("dims = { seq = 0 }\n", "dims.seq: 0 is not allowed; expected an integer from 1 to"),
    ("dims = { seq = [4, 0] }\n", "dims.seq[1]: 0 is not allowed"),
    ("dims = { seq = [] }\n", "dims.seq: [] is not allowed"),
    ("dims = { seq = 4, len = 8 }\n", "dimension 'len' (dims.len or --shape len=N) is not one of the model's inputs' (its named dimensions: seq)"),
    ("dims = { batch = 4 }\n", "dims.batch: not a dimension name"),
    ("dims = { seq = 4 }\ninputs.z = { vocab = 3 }\n", "inputs.z: the model has no input 'z'"),
    ("dims = { seq = 4 }\ninputs.x = { dtype = \"int64\" }\n", "inputs.x.dtype: 'int64' is not allowed; the graph declares float32"),
    ("dims = { seq = 4 }\ninputs.x = { shape = [\"seq\", 5] }\n", "inputs.x.shape: axis 2 is fixed at 4 in the graph"),
    ("dims = { seq = 4 }\ninputs.x = { vocab = 3, low = 1 }\n", "inputs.x.vocab: set vocab or low/high, not both"),
])
def test_bad_dims_and_input_specs_are_one_line(tmp_path, capsys, extra, fragment):
    path = symbolic_onnx(tmp_path / "m.onnx")
    (tmp_path / "s.toml").write_text(suite_text(str(path), extra))
    code, _, err = run_cli(capsys, "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "r"))
    assert code == 2
    one_line(err, fragment)


def test_input_specs_set_ranges_and_fixed_values(tmp_path, capsys):
    path = symbolic_onnx(tmp_path / "m.onnx")
    (tmp_path / "s.toml").write_text(suite_text(str(path), "dims = { seq = [3, 5] }\ninputs.x = { low = -2, high = -1 }\n",
                                                batch_sizes="[2]"))
    code, _, err = run_cli(capsys, "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cells = load_run_json(tmp_path / "r")["cells"]
    assert [c["id"] for c in cells] == ["m/ort/b2/seq=3/single-stream", "m/ort/b2/seq=5/single-stream"]
    assert [c["inputs"]["tensors"][0]["shape"] for c in cells] == [[2, 3, 4], [2, 5, 4]]
    assert cells[0]["inputs"]["tensors"][0]["values"] == "uniform [-2, -1)"
    from bench.models.input_specs import apply_overrides
    from bench.models.inputs import InputOverride
    from bench.models.inputs import InputSpec, make_inputs

    spec = apply_overrides((InputSpec("x", ("seq", 4)),), (("x", InputOverride(low=-2.0, high=-1.0)),), "m", True)
    x = make_inputs(tuple(s.bound({"seq": 3}) for s in spec), 8, 0)["x"]
    assert x.min() >= -2 and x.max() < -1


def test_a_factory_beside_the_suite_imports_without_pythonpath_and_sweeps_seq(tmp_path, capsys, monkeypatch):
    """`tinybert:make` next to the suite file: the parent and every worker import it from there;
    its inputs get a named `seq` (the export makes that axis dynamic), swept on torch and ORT,
    whose outputs agree."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "tinybert.py").write_text(BERT_SOURCE)
    (project / "suite.toml").write_text(suite_text("tinybert:make", textwrap.dedent(f"""
        dims = {{ seq = [4, 8] }}
        inputs.input_ids = {{ shape = ["seq"], vocab = {VOCAB} }}
        inputs.attention_mask = {{ shape = ["seq"], value = 1 }}
    """), targets='["torch", "ort"]', batch_sizes="[2]"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", str(project / "suite.toml"), "--out", str(tmp_path / "r"))
    assert code == 0, err
    cells = {c["id"]: c for c in load_run_json(tmp_path / "r")["cells"]}
    assert set(cells) == {f"m/{t}/b2/seq={s}/single-stream" for t in ("torch", "ort") for s in (4, 8)}
    ort8 = cells["m/ort/b2/seq=8/single-stream"]
    assert ort8["agreement"]["verdict"] == "pass" and ort8["model"]["export_s"] is not None
    assert ort8["inputs"]["tensors"][0]["values"] == f"integers in [0, {VOCAB})"


def test_a_missing_factory_module_names_where_it_looked(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(suite_text("nosuchmodule_xyz:make", targets='["torch"]'))
    code, _, err = run_cli(capsys, "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "r"))
    assert code == 2
    one_line(err, "no module 'nosuchmodule_xyz' in", str(tmp_path), "the suite file's directory")


def test_a_path_relative_only_to_the_current_directory_says_which_was_tried(tmp_path, capsys, monkeypatch):
    (tmp_path / "models").mkdir()
    symbolic_onnx(tmp_path / "models" / "m.onnx")
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "s.toml").write_text(suite_text("models/m.onnx", "dims = { seq = 2 }\n"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "suites/s.toml", "--out", str(tmp_path / "r"))
    assert code == 2
    one_line(err, f"no such file: {tmp_path / 'suites' / 'models' / 'm.onnx'}",
             "relative to the current directory", str(tmp_path / "models" / "m.onnx"))
