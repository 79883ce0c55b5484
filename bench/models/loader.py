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
from bench.errors import ModelError
from bench.models.inputs import InputSpec

_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}
EXPORT_OPSET = 18
FP16_FORMAT = 1  # bump when the fp16 conversion's settings change
CACHE_FORMAT = 1  # bump when the export settings change, so stale cached files are not reused


@dataclass(frozen=True)
class ModelRef:
    """What a benchmark asks for: enough for any process to rebuild the model."""

    ref: str
    kind: str  # zoo | onnx | pt2 | factory
    args: tuple[tuple[str, Any], ...] = ()
    dims: tuple[tuple[str, int], ...] = ()
    seed: int = 0
    trusted: bool = False

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
    # A decoder (the generate scenario): its ONNX past/present graphs (prefill, decode) when an
    # onnxruntime target generates with it, and their fp16 forms; why there are none otherwise.
    decoder_onnx: tuple[str, str] | None = None
    decoder_onnx_fp16: tuple[str, str] | None = None
    decoder_onnx_note: str = ""
    decoder_max_len: int | None = None  # positions its cache holds (None: not checked as a decoder)
    decoder_vocab: int | None = None


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


class _quiet:
    """Python logging and warnings silenced, and fd 2 sent to /dev/null, for a library call whose
    failure is reported as one line by the caller (torch logs a traceback of its own first)."""

    def __enter__(self) -> None:
        import logging
        import warnings

        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc: object) -> None:
        import logging

        os.dup2(self._saved, 2)
        os.close(self._saved)
        logging.disable(self._level)
        self._warnings.__exit__(None, None, None)


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
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"model {source.ref!r}: cannot import the factory: {exc}") from None
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(source.seed)
                result = factory(**dict(source.args))
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
        path = Path(source.ref)
        if not path.is_file():
            raise ModelError(f"model {source.ref!r}: no such file")
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


