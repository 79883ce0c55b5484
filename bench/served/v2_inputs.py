"""The Open Inference Protocol v2 model metadata against the benchmark's model inputs.

A v2 server says what its model takes (`GET /v2/models/{name}` or gRPC ModelMetadata): each
input's name, datatype ("FP32", "INT64", ...) and shape, with -1 for a dynamic dimension and the
batch axis first. The benchmark's model says what it feeds (bench.models.inputs.InputSpec, shapes
without the batch axis, dimension names where a sweep binds them). plan_inputs() matches the two
once, at load, into the names and datatypes that go on the wire, or says in one line why they do
not fit; InputPlan.tensors() applies the plan to a cell's feeds (where the actual shapes are known)
outside any timing.

Conversions are kept to those that lose nothing the benchmark cares about: between widths of one
kind (int64 ids sent as INT32, float16 as FP32), never across kinds (a float to an integer), and
each one is said in the plan's notes, which the backend records.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.models.inputs import InputSpec

# The benchmark's input dtypes (bench.models.inputs.DTYPES) by their v2 datatype name.
V2_OF_DTYPE = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}
# Every numeric v2 datatype, as numpy names it (BYTES is not numeric: this harness never sends it).
DTYPE_OF_V2 = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "FP16": "float16", "FP32": "float32", "FP64": "float64",
}


class InputMismatch(ValueError):
    """The server's model does not take the benchmark's inputs (one line, naming what differs)."""


@dataclass(frozen=True)
class TensorMeta:
    """One tensor as the server's model metadata declares it."""

    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension

    def shown(self) -> str:
        return f"{self.name} ({self.datatype} [{', '.join(str(d) for d in self.shape)}])"


@dataclass(frozen=True)
class WireInput:
    feed: str  # the benchmark's input name (a key of the feeds)
    name: str  # the server's input name
    datatype: str  # v2 datatype sent
    dtype: str  # numpy dtype sent (a conversion when it differs from the feed's)
    shape: tuple[int, ...] | None  # the server's declared shape (None: it declared none)


@dataclass(frozen=True)
class InputPlan:
    inputs: tuple[WireInput, ...]
    notes: tuple[str, ...] = ()  # conversions and renames made, recorded in the backend's info

    def tensors(self, feeds: dict[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
        """(server name, v2 datatype, C-contiguous array) for each input; InputMismatch when a
        feed's shape does not fit the server's declared one."""
        out = []
        for w in self.inputs:
            arr = feeds[w.feed]
            if w.shape is not None and not fits(arr.shape, w.shape):
                raise InputMismatch(f"input {w.feed!r} of shape {list(arr.shape)} does not fit the server's "
                                    f"{w.name!r} of shape {list(w.shape)}")
            if arr.dtype != np.dtype(w.dtype):
                arr = arr.astype(w.dtype)
            out.append((w.name, w.datatype, np.ascontiguousarray(arr)))
        return out


def fits(shape: tuple[int, ...], declared: tuple[int, ...]) -> bool:
    return len(shape) == len(declared) and all(d < 0 or d == s for s, d in zip(shape, declared))


def _same_kind(a: str, b: str) -> bool:
    ka, kb = np.dtype(a).kind, np.dtype(b).kind
    ints = ("i", "u")
    return ka == kb or (ka in ints and kb in ints)


def plan_inputs(specs: tuple[InputSpec, ...], server: tuple[TensorMeta, ...], model: str) -> InputPlan:
    """How the benchmark's inputs go to the server's model `model`, or InputMismatch."""
    if not server:
        # A server may declare no inputs (MLServer without them in model-settings, a KServe model
        # without get_input_types): the model's own names and dtypes go as they are.
        return InputPlan(tuple(WireInput(s.name, s.name, V2_OF_DTYPE[s.dtype], s.dtype, None) for s in specs),
                         (f"the server declares no inputs for {model!r}: sent under the model's names and dtypes",))
    by_name = {t.name: t for t in server}
    mine = {s.name for s in specs}
    pairs: list[tuple[InputSpec, TensorMeta]]
    notes: list[str] = []
    if mine == set(by_name):
        pairs = [(s, by_name[s.name]) for s in specs]
    elif len(specs) == 1 and len(server) == 1:
        # One input each, under two names (an exporter's "input" against a server's "x"): the
        # only reading there is.
        pairs = [(specs[0], server[0])]
        notes.append(f"input {specs[0].name!r} sent as the server's {server[0].name!r}")
    else:
        theirs = ", ".join(t.shown() for t in server)
        raise InputMismatch(f"the server's model {model!r} takes {theirs}; the benchmark's model feeds "
                            f"{', '.join(s.name for s in specs)}")
    wire = []
    for spec, meta in pairs:
        wire.append(_wire(spec, meta, notes))
    return InputPlan(tuple(wire), tuple(notes))


def _wire(spec: InputSpec, meta: TensorMeta, notes: list[str]) -> WireInput:
    dtype = DTYPE_OF_V2.get(meta.datatype)
    if dtype is None:
        raise InputMismatch(f"the server's input {meta.shown()} is not a numeric tensor; the benchmark "
                            f"feeds {spec.name!r} as {spec.dtype}")
    if dtype != spec.dtype:
        if not _same_kind(dtype, spec.dtype):
            raise InputMismatch(f"the server's input {meta.shown()} takes {dtype}; the benchmark feeds "
                                f"{spec.name!r} as {spec.dtype}, which does not convert without loss of meaning")
        notes.append(f"input {spec.name!r}: {spec.dtype} sent as {meta.datatype} (the server's datatype)")
    if meta.shape:
        if len(meta.shape) != len(spec.shape) + 1:
            raise InputMismatch(f"the server's input {meta.shown()} has {len(meta.shape)} dimensions; the benchmark "
                                f"feeds {spec.name!r} with {len(spec.shape) + 1} (batch first)")
        for j, (want, have) in enumerate(zip(meta.shape[1:], spec.shape), start=1):
            if want >= 0 and isinstance(have, int) and want != have:
                raise InputMismatch(f"the server's input {meta.shown()} has size {want} in dimension {j}; the "
                                    f"benchmark feeds {spec.name!r} with {have}")
    return WireInput(spec.name, meta.name, meta.datatype, dtype, meta.shape or None)
