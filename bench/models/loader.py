"""Model references -> prepared models: an input spec, a content hash, and the artifacts a backend loads.

References (the `model` key of a benchmark):
  zoo:NAME              a built-in model (bench.models.zoo), random weights from the seed
  path/to/model.onnx    inputs read from the graph; symbolic dims other than the batch bound by `dims`
  path/to/program.pt2   a torch.export program; refused unless `trust_model = true`, because
                        torch.export.load may unpickle objects from the file
  package.module:fn     a factory returning (torch module, example inputs); called with torch's
                        RNG seeded by the benchmark seed, so every process builds the same weights
  hf:MODEL_TYPE         a Hugging Face causal LM built from its config (model_args), random weights
                        from the seed, never downloaded (bench.models.hf; the `hf` extra)

The parent process prepares each model once (exporting to ONNX with a dynamic batch axis when an
onnxruntime target needs one, cached on disk by a content hash); workers rebuild the torch module
from the same reference. torch is imported only when a reference needs it.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.models.cache import cache_dir, cached, sha256_file
from bench.models.quiet import quiet as _quiet
from bench.errors import ModelError
from bench.models.input_specs import apply_overrides
from bench.models.inputs import InputOverride, InputSpec
from bench.models.user_code import UserCodeExit, exits_stopped, parent_side

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
EXPORT_OPSET = 18
FP16_FORMAT = 1  # bump when the fp16 conversion's settings change
CACHE_FORMAT = 1  # bump when the export settings change, so stale cached files are not reused


@dataclass(frozen=True)
class ModelRef:
    """What a benchmark asks for: enough for any process to rebuild the model."""

    ref: str  # a file model's path as resolved (against base_dir); other kinds as written
    kind: str  # zoo | onnx | pt2 | factory | hf
    args: tuple[tuple[str, Any], ...] = ()
    dims: tuple[tuple[str, tuple[int, ...]], ...] = ()  # named dynamic dimensions and their sizes
    seed: int = 0
    trusted: bool = False
    inputs: tuple[tuple[str, InputOverride], ...] = ()  # the suite's word on each input
    input_file: str | None = None  # the user's samples, resolved
    base_dir: str = ""  # where relative paths and factory modules resolve (the suite's directory)
    written: str = ""  # the reference as the suite wrote it

    @property
    def dims_grid(self) -> list[tuple[tuple[str, int], ...]]:
        import itertools

        names = [n for n, _ in self.dims]
        return [tuple(zip(names, sizes)) for sizes in itertools.product(*(v for _, v in self.dims))]

    @property
    def display_name(self) -> str:
        if self.kind == "zoo":
            return self.ref.removeprefix("zoo:")
        if self.kind in ("onnx", "pt2"):
            return Path(self.ref).stem
        return self.ref


@dataclass(frozen=True)
class PreparedModel:
    source: ModelRef
    sha256: str
    inputs: tuple[InputSpec, ...]
    onnx_path: str | None  # None when no onnxruntime target needs it
    onnx_fp16_path: str | None = None  # the fp16 conversion, when an fp16 onnxruntime target needs it
    flops_per_sample: float | None = None  # multiply-add = 2; None where it could not be counted
    flops_source: str = ""  # how it was counted, or why not
    # With named dims, FLOPs depend on them: (dims, FLOPs per sample) for each combination.
    flops_by_dims: tuple[tuple[tuple[tuple[str, int], ...], float | None], ...] = ()
    input_file: str | None = None  # the user's samples (checked against `inputs`)
    prepare_s: float | None = None  # building, hashing and exporting it here, in this run
    export_s: float | None = None  # the export or conversion part (0: cached); None: none needed
    # A decoder (the generate scenario): its ONNX past/present graphs (prefill, decode) when an
    # onnxruntime target generates with it, and their fp16 forms; why there are none otherwise.
    decoder_onnx: tuple[str, str] | None = None
    decoder_onnx_fp16: tuple[str, str] | None = None
    decoder_onnx_note: str = ""
    decoder_max_len: int | None = None  # positions its cache holds (None: not checked as a decoder)
    decoder_vocab: int | None = None
    # int8 forms by model form ("onnx-int8-static:minmax-pc-n32": bench.models.quantize.QuantizedModel)
    quantized: tuple[tuple[str, Any], ...] = ()

    def quantized_form(self, form: str):
        """The QuantizedModel of this form, or None when it was not prepared."""
        return dict(self.quantized).get(form)

    def flops_at(self, dims: tuple[tuple[str, int], ...]) -> float | None:
        """FLOPs per sample at these dims (the one figure for a model without named dims)."""
        if not dims:
            return self.flops_per_sample
        return dict(self.flops_by_dims).get(tuple(dims))

    def input_source(self, dims: tuple[tuple[str, int], ...], seed: int):
        """Where a cell's feeds come from (bench.models.inputs.InputSource)."""
        if self.input_file is not None:
            from bench.models.input_files import FileSamples

            return FileSamples(self.input_file, self.inputs)
        from bench.models.inputs import Generated, bind_dims

        return Generated(bind_dims(self.inputs, dict(dims)), seed)


