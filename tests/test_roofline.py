"""Roofline context: FLOPs per sample (torch and ONNX counts against analytic ones) and device peaks."""
from __future__ import annotations

import json
import logging
import math
import re
import time
import warnings
from datetime import datetime

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from bench.models.flops import ONNX_FLOPS_SOURCE, UncountableGraph, count_onnx_flops, onnx_flops_per_sample, torch_flops_per_sample
from bench.measure.peaks import DevicePeaks, cached_peaks, measure_peaks, peaks_cache_path
from bench.models.inputs import InputSpec, make_inputs
from bench.models.loader import ModelRef, build_torch, prepare

BATCH = 2  # as callers pass it: a batch of 1 would let the exporter and the counter specialise


def _torch_inputs(specs: tuple[InputSpec, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(v) for v in make_inputs(specs, BATCH, 0).values())


def _export(module: nn.Module, specs: tuple[InputSpec, ...], path) -> str:
    """The way bench.models.loader exports: dynamo, weights inside, a dynamic batch axis."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(module.eval(), _torch_inputs(specs), str(path), dynamo=True, external_data=False,
                          opset_version=18, verbose=False, input_names=[s.name for s in specs],
                          dynamic_shapes=tuple({0: batch} for _ in specs))
    return str(path)


def _save(tmp_path, nodes, inputs, outputs, initializers=(), opset=18, value_info=(), name="g.onnx") -> str:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers), value_info=list(value_info))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _weight(name: str, *shape: int):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _vi(name: str, *dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def _conv_out(size: int, k: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


# --- torch counts against analytic ones -------------------------------------------------------


def test_torch_linear_mlp_is_2_in_out_per_layer():
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.GELU(), nn.Linear(24, 8))
    flops = torch_flops_per_sample(mlp, (torch.randn(BATCH, 16),), BATCH)
    assert flops == 2 * (16 * 32 + 32 * 24 + 24 * 8)


class ConvNet(nn.Module):
    """Stride, padding, groups, dilation, a non-square kernel, and a transposed conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
        self.b = nn.Conv2d(8, 6, (3, 1), dilation=2, bias=False)
        self.c = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


def _convnet_flops(h: int, w: int) -> int:
    """Per sample: 2 x output elements x (in_channels / groups) x kernel volume."""
    h1, w1 = _conv_out(h, 3, 2, 1), _conv_out(w, 3, 2, 1)
    a = 2 * (8 * h1 * w1) * (4 // 2) * 9
    h2, w2 = _conv_out(h1, 3, dilation=2), _conv_out(w1, 1, dilation=2)
    b = 2 * (6 * h2 * w2) * 8 * 3
    # Transposed: every input element meets (out_channels / groups) x kernel volume weights.
    c = 2 * (6 * h2 * w2) * (4 // 2) * 9
    return a + b + c


def test_torch_conv_net_matches_the_analytic_count():
    flops = torch_flops_per_sample(ConvNet().eval(), (torch.randn(BATCH, 4, 17, 13),), BATCH)
    assert flops == _convnet_flops(17, 13)


def test_torch_attention_counts_sdpa_and_the_mha_fast_path():
    """CPU sdpa and nn.MultiheadAttention's fused fast path count 0 in a bare FlopCounterMode."""

    class Sdpa(nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)

    q, kv = torch.randn(BATCH, 4, 16, 8), torch.randn(BATCH, 2, 16, 8)
    assert torch_flops_per_sample(Sdpa(), (q, kv, kv), BATCH) == 2 * 4 * 16 * 16 * (8 + 8)

    class Mha(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x):
            return self.m(x, x, x, need_weights=False)[0]

    tokens, hidden, heads = 16, 32, 4
    projections = 2 * tokens * hidden * (3 * hidden) + 2 * tokens * hidden * hidden
    attention = 2 * heads * tokens * tokens * 2 * (hidden // heads)
    assert torch.backends.mha.get_fastpath_enabled()
    flops = torch_flops_per_sample(Mha().eval(), (torch.randn(BATCH, tokens, hidden),), BATCH)
    assert flops == projections + attention
    assert torch.backends.mha.get_fastpath_enabled()  # restored


def test_torch_count_refuses_inputs_without_the_stated_batch():
    with pytest.raises(ValueError, match="batch axis of 2"):
        torch_flops_per_sample(nn.Linear(4, 4), (torch.randn(3, 4),), BATCH)


# --- ONNX counts on hand-built graphs ---------------------------------------------------------


def test_onnx_matmul_broadcasting_gemm_transposed_and_stale_shapes(tmp_path):
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),          # [B,2,4,5] @ [5,6] -> [B,2,4,6]
        helper.make_node("MatMul", ["y", "z"], ["u"]),          # [B,2,4,6] @ [B,1,6,3] -> [B,2,4,3]
        helper.make_node("Transpose", ["v"], ["vt"], perm=[1, 0]),  # [B,7] -> [7,B]
        helper.make_node("Gemm", ["vt", "g", "gb"], ["o"], transA=1),  # A^T [B,7] @ [7,9]
    ]
    path = _save(
        tmp_path, nodes,
        [_vi("x", "N", 2, 4, 5), _vi("z", "N", 1, 6, 3), _vi("v", "N", 7)],
        [_vi("u", "N", 2, 4, 3), _vi("o", "N", 9)],
        [_weight("w", 5, 6), _weight("g", 7, 9), _weight("gb", 9)],
        # A shape an exporter traced at batch 1: inference would keep it over the bound batch.
        value_info=[_vi("y", 1, 2, 4, 6)],
    )
    specs = (InputSpec("x", (2, 4, 5)), InputSpec("z", (1, 6, 3)), InputSpec("v", (7,)))
    flops, source = count_onnx_flops(path, specs, BATCH)
    assert flops == 2 * (2 * 4 * 6 * 5) + 2 * (2 * 4 * 3 * 6) + 2 * 9 * 7
    assert source == ONNX_FLOPS_SOURCE
    assert source == ("onnx graph: MatMul, Gemm, Conv, ConvTranspose "
                      "(2 FLOPs per multiply-add; elementwise ops not counted)")
    assert count_onnx_flops(path, specs, 8)[0] == flops  # per sample, whatever the batch


def test_onnx_conv_groups_strides_dilations_pads_and_conv_transpose(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["y"], group=2, strides=[2, 2], dilations=[2, 2],
                         pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("ConvTranspose", ["y", "w2"], ["z"], group=3, strides=[2, 2]),
    ]
    path = _save(tmp_path, nodes, [_vi("x", "N", 4, 9, 11)], [_vi("z", "N", 6, "H", "W")],
                 [_weight("w1", 6, 2, 3, 3), _weight("b1", 6), _weight("w2", 6, 2, 3, 2)])
    h, w = _conv_out(9, 3, 2, 1, 2), _conv_out(11, 3, 2, 1, 2)
    conv = 2 * (6 * h * w) * 2 * 9
    conv_t = 2 * (6 * h * w) * 2 * 6  # input elements x out_channels/group x kernel volume
    flops, _ = count_onnx_flops(path, (InputSpec("x", (4, 9, 11)),), BATCH)
    assert flops == conv + conv_t


def test_onnx_attention_op_counts_like_torch_sdpa(tmp_path):
    node = helper.make_node("Attention", ["q", "k", "v"], ["o"])
    path = _save(tmp_path, [node], [_vi("q", "N", 4, 16, 8), _vi("k", "N", 2, 16, 8), _vi("v", "N", 2, 16, 8)],
                 [_vi("o", "N", 4, 16, 8)], opset=23)
    specs = (InputSpec("q", (4, 16, 8)), InputSpec("k", (2, 16, 8)), InputSpec("v", (2, 16, 8)))
    flops, source = count_onnx_flops(path, specs, BATCH)
    assert flops == 2 * 4 * 16 * 16 * (8 + 8)
    assert "Attention" in source


def test_onnx_count_is_none_when_a_counted_shape_is_unknown(tmp_path, caplog):
    # NonZero's length depends on the data: the MatMul's K cannot be known from shapes alone.
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Cast", ["nz"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["ft"], perm=[1, 0]),
        helper.make_node("MatMul", ["f", "ft"], ["y"]),
    ]
    path = _save(tmp_path, nodes, [_vi("x", "N", 3)], [_vi("y", 2, 2)])
    with caplog.at_level(logging.INFO, logger="bench.models.flops"):
        assert onnx_flops_per_sample(path, (InputSpec("x", (3,)),), BATCH) is None
    assert "could not be inferred" in caplog.text


@pytest.mark.parametrize("case", ["einsum", "loop", "custom-op", "no-spec", "wrong-rank"])
def test_onnx_count_refuses_what_it_would_undercount(tmp_path, case):
    specs = (InputSpec("x", (4, 4)),)
    inputs, outputs = [_vi("x", "N", 4, 4)], [_vi("y", "N", 4, 4)]
    if case == "einsum":
        nodes = [helper.make_node("Einsum", ["x", "x"], ["y"], equation="bij,bjk->bik")]
    elif case == "loop":
        body = helper.make_graph(
            [helper.make_node("MatMul", ["s", "s"], ["s2"]), helper.make_node("Identity", ["c"], ["c2"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("c", TensorProto.BOOL, []), _vi("s", "N", 4, 4)],
            [helper.make_tensor_value_info("c2", TensorProto.BOOL, []), _vi("s2", "N", 4, 4)])
        nodes = [helper.make_node("Loop", ["", "", "x"], ["y"], body=body)]
    elif case == "custom-op":
        nodes = [helper.make_node("FusedMatMul", ["x", "x"], ["y"], domain="com.microsoft")]
    elif case == "no-spec":
        specs = (InputSpec("other", (4, 4)),)
        nodes = [helper.make_node("MatMul", ["x", "x"], ["y"])]
    else:
        specs = (InputSpec("x", (16,)),)
        nodes = [helper.make_node("MatMul", ["x", "x"], ["y"])]
    path = _save(tmp_path, nodes, inputs, outputs)
    with pytest.raises(UncountableGraph):
        count_onnx_flops(path, specs, BATCH)
    assert onnx_flops_per_sample(path, specs, BATCH) is None


def test_onnx_count_of_an_unreadable_file_is_none(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00not onnx")
    assert onnx_flops_per_sample(str(path), (InputSpec("x", (4,)),), BATCH) is None


# --- torch and ONNX agree on exported models --------------------------------------------------


def test_exported_conv_net_onnx_torch_and_analytic_agree(tmp_path):
    specs = (InputSpec("x", (4, 17, 13)),)
    path = _export(ConvNet(), specs, tmp_path / "convnet.onnx")
    flops, _ = onnx_flops_per_sample(path, specs, BATCH)
    assert flops == _convnet_flops(17, 13)


@pytest.fixture(scope="module")
def zoo_models(tmp_path_factory):
    """zoo:mlp, zoo:resnet-mini and zoo:bert-mini prepared with ONNX exports in a private cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.mktemp("roofline-cache")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {name: prepare(ModelRef(f"zoo:{name}", "zoo"), need_onnx=True, need_torch=True)
                    for name in ("mlp", "resnet-mini", "bert-mini")}


@pytest.mark.parametrize("name", ["mlp", "resnet-mini", "bert-mini"])
def test_zoo_onnx_and_torch_counts_agree(zoo_models, name):
    prepared = zoo_models[name]
    module, _ = build_torch(prepared.source)
    torch_flops = torch_flops_per_sample(module, _torch_inputs(prepared.inputs), BATCH)
    counted = onnx_flops_per_sample(prepared.onnx_path, prepared.inputs, BATCH)
    assert counted is not None
    onnx_flops, source = counted
    assert torch_flops > 0
    assert onnx_flops == pytest.approx(torch_flops, rel=0.01)
    assert source == ONNX_FLOPS_SOURCE


def test_zoo_mlp_count_is_analytic(zoo_models):
    # in 256 -> 512 -> 512 -> 512 -> 10, the defaults of zoo:mlp
    expected = 2 * (256 * 512 + 512 * 512 + 512 * 512 + 512 * 10)
    assert onnx_flops_per_sample(zoo_models["mlp"].onnx_path, zoo_models["mlp"].inputs)[0] == expected


# --- device peaks -----------------------------------------------------------------------------


def _stepping_clock(intervals_ns):
    """A clock whose successive (start, stop) readings are `intervals_ns` apart."""
    now = 0
    stamps = []
    for dt in intervals_ns:
        stamps += [now, now + dt]
        now += dt + 1_000
    it = iter(stamps)
    return lambda: next(it)


class RecordingClock:
    """The real perf_counter_ns, keeping every reading: the probe's arithmetic can then be redone exactly."""

    def __init__(self):
        self.stamps: list[int] = []

    def __call__(self) -> int:
        now = time.perf_counter_ns()
        self.stamps.append(now)
        return now

    def intervals(self) -> list[int]:
        return [b - a for a, b in zip(self.stamps[::2], self.stamps[1::2])]


def test_measure_peaks_on_cpu_gives_figures_from_its_own_timings():
    n, copy_bytes, repeats = 128, 1 << 20, 3
    clock = RecordingClock()
    peaks = measure_peaks("cpu", gemm_n=n, copy_bytes=copy_bytes, repeats=repeats, clock_ns=clock)
    ran = [p for p, _ in peaks.flops_per_s]
    skipped = [p for p in ("fp32", "fp16", "bf16") if p not in ran]
    assert ran[0] == "fp32" and ran == [p for p in ("fp32", "fp16", "bf16") if p in ran]  # in order, fp32 always
    probe = ("GEMM 128^3 per precision, best of 3; copy 1 MiB (read + write), best of 3; TF32 off for fp32; "
             "timed with perf_counter_ns")
    assert peaks.probe == probe + (f"; not supported here: {', '.join(skipped)}" if skipped else "")
    # repeats timed intervals per precision that ran, then the copy's; nothing else reads the clock
    intervals = clock.intervals()
    assert len(clock.stamps) == 2 * repeats * (len(ran) + 1) and all(i > 0 for i in intervals)
    for k, (precision, rate) in enumerate(peaks.flops_per_s):
        best_s = min(intervals[k * repeats:(k + 1) * repeats]) / 1e9
        assert rate == 2 * n**3 / best_s, precision  # 2 n^3 FLOPs over the best interval
        assert math.isfinite(rate) and rate > 0
    assert peaks.copy_bytes_per_s == 2 * copy_bytes / (min(intervals[-repeats:]) / 1e9)  # read + write
    assert peaks.flops_for("fp32") == peaks.flops_per_s[0][1]
    assert peaks.device == "cpu" and peaks.uuid == "" and peaks.device_name
    assert peaks.torch_version == torch.__version__
    assert datetime.fromisoformat(peaks.measured_at).utcoffset().total_seconds() == 0
    assert DevicePeaks.from_json_dict(json.loads(json.dumps(peaks.to_json_dict()))) == peaks  # a valid cache record


def test_measure_peaks_uses_2n3_over_the_best_interval():
    n, copy_bytes, repeats = 16, 4096, 3
    # Per probe: 3 intervals, best 2 ms. fp32 GEMM, then the copy.
    clock = _stepping_clock([5_000_000, 2_000_000, 4_000_000, 9_000_000, 1_000_000, 3_000_000])
    peaks = measure_peaks("cpu", gemm_n=n, copy_bytes=copy_bytes, repeats=repeats, precisions=("fp32",),
                          clock_ns=clock)
    assert peaks.flops_per_s == (("fp32", 2 * n**3 / 2e-3),)
    assert peaks.copy_bytes_per_s == 2 * copy_bytes / 1e-3  # read + write
    assert peaks.flops_for("fp16") is None


def test_measure_peaks_refuses_a_clock_that_did_not_move():
    with pytest.raises(ValueError, match="no measurable time"):
        measure_peaks("cpu", gemm_n=8, copy_bytes=64, repeats=2, precisions=("fp32",), clock_ns=lambda: 7)


def test_measure_peaks_restores_tf32_and_checks_its_arguments():
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        measure_peaks("cpu", gemm_n=8, copy_bytes=64, repeats=1, precisions=("fp32",))
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    with pytest.raises(ValueError, match="fp8"):
        measure_peaks("cpu", gemm_n=8, precisions=("fp8",))


def _fake_peaks(device: str, uuid: str = "", flops: float = 1e12) -> DevicePeaks:
    return DevicePeaks(device=device, device_name="Fake GPU 80GB", uuid=uuid, torch_version=torch.__version__,
                       flops_per_s=(("fp32", flops), ("bf16", 8 * flops)), copy_bytes_per_s=2e12,
                       probe="fake", measured_at="2025-01-01T00:00:00+00:00")


class CountingMeasure:
    def __init__(self, uuid: str = ""):
        self.calls: list[str] = []
        self.uuid = uuid

    def __call__(self, device: str) -> DevicePeaks:
        self.calls.append(device)
        return _fake_peaks(device, self.uuid, flops=1e12 * len(self.calls))


def test_peaks_json_round_trip_and_validation():
    peaks = _fake_peaks("cuda:0", "GPU-1234")
    data = json.loads(json.dumps(peaks.to_json_dict()))
    assert DevicePeaks.from_json_dict(data) == peaks
    assert peaks.flops_for("bf16") == 8e12 and peaks.flops_for("fp16") is None
    for broken, message in (
        ({**data, "copy_bytes_per_s": -1.0}, "peaks.copy_bytes_per_s: not a positive finite rate"),
        ({**data, "copy_bytes_per_s": True}, "peaks.copy_bytes_per_s: True is not allowed; expected a number"),
        ({**data, "flops_per_s": [["fp32", float("inf")]]}, "peaks.flops_per_s[0][1]: inf is not allowed; expected a finite number"),
        ({**data, "flops_per_s": [["fp32", -1e12]]}, "peaks.flops_per_s: not a list of (precision, positive finite FLOP/s)"),
        ({**data, "flops_per_s": {"fp32": 1e12}}, "peaks.flops_per_s: {'fp32': 1000000000000.0} is not allowed"),
        ({k: v for k, v in data.items() if k != "probe"}, "peaks: missing key 'probe'"),
        ({**data, "extra": 1}, "peaks.extra: unknown key 'extra'"),
        ({**data, "uuid": 3}, "peaks.uuid: 3 is not allowed; expected a string"),
        ([data], "is not allowed; expected a table"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            DevicePeaks.from_json_dict(broken)


def test_cached_peaks_measures_once_then_loads(tmp_path):
    measure = CountingMeasure("GPU-aaaa")
    first = cached_peaks("cuda:0", "GPU-aaaa", tmp_path, measure=measure)
    second = cached_peaks("cuda:0", "GPU-aaaa", tmp_path, measure=measure)
    assert measure.calls == ["cuda:0"]
    assert first == second
    path = peaks_cache_path("cuda:0", "GPU-aaaa", tmp_path)
    assert path.name == f"peaks-v2-GPU-aaaa-{torch.__version__.replace('+', '_')}.json"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_cached_peaks_keys_by_uuid(tmp_path):
    measure = CountingMeasure()
    a = cached_peaks("cuda:0", "GPU-aaaa", tmp_path, measure=measure)
    b = cached_peaks("cuda:0", "GPU-bbbb", tmp_path, measure=measure)  # another GPU in the same slot
    assert len(measure.calls) == 2 and a != b
    assert cached_peaks("cuda:0", "GPU-aaaa", tmp_path, measure=measure) == a
    assert len(measure.calls) == 2


def test_cached_peaks_without_uuid_keys_by_device_name(tmp_path):
    measure = CountingMeasure()
    cached_peaks("cpu", "", tmp_path, measure=measure)
    cached_peaks("cpu", "", tmp_path, measure=measure)
    assert measure.calls == ["cpu"]
    assert peaks_cache_path("cpu", "", tmp_path).exists()


@pytest.mark.parametrize("content", ["{not json", "[]", '{"device": "cuda:0"}', ""])
def test_cached_peaks_reprobes_a_corrupt_file(tmp_path, content):
    path = peaks_cache_path("cuda:0", "GPU-aaaa", tmp_path)
    path.write_text(content)
    measure = CountingMeasure()
    peaks = cached_peaks("cuda:0", "GPU-aaaa", tmp_path, measure=measure)
    assert measure.calls == ["cuda:0"]
    assert DevicePeaks.from_json_dict(json.loads(path.read_text())) == peaks  # repaired


def test_cached_peaks_reprobes_a_file_from_another_torch(tmp_path):
    path = peaks_cache_path("cuda:0", "GPU-aaaa", tmp_path)
    path.write_text(json.dumps({**_fake_peaks("cuda:0").to_json_dict(), "torch_version": "1.0.0"}))
    measure = CountingMeasure()
    cached_peaks("cuda:0", "GPU-aaaa", tmp_path, measure=measure)
    assert measure.calls == ["cuda:0"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_peaks_on_cuda_at_default_sizes():
    allocated_before = torch.cuda.memory_allocated(0)
    peaks = measure_peaks("cuda:0")
    fp32, bf16 = peaks.flops_for("fp32"), peaks.flops_for("bf16")
    assert fp32 is not None and fp32 > 0
    if torch.cuda.is_bf16_supported():
        assert bf16 is not None and bf16 > fp32
    assert peaks.copy_bytes_per_s > 100e9
    assert peaks.uuid.startswith(("GPU-", "MIG-"))
    assert torch.cuda.memory_allocated(0) == allocated_before  # the probe gave its memory back
