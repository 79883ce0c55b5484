"""Input specs and the seeded input tensors every target of a benchmark shares."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

_DTYPES = ("float32", "float16", "int64", "int32", "bool")


@dataclass(frozen=True)
class InputSpec:
    """One model input; `shape` excludes the leading batch axis."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = 0.0  # integer inputs are drawn from [low, high)
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"input {self.name!r}: dtype {self.dtype!r} not in {_DTYPES}")


def make_inputs(specs: tuple[InputSpec, ...], batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Deterministic inputs: the same (specs, batch, seed) give the same arrays in any process."""
    rng = np.random.default_rng([seed, batch_size])
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = (batch_size, *spec.shape)
        if spec.dtype.startswith("float"):
            feeds[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype)
        elif spec.dtype == "bool":
            feeds[spec.name] = np.ones(shape, dtype=bool)
        else:
            feeds[spec.name] = rng.integers(int(spec.low), int(spec.high), size=shape).astype(spec.dtype)
    return feeds


def inputs_sha256(feeds: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(feeds):
        arr = np.ascontiguousarray(feeds[name])
        digest.update(name.encode())
        digest.update(str(arr.dtype).encode())
        digest.update(str(arr.shape).encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()
