"""A user's own input samples: an `.npz` holding one array per model input (samples along the
first axis), or a directory of `.npy` files, either one per input (named after it, samples along
the first axis) or, for a one-input model, one sample per file (taken in name order).

Read with numpy's allow_pickle=False: an object array, which only pickle can restore, is refused,
never unpickled. A batch of b takes the first b samples, cycling when the file holds fewer, so
every target and every process sees the same arrays.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.errors import ModelError
from bench.models.inputs import InputSpec

MAX_INPUT_FILES = 100_000  # one sample per file: more than this is not a sample directory


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        if "allow_pickle" in str(exc):
            raise ModelError(f"{what}: holds an object array, which only pickle can load; refused "
                             "(save plain numeric arrays)") from None
        raise ModelError(f"{what}: not a .npy array: {exc}") from None
    except OSError as exc:
        raise ModelError(f"{what}: cannot read: {exc}") from None


def read_samples(path: Path, input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays by input name, each with samples along axis 0 (ModelError on a bad file)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".npy")
        if not files:
            raise ModelError(f"input_file {str(path)!r}: a directory with no .npy files")
        by_name = {p.stem: p for p in files}
        if set(input_names) <= set(by_name):
            return {n: _load_npy(by_name[n], f"input_file {str(by_name[n])!r}") for n in input_names}
        if len(input_names) == 1 and len(files) <= MAX_INPUT_FILES:
            samples = [_load_npy(p, f"input_file {str(p)!r}") for p in files]
            shapes = {(a.shape, a.dtype.str) for a in samples}
            if len(shapes) > 1:
                raise ModelError(f"input_file {str(path)!r}: its .npy samples differ in shape or dtype "
                                 f"({', '.join(sorted(f'{s}{d}' for s, d in shapes)[:3])})")
            return {input_names[0]: np.stack(samples)}
        missing = sorted(set(input_names) - set(by_name))
        raise ModelError(f"input_file {str(path)!r}: no {missing[0]}.npy for input {missing[0]!r} (a directory holds "
                         f"one NAME.npy per model input: {', '.join(input_names)}; or one sample per file for a "
                         "one-input model)")
    if not path.is_file():
        raise ModelError(f"input_file {str(path)!r}: no such file or directory")
    if path.suffix == ".npy":
        if len(input_names) != 1:
            raise ModelError(f"input_file {str(path)!r}: one .npy array for a model with {len(input_names)} inputs; "
                             f"use an .npz with an array per input ({', '.join(input_names)})")
        return {input_names[0]: _load_npy(path, f"input_file {str(path)!r}")}
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ModelError(f"input_file {str(path)!r}: a single array, not an .npz archive (name .npy files so)")
        with archive:
            names = set(archive.files)
            missing = [n for n in input_names if n not in names]
            if missing:
                raise ModelError(f"input_file {str(path)!r}: no array for input {missing[0]!r} (it holds: "
                                 f"{', '.join(sorted(names)) or 'nothing'}; the model's inputs: {', '.join(input_names)})")
            return {n: archive[n] for n in input_names}
    except ModelError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ModelError(f"input_file {str(path)!r}: holds an object array, which only pickle can load; "
                             "refused (save plain numeric arrays)") from None
        raise ModelError(f"input_file {str(path)!r}: not an .npz or .npy file: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"input_file {str(path)!r}: not an .npz or .npy file: {exc}") from None


_KINDS = {"f": "float", "i": "int", "u": "int", "b": "bool"}


def check_samples(samples: dict[str, np.ndarray], specs: tuple[InputSpec, ...], where: str) -> dict[str, int]:
    """Each array against its spec (dtype kind, rank, fixed sizes; all the same sample count); the
    sizes its named dimensions take. ModelError naming the input otherwise."""
    counts = {n: a.shape[0] if a.ndim else 0 for n, a in samples.items()}
    dims: dict[str, int] = {}
    for spec in specs:
        arr = samples[spec.name]
        kind = _KINDS.get(arr.dtype.kind)
        want = "bool" if spec.dtype == "bool" else spec.dtype.rstrip("0123456789")
        if kind != want:
            raise ModelError(f"{where}: input {spec.name!r} is {arr.dtype} in the file; the model takes {spec.dtype}")
        if arr.ndim != len(spec.shape) + 1:
            raise ModelError(f"{where}: input {spec.name!r} has shape {arr.shape} in the file; expected (samples, "
                             f"{', '.join(map(str, spec.shape))})")
        for axis, (size, want_size) in enumerate(zip(arr.shape[1:], spec.shape), start=1):
            if isinstance(want_size, str):
                if dims.setdefault(want_size, size) != size:
                    raise ModelError(f"{where}: input {spec.name!r} has {want_size}={size} on axis {axis}; another "
                                     f"input has {want_size}={dims[want_size]}")
            elif size != want_size:
                raise ModelError(f"{where}: input {spec.name!r} has shape {arr.shape} in the file; axis {axis} must "
                                 f"be {want_size}")
        if counts[spec.name] < 1:
            raise ModelError(f"{where}: input {spec.name!r} holds no samples")
    if len(set(counts.values())) > 1:
        raise ModelError(f"{where}: the inputs hold different sample counts "
                         f"({', '.join(f'{n}: {c}' for n, c in counts.items())})")
    return dims


@dataclass(frozen=True)
class FileSamples:
    """A cell's feeds from the user's samples: a batch takes the first batch_size, cycling."""

    path: str
    specs: tuple[InputSpec, ...]

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:  # read once per process, whatever the batch sizes
        samples = read_samples(Path(self.path), tuple(s.name for s in self.specs))
        return {s.name: np.ascontiguousarray(samples[s.name], dtype=s.dtype) for s in self.specs}

    def feeds(self, batch_size: int) -> dict[str, np.ndarray]:
        arrays = self._arrays
        return {n: np.take(a, np.arange(batch_size), axis=0, mode="wrap") for n, a in arrays.items()}

    def describe(self, batch_size: int):
        from bench.results.records import InputsInfo, InputTensor

        arrays = self._arrays
        count = next(iter(arrays.values())).shape[0]
        return InputsInfo("file", tuple(InputTensor(n, (batch_size, *a.shape[1:]), str(a.dtype), "file")
                                        for n, a in arrays.items()), file=self.path, samples=count)
