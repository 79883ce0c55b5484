"""The zoo's torchvision-shaped CNNs (resnet18, mobilenet-v3): built locally from torch.nn with random
weights, the same parameter counts and multiply-adds as torchvision's, exported through the loader."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bench.models import zoo
from bench.models.flops import torch_flops_per_sample
from bench.models.inputs import make_inputs
from bench.models.loader import ModelRef, prepare

# torchvision's published figures: parameters, and multiply-adds per 224x224 image
# (resnet18: 1.814 G, "1.82 GFLOPS" in its docs; mobilenet_v3_large: 0.217 G).
TORCHVISION = {
    "resnet18": (11_689_512, 1.814e9),
    "mobilenet-v3": (5_483_032, 0.217e9),
}
CNNS = sorted(TORCHVISION)


@pytest.fixture(scope="module")
def built():
    """Each model at its default args and seed 0, built once for the module."""
    return {name: zoo.build(name, zoo.resolve_args(name, {}), 0) for name in CNNS}


def _pixels(name: str, batch: int, seed: int) -> torch.Tensor:
    feeds = make_inputs(zoo.ZOO[name].inputs(zoo.resolve_args(name, {})), batch, seed)
    return torch.from_numpy(feeds["pixels"])


@pytest.mark.parametrize("name", CNNS)
def test_parameter_count_and_multiply_adds_are_torchvisions(name, built):
    params, macs = TORCHVISION[name]
    module = built[name]
    assert sum(p.numel() for p in module.parameters()) == params
    x = _pixels(name, 2, 0)
    assert x.shape == (2, 3, 224, 224)
    per_image = torch_flops_per_sample(module, (x,), 2) / 2  # FLOPs are 2 per multiply-add
    assert per_image == pytest.approx(macs, rel=0.02)


@pytest.mark.parametrize("name", CNNS)
def test_random_classifier_outputs_vary_with_the_input(name, built):
    """A random-weight classifier whose top-1 is one class for every input makes a top-1 agreement
    figure meaningless: the logits are finite, differ, and their argmax moves with the input."""
    with torch.inference_mode():
        logits = built[name](_pixels(name, 16, 1))
    assert logits.shape == (16, 1000)
    assert torch.isfinite(logits).all()
    assert logits.std() > 0 and (logits.std(dim=0) > 0).all()
    top1 = logits.argmax(dim=-1).tolist()
    # centre_logits takes the part shared by every input out; without it this was 1 class of 16
    # (resnet18) and the logits of mobilenet-v3 differed by 1e-9 between inputs.
    assert len(set(top1)) >= 4, top1


@pytest.mark.parametrize("name", CNNS)
def test_seed_decides_the_weights(name, built):
    args = zoo.resolve_args(name, {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the centred bias is computed in float64 and rounded: thread-proof
    try:
        again = zoo.build(name, args, 0)
    finally:
        torch.set_num_threads(threads)
    other = zoo.build(name, args, 1)
    first = built[name].state_dict()
    assert list(again.state_dict()) == list(first)
    for key, tensor in again.state_dict().items():
        assert torch.equal(tensor, first[key]), key
    assert not all(torch.equal(t, first[k]) for k, t in other.state_dict().items())


@pytest.mark.parametrize("name", CNNS)
def test_exports_to_onnx_and_onnxruntime_matches_torch(name, built):
    model = prepare(ModelRef(f"zoo:{name}", "zoo", seed=0), need_onnx=True, need_torch=True)
    assert model.flops_per_sample == pytest.approx(2 * TORCHVISION[name][1], rel=0.02)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(model.onnx_path, opts, providers=["CPUExecutionProvider"])
    feeds = make_inputs(model.inputs, 2, 0)
    got = session.run(None, feeds)[0]
    with torch.inference_mode():
        want = built[name](torch.from_numpy(feeds["pixels"])).numpy()
    assert got.shape == want.shape == (2, 1000)
    # 1e-4 relative to the logits' scale (centred logits near zero have no elementwise relative error)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_output_kinds_name_the_metric_that_fits():
    kinds = {name: entry.output_kind for name, entry in zoo.ZOO.items()}
    assert kinds == {
        "mlp": "top1", "resnet-mini": "top1", "resnet50-like": "top1", "resnet18": "top1", "mobilenet-v3": "top1",
        "bert-mini": "cosine", "bert-base-like": "cosine", "decoder": "top1", "gpt2-like": "top1",
    }


def test_older_resnet_entries_keep_their_stems():
    """The stem argument defaults to what each form had: ImageNet's for bottleneck blocks, CIFAR's otherwise."""
    mini = zoo.build("resnet-mini", zoo.resolve_args("resnet-mini", {}), 0)
    fifty = zoo.build("resnet50-like", zoo.resolve_args("resnet50-like", {"blocks": "1,1", "image": 32}), 0)
    assert mini.stem[0].kernel_size == (3, 3) and len(mini.stem) == 3
    assert fifty.stem[0].kernel_size == (7, 7) and isinstance(fifty.stem[3], torch.nn.MaxPool2d)
    with pytest.raises(ValueError, match="stem 'vgg'"):
        zoo.ResNet(stem="vgg")
