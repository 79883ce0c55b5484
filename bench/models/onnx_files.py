"""The files an ONNX model is made of: its .onnx and the external-data files its tensors name.

A tensor stored outside the graph (ONNX's external data) names its file by a `location` relative
to the .onnx's directory; torch 2.13's exporter writes a model's weights so, to `model.onnx.data`
beside `model.onnx`, unless `external_data=False`. The graph loads only with those files beside it
in the same layout: whatever copies a model somewhere else (a fleet node) must copy them too.

Reads only the graph (`load_external_data=False`), and imports onnx, not torch: the driver of a
fleet run and the loader call it on every ONNX file they hand on.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.errors import ModelError


def external_data_files(path: str | Path, ref: str | None = None) -> tuple[str, ...]:
    """The external-data files of the ONNX model at `path`, each once, as paths relative to its
    directory (() when all its tensors are inline). ModelError, naming the model as `ref` (default:
    the path), for a location outside that directory or a file that does not exist."""
    import onnx

    path = Path(path)
    ref = str(path) if ref is None else ref
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends: the file is not ONNX
        raise ModelError(f"model {ref!r}: not a valid ONNX file ({type(exc).__name__}: {exc})".rstrip()) from None
    found: dict[str, None] = {}  # ordered, each once: many tensors share one file
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        rel = os.path.normpath(location) if location else ""
        # ONNX (and ONNX Runtime) read external data only from inside the model's directory.
        if not rel or os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
            raise ModelError(f"model {ref!r}: tensor {tensor.name!r} keeps its data at {location!r}; allowed: a "
                             "file path relative to the model's directory, inside it (e.g. 'model.onnx.data')")
        if not (path.parent / rel).is_file():
            raise ModelError(f"model {ref!r}: its external data file {path.parent / rel} does not exist (tensor "
                             f"{tensor.name!r} names {location!r}); keep it beside the .onnx, as the exporter wrote it")
        found[rel] = None
    return tuple(found)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds that may live in external data: initializers (sparse ones too)
    and tensor attributes of its nodes, in its subgraphs (If, Loop, Scan bodies) as well."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
