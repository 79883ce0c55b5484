"""FLOPs per sample of a model: the numerator of a roofline's arithmetic rate.

Two sources, counted the same way so either can stand in for the other:

- torch: `torch.utils.flop_counter.FlopCounterMode`, a dispatch mode that sees each aten op the
  model runs and applies a formula to its shapes. It counts only the contraction families:
  mm, addmm, bmm, baddbmm, convolution (all variants, transposed included, by the *output* spatial
  size for a convolution and the *input* spatial size for a transposed one), _scaled_mm, and the
  fused scaled-dot-product / flash / efficient / cuDNN / flex attention kernels (QK^T and AV as two
  batched matmuls, causal masks not discounted). Every formula is 2 FLOPs per multiply-add; biases,
  activations, normalisation, softmax and other elementwise work are not counted. Two gaps in it are
  closed here: F.scaled_dot_product_attention on CPU tensors decomposes to
  `aten._scaled_dot_product_flash_attention_for_cpu`, which has no formula (it counted 0), so one is
  supplied with the same QK^T + AV count as the CUDA kernels'; and
  nn.MultiheadAttention / nn.TransformerEncoderLayer take a fused "fast path"
  (`aten._native_multi_head_attention`, `aten._transformer_encoder_layer_fwd`) that the counter does
  not see into, so the fast path is switched off while counting (the arithmetic is the same).
- ONNX: the graph's MatMul, Gemm, Conv and ConvTranspose nodes (and the opset-23 Attention node,
  which torch.onnx emits for scaled_dot_product_attention from opset 23 on), with shapes from
  `onnx.shape_inference.infer_shapes` after binding the inputs to concrete sizes. Same convention:
  2 FLOPs per multiply-add, Gemm's C term and Conv's bias not counted.
    MatMul         2 * numel(Y) * K              (K = A's last axis; broadcast batch axes are in Y)
    Gemm           2 * M * N * K                 (transA picks K)
    Conv           2 * numel(Y) * prod(W[1:])    (W[1:] = in_channels/group x kernel volume, so
                                                 stride, padding, dilation and groups are in Y or W)
    ConvTranspose  2 * numel(X) * prod(W[1:])    (W = [C_in, C_out/group, *kernel])
    Attention      2 * B * Hq * Sq * Skv * (D + Dv)
  A graph whose count would be a guess gets None rather than a wrong figure: a counted node whose
  shapes cannot be inferred, contraction ops this module does not count (Einsum, RNN/LSTM/GRU,
  integer and quantized matmul/conv, DeformConv), contractions inside If/Loop/Scan bodies (how often
  they run is not in the graph), and ops from custom domains whose cost is unknown.

For the zoo models the two sources agree exactly (see tests/test_roofline.py). Method: the usual
"2 x MACs" model-FLOPs convention, as in Kaplan et al. 2020 (Scaling Laws, sec. 2.1) and the
PaLM paper's model-FLOPs utilisation (Chowdhery et al. 2022, appendix B); the roofline model
is Williams, Waterman & Patterson, CACM 52(4), 2009.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from bench.models.inputs import InputSpec

log = logging.getLogger(__name__)

TORCH_FLOPS_SOURCE = (
    "torch FlopCounterMode: mm, addmm, bmm, baddbmm, convolution, attention "
    "(2 FLOPs per multiply-add; elementwise ops not counted)"
)
_ONNX_COUNTED = ("MatMul", "Gemm", "Conv", "ConvTranspose")
_ONNX_NOTE = "(2 FLOPs per multiply-add; elementwise ops not counted)"
ONNX_FLOPS_SOURCE = f"onnx graph: {', '.join(_ONNX_COUNTED)} {_ONNX_NOTE}"

# Default-domain ops that multiply-accumulate but are not counted here: their presence would make
# the figure an undercount, so the graph is refused instead. Integer ops also have no place against
# a floating-point GEMM peak.
_ONNX_REFUSED = frozenset({
    "Einsum", "RNN", "LSTM", "GRU", "DeformConv", "MatMulInteger", "QLinearMatMul", "ConvInteger",
    "QLinearConv",
})
# Ops from com.microsoft (what onnxruntime's offline optimiser writes) known to do no contraction;
# any other op in a non-default domain may hide one (FusedMatMul, Attention, MoE, ...).
_MS_ELEMENTWISE = frozenset({
    "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "BiasAdd", "BiasSoftmax", "BiasDropout",
    "SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
    "LayerNormalization", "EmbedLayerNormalization", "RotaryEmbedding", "GroupNorm", "SkipGroupNorm",
    "BiasSplitGelu", "Trilu", "Range",
})


class UncountableGraph(ValueError):
    """An ONNX graph whose FLOPs cannot be counted without guessing; the message says why."""


# --- torch ------------------------------------------------------------------------------------


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """QK^T plus AV for aten._scaled_dot_product_flash_attention_for_cpu, as torch counts its CUDA twins.

    Shapes are [..., Hq, Sq, E], [..., Hkv, Sk, E], [..., Hkv, Sk, Ev]; with grouped-query
    attention the key/value heads are broadcast to the query's, so the query's leading axes count.
    """
    *lead, s_q, e = query_shape
    s_k = key_shape[-2]
    e_v = value_shape[-1]
    rows = math.prod(lead) * s_q
    return 2 * rows * s_k * e + 2 * rows * s_k * e_v


def torch_flops_per_sample(module, inputs: tuple, batch_size: int) -> float:
    """FLOPs per sample of one forward pass of `module` on `inputs` (each with a leading batch axis).

    Counted by FlopCounterMode under torch.inference_mode (see the module docstring for what it
    counts), divided by batch_size. Callers pass a batch of 2 rather than 1 so that nothing in the
    model specialises on a batch of one.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[0] != batch_size:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"input {i} ({shape}) has no leading batch axis of {batch_size}")
    counter = FlopCounterMode(display=False, custom_mapping={
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
    })
    # The MHA fast path is one fused op the counter has no formula for; the slow path runs the
    # same projections and attention as ops it can see.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), counter:
            module(*inputs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() / batch_size


# --- ONNX -------------------------------------------------------------------------------------


def _bind_inputs(graph, specs: tuple[InputSpec, ...], batch_size: int) -> None:
    """Make each graph input's dims concrete: [batch_size, *spec.shape]."""
    by_name = {s.name: s for s in specs}
    initializers = {i.name for i in graph.initializer}
    for inp in graph.input:
        if inp.name in initializers:  # weights listed as inputs by older exporters
            continue
        spec = by_name.get(inp.name)
        if spec is None:
            raise UncountableGraph(f"graph input {inp.name!r} has no input spec to take its shape from")
        dims = inp.type.tensor_type.shape.dim
        want = (batch_size, *spec.shape)
        if len(dims) != len(want):
            raise UncountableGraph(f"input {inp.name!r} has rank {len(dims)} in the graph, {len(want)} in its spec")
        for axis, (d, size) in enumerate(zip(dims, want)):
            if d.HasField("dim_value") and d.dim_value != size:
                raise UncountableGraph(f"input {inp.name!r} axis {axis} is fixed at {d.dim_value}, not {size}")
            d.dim_value = size  # clears dim_param: the two are a oneof


def _known_shapes(graph) -> dict[str, tuple[int, ...]]:
    """Fully concrete shapes of the graph's values after inference; partial ones are left out."""
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        if all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in t.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    for sparse in graph.sparse_initializer:
        shapes[sparse.values.name] = tuple(int(d) for d in sparse.dims)
    return shapes


def _subgraph_ops(node) -> set[str]:
    """Op types anywhere inside a node's graph attributes (If branches, Loop/Scan bodies)."""
    import onnx

    found: set[str] = set()
    stack = [a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH]
    stack += [g for a in node.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    while stack:
        graph = stack.pop()
        for inner in graph.node:
            found.add(inner.op_type)
            stack += [a.g for a in inner.attribute if a.type == onnx.AttributeProto.GRAPH]
            stack += [g for a in inner.attribute if a.type == onnx.AttributeProto.GRAPHS for g in a.graphs]
    return found


def _node_flops(node, shape, attrs: dict[str, Any]) -> int:
    """2 x multiply-adds of one counted node; `shape(name)` raises UncountableGraph when unknown."""
    op = node.op_type
    if op == "MatMul":
        return 2 * math.prod(shape(node.output[0])) * shape(node.input[0])[-1]
    if op == "Gemm":
        a = shape(node.input[0])
        k = a[0] if attrs.get("transA", 0) else a[1]
        return 2 * math.prod(shape(node.output[0])) * k
    if op == "Conv":
        return 2 * math.prod(shape(node.output[0])) * math.prod(shape(node.input[1])[1:])
    if op == "ConvTranspose":
        return 2 * math.prod(shape(node.input[0])) * math.prod(shape(node.input[1])[1:])
    if op == "Attention":
        if len(node.input) > 4 and any(node.input[4:6]):
            raise UncountableGraph(f"Attention node {node.name!r} with a past key/value cache is not counted")
        q, k, v = (shape(node.input[i]) for i in range(3))
        if len(q) == 4:  # [B, H, S, D]
            b, h_q, s_q, d = q
            s_kv, d_v = k[2], v[3]
        elif len(q) == 3:  # [B, S, H*D]: the heads are attributes
            h_q, h_kv = attrs.get("q_num_heads", 0), attrs.get("kv_num_heads", 0)
            if not h_q or not h_kv:
                raise UncountableGraph(f"Attention node {node.name!r}: 3-D inputs without head counts")
            b, s_q, _ = q
            d, s_kv, d_v = q[2] // h_q, k[1], v[2] // h_kv
        else:
            raise UncountableGraph(f"Attention node {node.name!r}: query of rank {len(q)}")
        return 2 * b * h_q * s_q * s_kv * (d + d_v)
    raise AssertionError(op)


def count_onnx_flops(path: str, specs: tuple[InputSpec, ...], batch_size: int = 2) -> tuple[float, str]:
    """(FLOPs per sample, source) from an ONNX file; raises UncountableGraph saying why not.

    The inputs are bound to [batch_size, *spec.shape] on a copy of the graph, local functions are
    inlined, and shapes come from onnx.shape_inference (with data propagation, so Reshape targets
    computed from Shape ops resolve). External weight data is never read: only shapes matter.
    """
    import onnx
    import onnx.inliner
    import onnx.shape_inference

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise UncountableGraph(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    graph = model.graph
    _bind_inputs(graph, specs, batch_size)
    # Shapes the exporter wrote for intermediates and outputs were traced at some other batch:
    # inference keeps a recorded concrete dim over the one it infers (non-strict, silently), so a
    # stale one would skew the count. Drop them and let inference recompute every value.
    del graph.value_info[:]
    for out in graph.output:
        out.type.tensor_type.ClearField("shape")
    # Not strict: an op the inferencer cannot type (a custom one, say) only matters when a counted
    # node depends on it, and then that node's missing shape refuses the graph below.
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # a malformed graph, or one over protobuf's 2 GB limit
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UncountableGraph(f"shape inference failed: {first_line}") from None
    shapes = _known_shapes(inferred.graph)

    total = 0
    counted: set[str] = set()
    for node in inferred.graph.node:
        op, domain = node.op_type, node.domain
        if domain not in ("", "ai.onnx"):
            if domain == "com.microsoft" and op in _MS_ELEMENTWISE:
                continue
            raise UncountableGraph(f"op {domain}.{op} (node {node.name!r}): its cost is not known")
        if op in _ONNX_REFUSED:
            raise UncountableGraph(f"{op} node {node.name!r}: this op type is not counted")
        inner = _subgraph_ops(node)
        hidden = inner & (_ONNX_REFUSED | set(_ONNX_COUNTED) | {"Attention"})
        if hidden:
            raise UncountableGraph(f"{op} node {node.name!r} holds {', '.join(sorted(hidden))} in a subgraph; "
                                   "how often it runs is not in the graph")
        if op not in _ONNX_COUNTED and op != "Attention":
            continue

        def shape(name: str, node=node) -> tuple[int, ...]:
            if name not in shapes:
                raise UncountableGraph(
                    f"{node.op_type} node {node.name!r}: the shape of {name!r} could not be inferred")
            return shapes[name]

        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        total += _node_flops(node, shape, attrs)
        counted.add(op)
    ops = list(_ONNX_COUNTED) + (["Attention"] if "Attention" in counted else [])
    return total / batch_size, f"onnx graph: {', '.join(ops)} {_ONNX_NOTE}"


def onnx_flops_per_sample(path: str, specs: tuple[InputSpec, ...], batch_size: int = 2) -> tuple[float, str] | None:
    """(FLOPs per sample, source) counted from an ONNX graph, or None when it cannot be counted.

    See count_onnx_flops and the module docstring; the reason for a None is logged at INFO level.
    None rather than a partial count, because a roofline fraction from a wrong numerator misleads.
    """
    try:
        return count_onnx_flops(path, specs, batch_size)
    except UncountableGraph as exc:
        log.info("no ONNX FLOP count for %s: %s", path, exc)
        return None
