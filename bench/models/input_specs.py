"""A model's input specs as the user means them: read from an ONNX graph (its named dynamic
dimensions kept as names), given defaults that suit the common graphs, then the suite's own word
on each input (`inputs.NAME`) applied and its dimensions checked against `dims`.

Defaults, where the suite says nothing of an input: a token-id input (an integer input that an
embedding table's Gather reads) draws from [0, rows of that table); an `attention_mask` is all
ones and a `token_type_ids` all zeros; any other integer input draws from [0, 2), which is valid
for any table of two rows or more.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.errors import ModelError
from bench.models.inputs import InputOverride, InputSpec, named_dims

_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}
# Ops an index passes through unchanged in value on its way from a graph input to a Gather.
_PASS_THROUGH = {"Cast", "Identity", "Unsqueeze", "Squeeze", "Reshape", "Flatten"}


def onnx_input_specs(path: Path, ref: str) -> tuple[tuple[InputSpec, ...], Any]:
    """(the graph's inputs, its ModelProto without weights); the leading axis is the batch, other
    symbolic dims keep their names."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends: the file is not ONNX
        raise ModelError(f"model {ref!r}: not a valid ONNX file ({type(exc).__name__}: {exc})".rstrip()) from None
    if not model.graph.node:
        raise ModelError(f"model {ref!r}: not a valid ONNX file (its graph has no nodes)")
    initializers = {i.name for i in model.graph.initializer}
    specs = []
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise ModelError(f"model {ref!r}: input {inp.name!r} has ONNX element type {tensor.elem_type}, not supported")
        shape_dims = list(tensor.shape.dim)
        if not shape_dims:
            raise ModelError(f"model {ref!r}: input {inp.name!r} is a scalar; inputs need a leading batch axis")
        first = shape_dims[0]
        if first.HasField("dim_value") and first.dim_value != 0:
            raise ModelError(
                f"model {ref!r}: input {inp.name!r} has a fixed batch axis of {first.dim_value}; "
                "export it with a symbolic (dynamic) first dimension"
            )
        shape: list[int | str] = []
        for axis, d in enumerate(shape_dims[1:], start=1):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.dim_param and d.dim_param.isidentifier():
                shape.append(d.dim_param)
            else:
                label = repr(d.dim_param) if d.dim_param else "has no name"
                raise ModelError(f"model {ref!r}: input {inp.name!r} axis {axis} is dynamic and {label}; name it "
                                 f"in the benchmark: inputs.{inp.name}.shape = [...] with a word for that axis")
        specs.append(InputSpec(inp.name, tuple(shape), dtype, 0.0, 2.0 if dtype.startswith("int") else 1.0))
    if not specs:
        raise ModelError(f"model {ref!r}: the graph has no inputs to feed")
    return tuple(specs), model


def _vocabularies(model: Any) -> dict[str, tuple[int, str]]:
    """graph input -> (rows, table name) of the smallest embedding table a Gather reads it into."""
    import onnx

    tables = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:  # weights held in Constant nodes (some exporters)
        if node.op_type == "Constant" and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    tables[node.output[0]] = list(a.t.dims)
    producer = {out: node for node in model.graph.node for out in node.output}
    inputs = {i.name for i in model.graph.input}
    found: dict[str, tuple[int, str]] = {}
    for node in model.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[0] not in tables:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        dims = tables[node.input[0]]
        if axis != 0 or len(dims) < 2 or dims[0] < 1:
            continue
        name, hops = node.input[1], 0
        while name not in inputs and name in producer and producer[name].op_type in _PASS_THROUGH and hops < 8:
            name, hops = producer[name].input[0], hops + 1
        if name in inputs and (name not in found or dims[0] < found[name][0]):
            found[name] = (int(dims[0]), node.input[0])
    return found


def onnx_defaults(specs: tuple[InputSpec, ...], model: Any) -> tuple[InputSpec, ...]:
    """Values that suit the common graphs (the module docstring), for inputs the suite leaves alone."""
    vocab = _vocabularies(model)
    out = []
    for s in specs:
        lower = s.name.lower()
        if s.name in vocab and s.dtype.startswith("int"):
            rows, table = vocab[s.name]
            s = replace(s, low=0.0, high=float(rows), note=f"rows of the embedding table {table!r}")
        elif "attention_mask" in lower and s.dtype != "bool":
            s = replace(s, value=1.0)
        elif "token_type_ids" in lower and s.dtype.startswith("int"):
            s = replace(s, value=0.0)
        out.append(s)
    return tuple(out)


def apply_overrides(specs: tuple[InputSpec, ...], overrides: tuple[tuple[str, InputOverride], ...], ref: str,
                    graph_shapes: bool) -> tuple[InputSpec, ...]:
    """The suite's `inputs.NAME` tables over the model's specs. `graph_shapes`: the shapes and
    dtypes come from a graph that fixes them (ONNX): a dtype must agree and a shape may only name
    or bind the graph's dynamic axes; a torch module takes what it is fed."""
    by_name = {s.name: s for s in specs}
    for name, ov in overrides:
        where = f"model {ref!r}: inputs.{name}"
        if name not in by_name:
            import difflib

            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ModelError(f"{where}: the model has no input {name!r}{hint} (its inputs: {', '.join(by_name)})")
        s = by_name[name]
        if ov.dtype is not None and ov.dtype != s.dtype:
            if graph_shapes:
                raise ModelError(f"{where}.dtype: {ov.dtype!r} is not allowed; the graph declares {s.dtype}")
            s = replace(s, dtype=ov.dtype)
        if ov.shape is not None:
            if graph_shapes:
                if len(ov.shape) != len(s.shape):
                    raise ModelError(f"{where}.shape: {list(ov.shape)} has {len(ov.shape)} axes; the graph's input "
                                     f"has {len(s.shape)} besides the batch ({list(s.shape)})")
                for axis, (mine, theirs) in enumerate(zip(ov.shape, s.shape), start=1):
                    if isinstance(theirs, int) and mine != theirs:
                        raise ModelError(f"{where}.shape: axis {axis} is fixed at {theirs} in the graph; "
                                         f"{mine!r} is not allowed")
            s = replace(s, shape=tuple(ov.shape))
        if ov.value is not None:
            s = replace(s, value=ov.value, note="")
        elif ov.vocab is not None:
            s = replace(s, low=0.0, high=float(ov.vocab), value=None, note="")
        elif ov.low is not None or ov.high is not None:
            low = ov.low if ov.low is not None else s.low
            high = ov.high if ov.high is not None else s.high
            if not low < high:
                raise ModelError(f"{where}: low {low:g} must be below high {high:g}")
            s = replace(s, low=low, high=high, value=None, uniform=not s.dtype.startswith("int"), note="")
        if s.value is None and s.dtype.startswith("int") and not float(s.low).is_integer():
            raise ModelError(f"{where}: an integer input needs an integer range; low {s.low:g} is not one")
        by_name[name] = s
    return tuple(by_name[s.name] for s in specs)


def check_dims(specs: tuple[InputSpec, ...], dims: tuple[str, ...], ref: str, file_dims: dict[str, int]) -> None:
    """Every named dimension of the inputs has sizes (the suite's dims, or the user's files), and
    every dimension the suite names is one of the inputs'."""
    names = named_dims(specs)
    for d in dims:
        if d not in names:
            known = ", ".join(names) if names else "none: every axis but the batch is fixed"
            raise ModelError(f"model {ref!r}: dimension {d!r} (dims.{d} or --shape {d}=N) is not one of the "
                             f"model's inputs' (its named dimensions: {known})")
        if d in file_dims:
            raise ModelError(f"model {ref!r}: dims.{d} is fixed by input_file ({d}={file_dims[d]} there); "
                             "a dimension of the user's samples cannot be swept")
    for s in specs:
        for d in s.named_dims:
            if d not in dims and d not in file_dims:
                raise ModelError(f"model {ref!r}: input {s.name!r} has symbolic dimension {d!r} that the config does "
                                 f"not bind; set dims = {{ {d} = N }} in the benchmark (or --shape {d}=N)")
