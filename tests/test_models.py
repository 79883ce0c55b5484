"""Models: the zoo, ONNX export with a dynamic batch and its cache, user .onnx / factory / .pt2 references."""
from __future__ import annotations

import os
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from bench.errors import ModelError
from bench.models import zoo
from bench.models.inputs import InputSpec, inputs_sha256, make_inputs
from bench.models.loader import ModelRef, build_torch, classify, prepare

TINY = (("classes", 4), ("depth", 1), ("in_features", 8), ("width", 16))


def symbolic_onnx(path, fixed_batch: bool = False):
    """X[batch, seq, 4] + B with `seq` symbolic: needs dims = { seq = N }."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1 if fixed_batch else "batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    b = helper.make_tensor("b", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "g", [x], [y], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_zoo_builds_are_deterministic_per_seed():
    args = zoo.resolve_args("mlp", dict(TINY))
    a, b, c = zoo.build("mlp", args, 1), zoo.build("mlp", args, 1), zoo.build("mlp", args, 2)
    for (_, ta), (_, tb), (_, tc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(ta, tb)
    assert not all(torch.equal(ta, tc) for ta, tc in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("name, args", [
    ("resnet-mini", {"width": 8, "image": 16}),
    ("bert-mini", {"hidden": 32, "depth": 1, "seq_len": 8, "vocab": 50}),
    ("resnet50-like", {"width": 16, "blocks": "1,1", "image": 16}),
])
def test_zoo_models_run_on_their_input_specs(name, args):
    full = zoo.resolve_args(name, args)
    module = zoo.build(name, full, 0)
    feeds = make_inputs(zoo.ZOO[name].inputs(full), 3, 0)
    with torch.inference_mode():
        out = module(*(torch.from_numpy(v) for v in feeds.values()))
    assert out.shape[0] == 3 and torch.isfinite(out).all()


def test_zoo_rejects_unknown_args_and_names():
    with pytest.raises(ModelError, match="unknown model_args"):
        build_torch(ModelRef("zoo:mlp", "zoo", (("hiden", 3),)))
    with pytest.raises(ModelError, match="did you mean 'zoo:mlp'"):
        build_torch(ModelRef("zoo:mpl", "zoo"))


def test_export_has_dynamic_batch_matches_torch_and_is_cached(model_cache):
    ref = ModelRef("zoo:mlp", "zoo", TINY, seed=3)
    first = prepare(ref, need_onnx=True, need_torch=True)
    mtime = os.stat(first.onnx_path).st_mtime_ns
    again = prepare(ref, need_onnx=True, need_torch=True)
    assert again.onnx_path == first.onnx_path and os.stat(again.onnx_path).st_mtime_ns == mtime  # reused
    assert again.sha256 == first.sha256
    other_seed = prepare(ModelRef("zoo:mlp", "zoo", TINY, seed=4), need_onnx=False, need_torch=True)
    assert other_seed.sha256 != first.sha256
    session = ort.InferenceSession(first.onnx_path, providers=["CPUExecutionProvider"])
    module, _ = build_torch(ref)
    for batch in (1, 7):  # the batch axis is dynamic: not the export's example batch of 2
        feeds = make_inputs(first.inputs, batch, 0)
        got = session.run(None, feeds)[0]
        with torch.inference_mode():
            want = module(torch.from_numpy(feeds["x"])).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_inputs_are_the_same_in_every_process_and_differ_by_batch():
    specs = (InputSpec("x", (4,)), InputSpec("ids", (3,), "int64", 0, 10))
    assert inputs_sha256(make_inputs(specs, 2, 0)) == inputs_sha256(make_inputs(specs, 2, 0))
    assert inputs_sha256(make_inputs(specs, 2, 0)) != inputs_sha256(make_inputs(specs, 2, 1))
    ids = make_inputs(specs, 50, 0)["ids"]
    assert ids.min() >= 0 and ids.max() < 10


def test_onnx_file_inputs_bound_from_dims(tmp_path):
    path = symbolic_onnx(tmp_path / "m.onnx")
    model = prepare(ModelRef(str(path), "onnx", dims=(("seq", (5,)),)), need_onnx=True, need_torch=False)
    assert model.inputs == (InputSpec("x", ("seq", 4), "float32", 0.0, 1.0),)  # bound per cell
    assert model.input_source((("seq", 5),), 0).feeds(2)["x"].shape == (2, 5, 4)
    assert len(model.sha256) == 64


def test_onnx_file_with_unbound_dim_names_it(tmp_path):
    path = symbolic_onnx(tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"symbolic dimension 'seq' that the config does not bind; set dims = \{ seq = N \}"):
        prepare(ModelRef(str(path), "onnx"), need_onnx=True, need_torch=False)


def test_onnx_file_with_fixed_batch_is_refused(tmp_path):
    path = symbolic_onnx(tmp_path / "m.onnx", fixed_batch=True)
    with pytest.raises(ModelError, match="fixed batch axis of 1"):
        prepare(ModelRef(str(path), "onnx", dims=(("seq", (5,)),)), need_onnx=True, need_torch=False)


def test_invalid_onnx_and_missing_paths(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\xff\x13")
    with pytest.raises(ModelError, match="not a valid ONNX file"):
        prepare(ModelRef(str(bad), "onnx"), need_onnx=True, need_torch=False)
    with pytest.raises(ModelError, match="no such file"):
        prepare(ModelRef(str(tmp_path / "absent.onnx"), "onnx"), need_onnx=True, need_torch=False)
    with pytest.raises(ModelError, match="cannot run on a torch target"):
        prepare(ModelRef(str(bad), "onnx"), need_onnx=False, need_torch=True)
    with pytest.raises(ModelError, match="not a model reference"):
        classify("weights.bin")


FACTORY = '''
import torch

class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, tokens, scale):
        return self.out(self.emb(tokens).mean(1)) * scale.mean(1, keepdim=True)

def make():
    return Tagger(), (torch.randint(0, 20, (2, 6)), torch.rand(2, 5))

def broken():
    raise RuntimeError("weights went missing")

def wrong():
    return "not a module"
'''


def test_factory_model_specs_hash_and_export(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    ref = ModelRef("my_models:make", "factory", seed=5)
    model = prepare(ref, need_onnx=True, need_torch=True)
    names = [s.name for s in model.inputs]
    assert names == ["tokens", "scale"]
    tokens = model.inputs[0]
    assert tokens.dtype == "int64" and tokens.shape == (6,) and tokens.low >= 0 and tokens.high <= 20
    assert prepare(ref, need_onnx=False, need_torch=True).sha256 == model.sha256  # seeded: same weights
    session = ort.InferenceSession(model.onnx_path, providers=["CPUExecutionProvider"])
    feeds = make_inputs(model.inputs, 3, 0)
    module, _ = build_torch(ref)
    with torch.inference_mode():
        want = module(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    np.testing.assert_allclose(session.run(None, feeds)[0], want, rtol=1e-4, atol=1e-5)


def test_factory_that_raises_or_returns_junk(tmp_path, monkeypatch):
    (tmp_path / "my_models2.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match="the factory raised RuntimeError: weights went missing"):
        prepare(ModelRef("my_models2:broken", "factory"), need_onnx=False, need_torch=True)
    with pytest.raises(ModelError, match=r"must return \(torch.nn.Module, example_inputs\)"):
        prepare(ModelRef("my_models2:wrong", "factory"), need_onnx=False, need_torch=True)
    with pytest.raises(ModelError, match="cannot import the factory"):
        prepare(ModelRef("no_such_pkg_xyz:make", "factory"), need_onnx=False, need_torch=True)


def test_pt2_is_refused_unless_trusted_then_loads(tmp_path):
    module = zoo.build("mlp", zoo.resolve_args("mlp", dict(TINY)), 0)
    example = (torch.randn(2, 8),)
    path = tmp_path / "prog.pt2"
    torch.export.save(torch.export.export(module, example), str(path))
    with pytest.raises(ModelError, match="trust_model = true"):
        prepare(ModelRef(str(path), "pt2"), need_onnx=False, need_torch=True)
    model = prepare(ModelRef(str(path), "pt2", trusted=True), need_onnx=True, need_torch=True)
    assert model.inputs[0].shape == (8,)
    loaded, _ = build_torch(ModelRef(str(path), "pt2", trusted=True))
    x = torch.randn(2, 8)
    torch.testing.assert_close(loaded(x), module(x))