def _export_onnx(module, specs: tuple[InputSpec, ...], path: Path) -> None:
    import logging
    import warnings

    import torch

    from bench.models.inputs import make_inputs

    feeds = make_inputs(specs, 2, 0)  # batch 2: a batch of 1 would let export specialise the axis
    args = tuple(torch.from_numpy(v) for v in feeds.values())
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            module, args, str(path),
            dynamo=True, external_data=False, opset_version=EXPORT_OPSET, verbose=False,
            input_names=[s.name for s in specs],
            dynamic_shapes=tuple({0: batch} for _ in specs),
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
    module, example = build_torch(source)
    extra: dict[str, Any] = {}
    if decoder:
        check_decoder(source, module)
        extra = dict(decoder_max_len=int(module.max_len), decoder_vocab=int(module.vocab_size))
    specs = _torch_input_specs(source, module, example)
    sha = _torch_hash(source, module)
    onnx_path = None
    if decoder and decoder_onnx:
        paths, note = _export_decoder(source, module, sha)
        extra.update(decoder_onnx=paths, decoder_onnx_note=note)
    if need_onnx:
        import torch

        key = hashlib.sha256(f"{sha}|{torch.__version__}|{EXPORT_OPSET}|{CACHE_FORMAT}".encode()).hexdigest()[:24]
        path = cache_dir() / f"{source.display_name.replace('/', '_').replace(':', '_')}-{key}.onnx"

        def export(tmp: Path) -> None:
            try:
                _export_onnx(module, specs, tmp)
            except OSError:
                raise
            except Exception as exc:  # exporter failures are about the user's model
                raise ModelError(f"model {source.ref!r}: ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None

        onnx_path = str(cached(path, export))
    return PreparedModel(source, sha, specs, onnx_path, **extra), module


# --- ONNX files ------------------------------------------------------------------------------


def onnx_input_specs(path: Path, ref: str, dims: dict[str, int]) -> tuple[InputSpec, ...]:
    """Read a graph's inputs; the leading axis is the batch, other symbolic dims come from `dims`."""
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
        shape = []
        for axis, d in enumerate(shape_dims[1:], start=1):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif d.dim_param and d.dim_param in dims:
                shape.append(int(dims[d.dim_param]))
            else:
                label = d.dim_param or f"axis {axis}"
                raise ModelError(
                    f"model {ref!r}: input {inp.name!r} has symbolic dimension {label!r} that the config does "
                    f"not bind; set dims = {{ {d.dim_param or 'NAME'} = N }} in the benchmark"
                )
        high = 2.0 if dtype.startswith("int") else 1.0  # ids/masks: [0, 2) is valid for any table of >= 2 rows
        specs.append(InputSpec(inp.name, tuple(shape), dtype, 0.0, high))
    if not specs:
        raise ModelError(f"model {ref!r}: the graph has no inputs to feed")
    return tuple(specs)


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


def _count_flops(prepared: PreparedModel, module=None) -> PreparedModel:
    """FLOPs per sample for the roofline: torch's counter on the module, else the ONNX graph."""
    from dataclasses import replace

    from bench.models import flops

    batch = 2  # not 1, so nothing specialises on a batch of one
    if module is not None:
        import torch

        from bench.models.inputs import make_inputs

        feeds = make_inputs(prepared.inputs, batch, 0)
        try:
            count = flops.torch_flops_per_sample(module, tuple(torch.from_numpy(v) for v in feeds.values()), batch)
        except Exception as exc:  # a module FlopCounterMode cannot trace: no roofline, not a failure
            return replace(prepared, flops_source=f"not counted: torch FlopCounterMode raised {type(exc).__name__}")
        return replace(prepared, flops_per_sample=count, flops_source=flops.TORCH_FLOPS_SOURCE)
    if prepared.onnx_path is None:
        return prepared
    try:
        count, source = flops.count_onnx_flops(prepared.onnx_path, prepared.inputs, batch)
    except flops.UncountableGraph as exc:  # better no roofline than a wrong one
        return replace(prepared, flops_source=f"not counted: {exc}")
    return replace(prepared, flops_per_sample=count, flops_source=source)


def prepare(source: ModelRef, need_onnx: bool, need_torch: bool, need_fp16: bool = False,
            decoder_forms: frozenset[str] = frozenset()) -> PreparedModel:
    """Resolve, load-check and (when needed) export a model once, in the parent process.
    `decoder_forms`: the forms a generating target loads ("torch", "onnx", "onnx-fp16"); any
    makes the model checked against the decoder contract."""
    from dataclasses import replace

    if source.kind == "onnx":
        path = Path(source.ref)
        if decoder_forms:
            raise ModelError(f"model {source.ref!r} is not a decoder, which the generate scenario needs: an ONNX file "
                             "has no prefill/decode contract; use zoo:decoder or a package.module:factory decoder")
        if need_torch:
            raise ModelError(f"model {source.ref!r}: an ONNX file cannot run on a torch target; use onnxruntime")
        if not path.is_file():
            raise ModelError(f"model {source.ref!r}: no such file")
        specs = onnx_input_specs(path, source.ref, dict(source.dims))
        from bench.models.onnx_files import external_data_files

        external_data_files(path.resolve(), source.ref)  # a missing model.onnx.data: bad input, not failed cells
        prepared = _count_flops(PreparedModel(source, sha256_file(path), specs, str(path.resolve())))
    else:
        prepared, module = _prepare_torch_model(source, need_onnx or need_fp16, bool(decoder_forms),
                                                bool(decoder_forms & {"onnx", "onnx-fp16"}))
        if source.kind == "pt2":
            # The program file is the identity a user can check; keep the weights hash out.
            prepared = replace(prepared, sha256=sha256_file(Path(source.ref)))
        prepared = _count_flops(prepared, module)
    if need_fp16:
        assert prepared.onnx_path is not None
        prepared = replace(prepared, onnx_fp16_path=fp16_onnx(prepared.onnx_path, prepared.sha256, source.ref))
    if "onnx-fp16" in decoder_forms and prepared.decoder_onnx is not None:
        prepared = replace(prepared, decoder_onnx_fp16=tuple(
            fp16_onnx(p, hashlib.sha256(f"{prepared.sha256}|{p}".encode()).hexdigest(), source.ref)
            for p in prepared.decoder_onnx))
    return prepared
