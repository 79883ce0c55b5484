"""The inputs int8 calibration and the accuracy figure run on, apart from the measured batch.

Three seeded streams never overlap: the measured batch (the benchmark's seed), the accuracy samples
and the calibration samples (the seed mixed with a constant of each), so an accuracy figure is not
measured on the data that set the quantization scales. From a file of the user's samples, accuracy
takes the first ones and calibration the last ones: they overlap only when the file holds fewer
than both need (calibration_overlap says how many).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ModelError

_ACCURACY_STREAM = 0xACC
_CALIBRATION_STREAM = 0xCA1


def _generated(model: Any, dims: tuple[tuple[str, int], ...], count: int, stream: int) -> dict[str, np.ndarray]:
    from bench.models.inputs import bind_dims, make_inputs

    return make_inputs(bind_dims(model.inputs, dict(dims)), count, model.source.seed * 7919 + stream)


def _file_arrays(path: str, specs: tuple, where: str) -> dict[str, np.ndarray]:
    from bench.models.input_files import check_samples, read_samples

    samples = read_samples(Path(path), tuple(s.name for s in specs))
    check_samples(samples, specs, where)
    return {s.name: np.ascontiguousarray(samples[s.name], dtype=s.dtype) for s in specs}


def first_dims(model: Any) -> tuple[tuple[str, int], ...]:
    """The dims a calibration runs at: the first combination the benchmark sweeps (none without)."""
    grid = model.source.dims_grid
    return grid[0] if grid else ()


def calibration_feeds(model: Any, quantize: Any) -> dict[str, np.ndarray]:
    """`quantize.samples` inputs to calibrate on (model: bench.models.loader.PreparedModel,
    quantize: bench.config.records.QuantizeSpec). Raises ModelError when the user's calibration
    file does not fit the model's inputs (one line: which input, which axis)."""
    if quantize.calibration_file:
        arrays = _file_arrays(quantize.calibration_file, model.inputs,
                              f"quantize.calibration_file {quantize.calibration_file}")
        return {n: a[: quantize.samples] for n, a in arrays.items()}
    if model.input_file is not None:
        arrays = _file_arrays(model.input_file, model.inputs, f"input file {model.input_file}")
        return {n: a[-quantize.samples:] for n, a in arrays.items()}
    return _generated(model, first_dims(model), quantize.samples, _CALIBRATION_STREAM)


def accuracy_feeds(model: Any, dims: tuple[tuple[str, int], ...], samples: int, batch_size: int) -> list[dict[str, np.ndarray]]:
    """The accuracy samples in batches of the cell's size: ceil(samples / batch) full batches (a
    static-shape target runs only its own batch size), from the user's file (cycling when it holds
    fewer) or generated at the cell's dims."""
    if samples <= 0:
        return []
    batches = -(-samples // batch_size)
    count = batches * batch_size
    if model.input_file is not None:
        arrays = _file_arrays(model.input_file, model.inputs, f"input file {model.input_file}")
        feeds = {n: np.take(a, np.arange(count), axis=0, mode="wrap") for n, a in arrays.items()}
    else:
        # `samples` inputs whatever the batch size (cycled to whole batches), so every batch size of
        # a cell measures its accuracy on the same samples
        made = _generated(model, dims, samples, _ACCURACY_STREAM)
        feeds = {n: np.take(a, np.arange(count), axis=0, mode="wrap") for n, a in made.items()}
    return [{n: a[i * batch_size:(i + 1) * batch_size] for n, a in feeds.items()} for i in range(batches)]


def check_calibration_file(model: Any, quantize: Any) -> None:
    """Refuse a calibration file that does not fit the model before anything runs (ModelError)."""
    if quantize.calibration_file:
        try:
            calibration_feeds(model, quantize)
        except ModelError as exc:  # read_samples names the file as an input_file
            raise ModelError(str(exc).replace("input_file ", "quantize.calibration_file ", 1)) from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"quantize.calibration_file {quantize.calibration_file!r}: {exc}") from None
