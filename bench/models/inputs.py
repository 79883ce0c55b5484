"""Input specs, and the input tensors every target of a benchmark shares: seeded generated arrays,
or samples from the user's own files (bench.models.input_files).

A spec's shape excludes the leading batch axis; an entry is a size or the name of a dynamic
dimension ("seq"), which each cell binds (a sweep axis like the batch size: CellKey.dims).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Mapping, Protocol

import numpy as np

DTYPES = ("float32", "float16", "int64", "int32", "bool")  # the input dtypes a model may take


@dataclass(frozen=True)
class InputOverride:
    """A benchmark's word on one model input (`inputs.NAME`); a field left unset keeps the model's.

    `shape` excludes the batch axis; an entry is a size or the name of a dynamic dimension that
    `dims` binds (a sweep axis). `vocab = N` draws integers from [0, N) (a token id input);
    `low`/`high` set an integer range, or a float one (uniform instead of N(0, 1)); `value` fixes
    every element (an attention mask of ones).
    """

    dtype: str | None = None
    shape: tuple[int | str, ...] | None = None
    low: float | None = None
    high: float | None = None
    vocab: int | None = None
    value: float | None = None

    def validate(self) -> tuple[str, str] | None:
        if self.dtype is not None and self.dtype not in DTYPES:
            from bench.codec import did_you_mean

            return "dtype", f"{self.dtype!r} is not allowed{did_you_mean(self.dtype, DTYPES)} (allowed: {', '.join(DTYPES)})"
        for j, d in enumerate(self.shape or ()):
            if isinstance(d, int) and d < 1:
                return f"shape[{j}]", f"{d!r} is not allowed; expected a size >= 1 or a dimension name"
            if isinstance(d, str) and not d.isidentifier():
                return f"shape[{j}]", f"{d!r} is not allowed; a dimension name is a word (letters, digits, _)"
        if self.vocab is not None and self.vocab < 1:
            return "vocab", f"{self.vocab!r} is not allowed; expected a vocabulary size >= 1"
        if self.vocab is not None and (self.low is not None or self.high is not None):
            return "vocab", "set vocab or low/high, not both (vocab = N means low = 0, high = N)"
        if self.value is not None and (self.vocab is not None or self.low is not None or self.high is not None):
            return "value", "a fixed value takes no range; set value or vocab/low/high"
        if self.low is not None and self.high is not None and not self.low < self.high:
            return "high", f"{self.high!r} is not allowed; expected a number > low ({self.low!r})"
        return None


@dataclass(frozen=True)
class InputSpec:
    """One model input and how its values are made.

    Floats are N(0, 1), or U[low, high) with `uniform`; integers are drawn from [low, high); bools
    are all true; `value` fixes every element (an attention mask of ones). `note` says where a
    range came from when the harness chose it (a vocabulary read from the graph).
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    low: float = 0.0
    high: float = 1.0
    value: float | None = None
    uniform: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"input {self.name!r}: dtype {self.dtype!r} not in {DTYPES}")

    @property
    def named_dims(self) -> tuple[str, ...]:
        return tuple(d for d in self.shape if isinstance(d, str))

    def bound(self, dims: Mapping[str, int]) -> InputSpec:
        """This spec with its named dimensions replaced by their sizes (KeyError on an unbound one)."""
        if not self.named_dims:
            return self
        return replace(self, shape=tuple(dims[d] if isinstance(d, str) else d for d in self.shape))

    def describe(self) -> str:
        """How the values are made, in words (a cell's InputTensor.values)."""
        if self.value is not None:
            return f"fixed {self.value:g}"
        if self.dtype == "bool":
            return "fixed true"
        if self.dtype.startswith("int"):
            return f"integers in [{self.low:g}, {self.high:g})" + (f" ({self.note})" if self.note else "")
        return f"uniform [{self.low:g}, {self.high:g})" if self.uniform else "normal(0, 1)"


def bind_dims(specs: tuple[InputSpec, ...], dims: Mapping[str, int]) -> tuple[InputSpec, ...]:
    return tuple(s.bound(dims) for s in specs)


def named_dims(specs: tuple[InputSpec, ...]) -> tuple[str, ...]:
    """The dynamic dimensions the specs name, in first-seen order."""
    seen: dict[str, None] = {}
    for s in specs:
        for d in s.named_dims:
            seen.setdefault(d)
    return tuple(seen)


def make_inputs(specs: tuple[InputSpec, ...], batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic inputs: the same (specs, batch, seed) give the same arrays in any process.
    The specs' shapes must be bound (bind_dims)."""
    rng = np.random.default_rng([seed, batch_size])
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (batch_size, *spec.shape)
        if spec.value is not None:
            feeds[spec.name] = np.full(shape, spec.value, dtype=spec.dtype)
        elif spec.dtype.startswith("float"):
            if spec.uniform:
                feeds[spec.name] = rng.uniform(spec.low, spec.high, shape).astype(spec.dtype)
            else:
                feeds[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = np.ones(shape, dtype=bool)
        else:
            feeds[spec.name] = rng.integers(int(spec.low), int(spec.high), size=shape).astype(spec.dtype)
    return feeds


class InputSource(Protocol):
    """Where a cell's feeds come from: any batch size, the same arrays in every process."""

    def feeds(self, batch_size: int) -> dict[str, np.ndarray]: ...

    def describe(self, batch_size: int):
        """The cell's InputsInfo (bench.results.records) at this batch size."""


@dataclass(frozen=True)
class Generated:
    """Seeded arrays from the specs (bound to the cell's dims)."""

    specs: tuple[InputSpec, ...]
    seed: int

    def feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        return make_inputs(self.specs, batch_size, self.seed)

    def describe(self, batch_size: int):
        from bench.results.records import InputsInfo, InputTensor

        return InputsInfo("generated", tuple(InputTensor(s.name, (batch_size, *s.shape), s.dtype, s.describe())
                                             for s in self.specs), seed=self.seed)


def inputs_sha256(feeds: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(feeds):
        arr = np.ascontiguousarray(feeds[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()