def classify(ref: str) -> str:
    if ref.startswith("zoo:"):
        return "zoo"
    if ref.startswith("hf:") and len(ref) > 3:
        return "hf"
    if ref.endswith(".onnx"):
        return "onnx"
    if ref.endswith(".pt2"):
        return "pt2"
    if _FACTORY_RE.match(ref):
        return "factory"
    raise ModelError(
        f"model {ref!r}: not a model reference (allowed: zoo:NAME, path/to/model.onnx, "
        "path/to/program.pt2, package.module:factory, hf:MODEL_TYPE)"
    )


# --- torch-side models -----------------------------------------------------------------------


class _importable_from:
    """`base_dir` first on sys.path while a factory's module is imported and called (as Python puts
    a script's directory first), then the path as it was: a module beside the suite file imports
    without PYTHONPATH, and nothing else in the process resolves against the suite's directory."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir

    def __enter__(self) -> None:
        import sys

        self._saved = list(sys.path)
        if self.base_dir:
            sys.path.insert(0, self.base_dir)
            importlib.invalidate_caches()

    def __exit__(self, *exc: object) -> None:
        import sys

        sys.path[:] = self._saved


def model_file(source: ModelRef) -> Path:
    """A file model's path, checked: ModelError naming the path tried (and where a relative one
    resolves, when it exists only relative to the current directory). A path that exists but is
    no regular file (a FIFO, a device, a directory) is refused saying what it is: a FIFO would
    block the run until a writer came, a device never ends, and "no such file" would be false."""
    import stat

    from bench.results.safe_read import not_regular

    path = Path(source.ref)
    try:
        mode = path.stat().st_mode
    except OSError:  # missing, a dangling link, or a directory on the way that cannot be searched
        mode = None
    if mode is not None and stat.S_ISREG(mode):
        return path
    written = source.written or source.ref
    at = f": {path}" if str(path) != written else ""
    if mode is not None:
        raise ModelError(f"model {written!r}{at}: {not_regular(mode)}; a model is read from a regular file "
                         "(.onnx or .pt2)")
    hint = ""
    if not Path(written).is_absolute() and Path(written).is_file() and source.base_dir:
        hint = (f"; relative paths resolve against the suite file's directory ({source.base_dir}), and it exists "
                f"relative to the current directory instead: write {str(Path(written).resolve())!r}")
    raise ModelError(f"model {written!r}: no such file{at}{hint}")


def build_torch(source: ModelRef):
    """(module in eval mode, example input tuple or None) for a zoo, factory or pt2 reference."""
    import torch

    if source.kind == "zoo":
        from bench.models import zoo

        name = source.ref.removeprefix("zoo:")
        if name not in zoo.ZOO:
            import difflib

            close = difflib.get_close_matches(name, list(zoo.ZOO), n=1)
            hint = f"; did you mean 'zoo:{close[0]}'?" if close else ""
            raise ModelError(f"model {source.ref!r}: no such zoo model{hint} (allowed: {', '.join(sorted(zoo.ZOO))})")
        try:
            args = zoo.resolve_args(name, dict(source.args))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model {source.ref!r}: {exc}") from None
        try:
            return zoo.build(name, args, source.seed), None
        except Exception as exc:  # e.g. width = -3 or heads = 0: torch or arithmetic refuses the shape
            raise ModelError(f"model {source.ref!r}: cannot build with model_args {dict(source.args)}: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if source.kind == "hf":
        from bench.models import hf

        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(source.seed)
                return hf.build(source.ref.removeprefix("hf:"), dict(source.args))
        except ImportError as exc:
            raise ModelError(f"model {source.ref!r}: {exc}") from None
        except Exception as exc:  # an unknown model type, a config field it does not take
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            # transformers lists every model type it knows after the first sentence: keep that sentence
            first = first.split(". Should contain one of")[0]
            first = first if len(first) <= 200 else first[:200] + "..."
            raise ModelError(f"model {source.ref!r}: transformers cannot build it from model_args "
                             f"{dict(source.args)}: {type(exc).__name__}: {first}") from None
    if source.kind == "factory":
        module_name, _, attr = source.ref.partition(":")
        who = f"model {source.ref!r}: its code"
        with _importable_from(source.base_dir):
            try:
                # A module written as a script may end the process at import (sys.exit, argparse):
                # a failure that says so, not a silent exit (bench.models.user_code).
                with exits_stopped(who, f"its module {module_name!r} was imported"):
                    factory = getattr(importlib.import_module(module_name), attr)
            except ModuleNotFoundError as exc:
                where = f"{source.base_dir} (the suite file's directory) or " if source.base_dir else ""
                raise ModelError(f"model {source.ref!r}: cannot import the factory: no module {exc.name!r} in "
                                 f"{where}the installed packages") from None
            except (ImportError, AttributeError) as exc:
                raise ModelError(f"model {source.ref!r}: cannot import the factory: {exc}") from None
            try:
                with torch.random.fork_rng(devices=[]), exits_stopped(who, "the factory ran"):
                    torch.manual_seed(source.seed)
                    result = factory(**dict(source.args))
            except UserCodeExit:
                raise
            except Exception as exc:  # the user's code: any failure is theirs to fix
                raise ModelError(f"model {source.ref!r}: the factory raised {type(exc).__name__}: {exc}") from None
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)):
            raise ModelError(f"model {source.ref!r}: the factory must return (torch.nn.Module, example_inputs)")
        module, example = result
        example = (example,) if isinstance(example, torch.Tensor) else tuple(example)
        if not example or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in example):
            raise ModelError(f"model {source.ref!r}: example_inputs must be tensors with a leading batch axis")
        return module.eval(), example
    if source.kind == "pt2":
        if not source.trusted:
            raise ModelError(
                f"model {source.ref!r}: a .pt2 program may hold pickled objects and loading it can run "
                "code from the file; set trust_model = true in its benchmark if you trust it"
            )
        path = model_file(source)
        try:
            with _quiet():  # torch logs its own traceback for a bad archive before raising
                program = torch.export.load(str(path))
        except Exception as exc:  # a corrupt or foreign archive
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(f"model {source.ref!r}: not a torch.export program: {type(exc).__name__}: {first}") from None
        example = tuple(program.example_inputs[0]) if program.example_inputs else None
        if not example:
            raise ModelError(f"model {source.ref!r}: the program holds no example inputs to take shapes from")
        return program.module(), example
    raise ModelError(f"model {source.ref!r}: {source.kind} models cannot run on torch targets; use onnxruntime")


def _torch_hash(source: ModelRef, module) -> str:
    import torch

    digest = hashlib.sha256(json.dumps([source.kind, source.ref, list(source.args), source.seed]).encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _torch_input_specs(source: ModelRef, module, example) -> tuple[InputSpec, ...]:
    if source.kind == "zoo":
        from bench.models import zoo

        name = source.ref.removeprefix("zoo:")
        return zoo.ZOO[name].inputs(zoo.resolve_args(name, dict(source.args)))
    try:
        params = [p for p in inspect.signature(module.forward).parameters if p != "self"]
    except (TypeError, ValueError):
        params = []
    specs = []
    for i, t in enumerate(example):
        name = params[i] if i < len(params) else f"input_{i}"
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in ("float32", "float16", "int64", "int32", "bool"):
            raise ModelError(f"model {source.ref!r}: input {name!r} has dtype {dtype}, not supported")
        low, high = 0.0, 1.0
        if dtype.startswith("int"):
            # Keep generated ids inside what the example used (e.g. a vocabulary).
            low, high = float(t.min()), float(t.max()) + 1
        specs.append(InputSpec(name, tuple(int(d) for d in t.shape[1:]), dtype, low, high))
    return tuple(specs)


def _example_dims(source: ModelRef) -> dict[str, int]:
    """A size per named dimension to trace an export with: the largest the suite sweeps (so the
    exporter does not specialise the axis, as it would at 1)."""
    return {name: max(sizes) for name, sizes in source.dims}


def _export_onnx(module, specs: tuple[InputSpec, ...], path: Path, example_dims: dict[str, int]) -> None:
    """The module as ONNX with a dynamic batch axis and a dynamic axis per named dimension."""
    import logging
    import warnings

    import torch

    from bench.models.inputs import bind_dims, make_inputs

    feeds = make_inputs(bind_dims(specs, example_dims), 2, 0)  # batch 2: a batch of 1 would specialise the axis
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    named = {d: torch.export.Dim(d, min=1, max=1 << 24) for s in specs for d in s.named_dims if example_dims[d] > 1}
    dynamic = tuple({0: batch, **{axis: named[d] for axis, d in enumerate(s.shape, start=1) if d in named}}
                    for s in specs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            module, args, str(path),
            dynamo=True, external_data=False, opset_version=EXPORT_OPSET, verbose=False,
            input_names=[s.name for s in specs],
            dynamic_shapes=dynamic,
        )


def check_decoder(source: ModelRef, module) -> None:
    """Refuse a module that does not follow the decoder contract (bench.models.decoder), naming what it lacks."""
    from bench.models.decoder import contract_problem

    problem = contract_problem(module)
    if problem:
        raise ModelError(f"model {source.ref!r} is not a decoder, which the generate scenario needs: its module "
                         f"{type(module).__name__} {problem}")


def _export_decoder(source: ModelRef, module, sha: str) -> tuple[tuple[str, str] | None, str]:
    """The decoder's prefill and decode graphs, cached by content; (None, why) for a module with no ONNX form."""
    import shutil
    import tempfile

    import torch

    from bench.models.decoder import GPTDecoder, export_onnx

    if not isinstance(module, GPTDecoder):
        return None, (f"{type(module).__name__} has no ONNX past/present form (the zoo decoders have one); "
                      "run it on torch targets")
    key = hashlib.sha256(f"{sha}|{torch.__version__}|{EXPORT_OPSET}|{CACHE_FORMAT}|decoder".encode()).hexdigest()[:24]
    stem = source.display_name.replace('/', '_').replace(':', '_')
    prefill = cache_dir() / f"{stem}-prefill-{key}.onnx"
    decode = cache_dir() / f"{stem}-decode-{key}.onnx"
    made: dict[str, Path] = {}

    def build(which: str):
        def place(tmp: Path) -> None:
            if not made:  # one export writes both graphs; each is then cached (and verified) on its own
                made["dir"] = Path(tempfile.mkdtemp(prefix=".decoder-export-", dir=cache_dir()))
                try:
                    export_onnx(module, str(made["dir"] / "prefill.onnx"), str(made["dir"] / "decode.onnx"), EXPORT_OPSET)
                except OSError:
                    raise
                except Exception as exc:  # exporter failures are about the model
                    raise ModelError(f"model {source.ref!r}: ONNX export of the decoder failed: "
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
            os.replace(made["dir"] / which, tmp)
        return place

    try:
        paths = (str(cached(prefill, build("prefill.onnx"))), str(cached(decode, build("decode.onnx"))))
    finally:
        if made:
            shutil.rmtree(made["dir"], ignore_errors=True)
    return paths, ""


def _prepare_torch_model(source: ModelRef, need_onnx: bool, decoder: bool = False, decoder_onnx: bool = False):
    """(PreparedModel with export_s set where an export was needed, the module, the dims its input
    file fixes)."""
    import time

    module, example = build_torch(source)
    extra: dict[str, Any] = {}
    if decoder:
        check_decoder(source, module)
        extra = dict(decoder_max_len=int(module.max_len), decoder_vocab=int(module.vocab_size))
    specs = apply_overrides(_torch_input_specs(source, module, example), source.inputs, source.ref, graph_shapes=False)
    input_file, file_dims = _check_inputs(source, specs)
    sha = _torch_hash(source, module)
    onnx_path = None
    export_s: float | None = None
    t0 = time.perf_counter()
    if decoder and decoder_onnx:
        paths, note = _export_decoder(source, module, sha)
        extra.update(decoder_onnx=paths, decoder_onnx_note=note)
        export_s = time.perf_counter() - t0
    if need_onnx:
        import torch

        # the shapes' names decide which axes the export makes dynamic: part of the cache key
        shapes = [list(sp.shape) for sp in specs]
        key = hashlib.sha256(f"{sha}|{torch.__version__}|{EXPORT_OPSET}|{CACHE_FORMAT}|{shapes}".encode()).hexdigest()[:24]
        path = cache_dir() / f"{source.display_name.replace('/', '_').replace(':', '_')}-{key}.onnx"
        example_dims = {**_example_dims(source), **file_dims}

        def export(tmp: Path) -> None:
            try:
                _export_onnx(module, specs, tmp, example_dims)
            except OSError:
                raise
            except Exception as exc:  # exporter failures are about the user's model
                raise ModelError(f"model {source.ref!r}: ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None

        onnx_path = str(cached(path, export))
        export_s = time.perf_counter() - t0
    return PreparedModel(source, sha, specs, onnx_path, input_file=input_file, export_s=export_s, **extra), module, file_dims


def _check_inputs(source: ModelRef, specs: tuple[InputSpec, ...]) -> tuple[str | None, dict[str, int]]:
    """The user's samples checked against the specs, and the dims they fix; then every named
    dimension checked against the suite's dims. (input file or None, the dims it fixes)."""
    from bench.models.input_files import check_samples, read_samples
    from bench.models.input_specs import check_dims

    file_dims: dict[str, int] = {}
    if source.input_file is not None:
        samples = read_samples(Path(source.input_file), tuple(s.name for s in specs))
        file_dims = check_samples(samples, specs, f"input_file {source.input_file!r}")
    check_dims(specs, tuple(n for n, _ in source.dims), source.ref, file_dims)
    return source.input_file, file_dims


# --- ONNX files ------------------------------------------------------------------------------


def fp16_onnx(path: str, sha256: str, ref: str) -> str:
    """The fp16 form of an fp32 ONNX model, converted once and cached by content.

    onnxruntime's own converter (onnxruntime.transformers.float16): weights and activations in
    fp16, inputs and outputs too (keep_io_types=False), so an fp16 target is fed fp16 arrays
    as torch's fp16 targets are; ops without fp16 kernels are left to ORT's cast insertion.
    """
    import onnx
    import onnxruntime
    from onnxruntime.transformers.float16 import convert_float_to_float16

    key = hashlib.sha256(f"{sha256}|{onnxruntime.__version__}|fp16|{FP16_FORMAT}".encode()).hexdigest()[:24]
    out = cache_dir() / f"{Path(path).stem}-fp16-{key}.onnx"

    def convert(tmp: Path) -> None:
        try:
            model16 = convert_float_to_float16(onnx.load(path), keep_io_types=False)
            onnx.save(model16, str(tmp))
        except OSError:
            raise
        except Exception as exc:  # the converter's failures are about the user's graph
            raise ModelError(f"model {ref!r}: fp16 conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None

    return str(cached(out, convert))


def _flops_once(prepared: PreparedModel, module, dims: dict[str, int]) -> tuple[float | None, str]:
    from bench.models import flops
    from bench.models.inputs import bind_dims

    batch = 2  # not 1, so nothing specialises on a batch of one
    specs = bind_dims(prepared.inputs, dims)
    if module is not None:
        import torch

        from bench.models.inputs import make_inputs

        feeds = make_inputs(specs, batch, 0)
        try:
            count = flops.torch_flops_per_sample(module, tuple(torch.from_numpy(v) for v in feeds.values()), batch)
        except Exception as exc:  # a module FlopCounterMode cannot trace: no roofline, not a failure
            return None, f"not counted: torch FlopCounterMode raised {type(exc).__name__}"
        return count, flops.TORCH_FLOPS_SOURCE
    if prepared.onnx_path is None:
        return None, ""
    try:
        return flops.count_onnx_flops(prepared.onnx_path, specs, batch)
    except flops.UncountableGraph as exc:  # better no roofline than a wrong one
        return None, f"not counted: {exc}"


def _count_flops(prepared: PreparedModel, module, file_dims: dict[str, int]) -> PreparedModel:
    """FLOPs per sample for the roofline: torch's counter on the module, else the ONNX graph; at
    each combination of the named dims where the suite sweeps them."""
    from dataclasses import replace

    if file_dims or not prepared.source.dims:
        count, how = _flops_once(prepared, module, file_dims)
        return replace(prepared, flops_per_sample=count, flops_source=how)
    by_dims, how = [], ""
    for dims in prepared.source.dims_grid:
        count, how_here = _flops_once(prepared, module, dict(dims))
        by_dims.append((dims, count))
        how = how or how_here
    return replace(prepared, flops_by_dims=tuple(by_dims), flops_source=how)


def prepare(source: ModelRef, need_onnx: bool, need_torch: bool, need_fp16: bool = False,
            decoder_forms: frozenset[str] = frozenset(),
            quantize_forms: tuple[tuple[str, str, Any], ...] = ()) -> PreparedModel:
    """Resolve, load-check and (when needed) export a model once, in the parent process.
    `decoder_forms`: the forms a generating target loads ("torch", "onnx", "onnx-fp16"); any
    makes the model checked against the decoder contract. `quantize_forms`: (form, int8 precision,
    QuantizeSpec) of each int8 ONNX form a target loads (bench.models.quantize).

    A factory's module, its factory and its forward run here: with a clean sys.argv, their output
    kept off stdout (the harness's: `bench run --json`) and an exit turned into one ModelError line
    (bench.models.user_code.parent_side)."""
    try:
        with parent_side(f"model {source.ref!r}: its code", "the model was prepared (built, hashed, exported, "
                                                  "its FLOPs counted)"):
            prepared = _prepare(source, need_onnx or bool(quantize_forms), need_torch, need_fp16, decoder_forms)
            return _quantized(prepared, quantize_forms)
    except UserCodeExit as exc:
        # Nothing was measured yet, and the module is the user's to fix: bad input (exit 2), as a
        # factory that raises is; silently ending `bench` read as a pass in CI.
        said = f" (its last output: {exc.output_tail!r})" if exc.output_tail else ""
        raise ModelError(f"{exc}{said}, before the run began; nothing was measured (a factory's module "
                         "must return its model, not end the process)") from None


def _quantized(prepared: PreparedModel, forms: tuple[tuple[str, str, Any], ...]) -> PreparedModel:
    """The model with its int8 forms, each quantized once (or read from the cache)."""
    if not forms:
        return prepared
    from dataclasses import replace

    from bench.models.calibration import calibration_feeds, check_calibration_file
    from bench.models.quantize import quantize_onnx

    assert prepared.onnx_path is not None
    done = []
    for form, precision, spec in forms:
        check_calibration_file(prepared, spec)
        feeds = calibration_feeds(prepared, spec) if precision == "int8-static" else None
        done.append((form, quantize_onnx(prepared.onnx_path, prepared.sha256, prepared.source.ref, precision, spec, feeds)))
    return replace(prepared, quantized=tuple(done))


def _prepare(source: ModelRef, need_onnx: bool, need_torch: bool, need_fp16: bool,
             decoder_forms: frozenset[str]) -> PreparedModel:
    import time
    from dataclasses import replace

    from bench.models.input_specs import onnx_defaults, onnx_input_specs

    t0 = time.perf_counter()
    if source.kind == "onnx":
        if decoder_forms:
            raise ModelError(f"model {source.ref!r} is not a decoder, which the generate scenario needs: an ONNX file "
                             "has no prefill/decode contract; use zoo:decoder or a package.module:factory decoder")
        if need_torch:
            raise ModelError(f"model {source.ref!r}: an ONNX file cannot run on a torch target; use onnxruntime")
        path = model_file(source)
        specs, graph = onnx_input_specs(path, source.ref)
        from bench.models.onnx_files import external_data_files

        external_data_files(path.resolve(), source.ref)  # a missing model.onnx.data: bad input, not failed cells
        specs = apply_overrides(onnx_defaults(specs, graph), source.inputs, source.ref, graph_shapes=True)
        input_file, file_dims = _check_inputs(source, specs)
        prepared = PreparedModel(source, sha256_file(path), specs, str(path.resolve()), input_file=input_file)
        prepared = _count_flops(prepared, None, file_dims)
    else:
        prepared, module, file_dims = _prepare_torch_model(source, need_onnx or need_fp16, bool(decoder_forms),
                                                           bool(decoder_forms & {"onnx", "onnx-fp16"}))
        if source.kind == "pt2":
            # The program file is the identity a user can check; keep the weights hash out.
            prepared = replace(prepared, sha256=sha256_file(Path(source.ref)))
        prepared = _count_flops(prepared, module, file_dims)
    t1 = time.perf_counter()
    if need_fp16:
        assert prepared.onnx_path is not None
        prepared = replace(prepared, onnx_fp16_path=fp16_onnx(prepared.onnx_path, prepared.sha256, source.ref))
    if "onnx-fp16" in decoder_forms and prepared.decoder_onnx is not None:
        prepared = replace(prepared, decoder_onnx_fp16=tuple(
            fp16_onnx(p, hashlib.sha256(f"{prepared.sha256}|{p}".encode()).hexdigest(), source.ref)
            for p in prepared.decoder_onnx))
    export_s = prepared.export_s
    if need_fp16 or "onnx-fp16" in decoder_forms:  # the fp16 conversion is part of the one-off export cost
        export_s = (export_s or 0.0) + (time.perf_counter() - t1)
    return replace(prepared, prepare_s=time.perf_counter() - t0, export_s=export_s)
