"""Hugging Face causal language models as decoders (the `hf` extra: transformers).

Reference: `model = "hf:MODEL_TYPE"` with the config's fields in `model_args`, e.g.
`model = "hf:gpt2"`, `model_args = { n_layer = 2, n_embd = 64, n_head = 2, vocab_size = 512 }`.
The model is built from that config with random weights from the benchmark's seed
(AutoConfig.for_model + AutoModelForCausalLM.from_config): nothing is downloaded, ever.

The adapter follows the decoder contract (bench.models.decoder) over transformers' own dynamic
cache: prefill runs the prompt with a fresh cache, decode feeds one token per sequence with it.
The cache grows with the sequence, so its shapes change each step: the adapter runs eager only
(compile and CUDA graphs need a static cache and refuse it), and has no ONNX form here.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

INSTALL = "pip install 'bench[hf]' (transformers)"


class HFCache(list):
    """The contract's cache for an HF model: transformers' cache object, and its bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.value: Any = None

    def nbytes(self) -> int:
        layers = getattr(self.value, "layers", None)
        if layers is not None:
            pairs = [(layer.keys, layer.values) for layer in layers if getattr(layer, "keys", None) is not None]
        else:  # transformers before 4.56: parallel lists
            pairs = list(zip(getattr(self.value, "key_cache", []), getattr(self.value, "value_cache", [])))
        return int(sum(t.numel() * t.element_size() for pair in pairs for t in pair))


class HFDecoder(nn.Module):
    static_cache = False  # transformers' dynamic cache: eager only

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        cfg = model.config
        self.vocab_size = int(cfg.vocab_size)
        self.max_len = int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions"))
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5

    def new_cache(self, batch: int, device: Any = None, dtype: Any = None) -> HFCache:
        return HFCache()

    def _step(self, input_ids: torch.Tensor, cache: HFCache) -> torch.Tensor:
        out = self.model(input_ids=input_ids, use_cache=True, **{self._cache_kw: cache.value})
        cache.value = out.get("cache", None) if "cache" in out else out.get("past_key_values")
        return out.logits[:, -1]

    def prefill(self, input_ids: torch.Tensor, cache: HFCache) -> torch.Tensor:
        from transformers import DynamicCache

        try:
            cache.value = DynamicCache(config=self.model.config)
        except TypeError:  # transformers before 4.56 takes no config
            cache.value = DynamicCache()
        return self._step(input_ids, cache)

    def decode(self, input_ids: torch.Tensor, position: torch.Tensor, cache: HFCache) -> torch.Tensor:
        return self._step(input_ids, cache)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def build(model_type: str, args: dict[str, Any]) -> tuple[nn.Module, tuple[torch.Tensor]]:
    """(the adapter, example ids) for `hf:MODEL_TYPE`; raises ValueError/ImportError with the reason."""
    import logging
    import warnings

    try:
        import transformers
    except ImportError:
        raise ImportError(f"Hugging Face models need transformers: {INSTALL}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        config = transformers.AutoConfig.for_model(model_type, **args)
        model = transformers.AutoModelForCausalLM.from_config(config)
    decoder = HFDecoder(model.eval())
    example = torch.randint(0, decoder.vocab_size, (2, min(decoder.max_len, 16)), dtype=torch.int64)
    return decoder, (example,)
