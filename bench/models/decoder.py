"""Autoregressive decoders: the prefill/decode contract, the zoo's GPT-style decoder, and its ONNX
past/present export.

The contract, which the zoo decoder follows and a user decoder (`package.module:factory`
returning (module, example_input_ids)) must follow to run the `generate` scenario:

  module.vocab_size: int                 logits width
  module.max_len: int                    positions the cache holds (prompt + output must fit)
  module.new_cache(batch, device, dtype) -> list[torch.Tensor]
        static key/value buffers for `batch` sequences of max_len positions, allocated once;
        the cell's KV-cache bytes are their sizes summed
  module.prefill(input_ids [B, P] int64, cache) -> logits [B, V]
        the logits of the last prompt position; writes the prompt's keys and values at [0, P)
  module.decode(input_ids [B, 1] int64, position: 0-d int64 tensor, cache) -> logits [B, V]
        one token per sequence at `position`: writes its keys and values there, attends [0, position]

decode may also take a keyword `kv_len: int`: attend [0, kv_len) only. Eager mode passes it, so a
step costs what a dynamic cache's does (growing with the sequence); the static modes (torch.compile,
CUDA graphs) call decode without it and it must then attend the whole buffer under a mask, so
that every step has the same shapes and can be compiled or captured once.

Greedy decoding: the next token is the arg-max of the logits, so every target of a benchmark makes
the same tokens (bench.scenarios.generate checks them against the reference target's).

ONNX form (zoo decoder): two graphs sharing the weights, in the past/present convention of
Hugging Face's exports. prefill: input_ids [B, P] -> next_token [B], logits [B, V], present_key_i
and present_value_i [B, H, P, D] per layer. decode: input_ids [B, 1], past_key_i / past_value_i
[B, H, T, D] -> next_token, logits, present_* [B, H, T + 1, D]. The arg-max is in the graph, so a
step returns one id per sequence to the host and the cache stays where the runtime keeps it.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bench.models.decoder_io import onnx_names

CONTRACT_METHODS = ("new_cache", "prefill", "decode")
CONTRACT_ATTRIBUTES = ("vocab_size", "max_len")
CONTRACT_DOC = "bench.models.decoder (docs/scenarios.md, \"Generation\")"


def contract_problem(module: Any) -> str | None:
    """What `module` lacks of the decoder contract, in words; None when it has all of it."""
    for name in CONTRACT_METHODS:
        if not callable(getattr(module, name, None)):
            return (f"has no method {name!r} (a decoder needs {', '.join(CONTRACT_METHODS)} and the attributes "
                    f"{', '.join(CONTRACT_ATTRIBUTES)}; see {CONTRACT_DOC})")
    for name in CONTRACT_ATTRIBUTES:
        value = getattr(module, name, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"has no integer attribute {name!r} >= 1 (found {value!r}; see {CONTRACT_DOC})"
    return None


def accepts_kv_len(module: Any) -> bool:
    import inspect

    try:
        return "kv_len" in inspect.signature(module.decode).parameters
    except (TypeError, ValueError):
        return False


class DecoderBlock(nn.Module):
    """Pre-LN GPT block. Attention is written out (matmul, mask, softmax), so every path (the
    static cache, the slice eager decode reads, the ONNX graphs' concatenated past) computes the
    same arithmetic."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as [B, heads, S, head_dim]."""
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    def attend(self, x: torch.Tensor, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               mask: torch.Tensor | None) -> torch.Tensor:
        """The block's output given the keys and values attended; mask [S, T] True where allowed."""
        b, s, h = x.shape
        att = (q @ keys.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        y = (att.softmax(dim=-1) @ values).transpose(1, 2).reshape(b, s, h)
        x = x + self.proj(y)
        return x + self.ff(self.ln2(x))


def causal_mask(queries: int, keys: int, first_query: Any, device: torch.device) -> torch.Tensor:
    """[queries, keys]: query i (at position first_query + i) may see keys at positions <= its own."""
    q_pos = torch.arange(queries, device=device) + first_query
    return torch.arange(keys, device=device)[None, :] <= q_pos[:, None]


class GPTDecoder(nn.Module):
    """GPT-style decoder: token and learned position embeddings, pre-LN blocks, a final LayerNorm and
    an LM head tied to the token embedding; random weights from the seed. depth=12, hidden=768,
    heads=12, vocab=50257, max_len=1024 is GPT-2 small's shape (124M parameters)."""

    def __init__(self, vocab: int = 512, hidden: int = 64, depth: int = 2, heads: int = 2, max_len: int = 128,
                 ffn_mult: int = 4):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.vocab_size = vocab
        self.max_len = max_len
        self.heads = heads
        self.head_dim = hidden // heads
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(DecoderBlock(hidden, heads, hidden * ffn_mult) for _ in range(depth))
        self.ln_f = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied, as GPT-2's

    # --- the contract ---------------------------------------------------------------------

    def new_cache(self, batch: int, device: Any = None, dtype: Any = None) -> list[torch.Tensor]:
        """Keys and values for every block: [depth, batch, heads, max_len, head_dim] each."""
        ref = self.head.weight
        shape = (len(self.blocks), batch, self.heads, self.max_len, self.head_dim)
        return [torch.zeros(shape, device=device or ref.device, dtype=dtype or ref.dtype) for _ in range(2)]

    def prefill(self, input_ids: torch.Tensor, cache: list[torch.Tensor]) -> torch.Tensor:
        s = input_ids.shape[1]
        x = self._embed(input_ids, torch.arange(s, device=input_ids.device))
        mask = causal_mask(s, s, 0, input_ids.device)
        for i, block in enumerate(self.blocks):
            q, k, v = block.project(x)
            cache[0][i, :, :, :s] = k
            cache[1][i, :, :, :s] = v
            x = block.attend(x, q, k, v, mask)
        return self._logits(x[:, -1])

    def decode(self, input_ids: torch.Tensor, position: torch.Tensor, cache: list[torch.Tensor],
               kv_len: int | None = None) -> torch.Tensor:
        where = position.reshape(1)
        x = self._embed(input_ids, where)
        mask = None if kv_len is not None else causal_mask(1, self.max_len, position, input_ids.device)
        for i, block in enumerate(self.blocks):
            q, k, v = block.project(x)
            cache[0][i].index_copy_(2, where, k)
            cache[1][i].index_copy_(2, where, v)
            keys, values = cache[0][i], cache[1][i]
            if kv_len is not None:
                keys, values = keys[:, :, :kv_len], values[:, :, :kv_len]
            x = block.attend(x, q, keys, values, mask)
        return self._logits(x[:, -1])

    # --- a plain forward, for the other scenarios and FLOP counting -------------------------

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of every position of a full sequence, no cache: [B, S, V]."""
        s = input_ids.shape[1]
        x = self._embed(input_ids, torch.arange(s, device=input_ids.device))
        mask = causal_mask(s, s, 0, input_ids.device)
        for block in self.blocks:
            q, k, v = block.project(x)
            x = block.attend(x, q, k, v, mask)
        return self.head(self.ln_f(x))

    def _embed(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.tok(input_ids) + self.pos(positions)[None]

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln_f(last))

    def cache_bytes(self, batch: int, bytes_per_element: int) -> int:
        """The analytic size of new_cache(batch): keys and values, every block, max_len positions."""
        return 2 * len(self.blocks) * batch * self.max_len * self.heads * self.head_dim * bytes_per_element


# --- ONNX past/present form ---------------------------------------------------------------------


class OnnxPrefill(nn.Module):
    def __init__(self, decoder: GPTDecoder):
        super().__init__()
        self.d = decoder

    def forward(self, input_ids: torch.Tensor):
        d = self.d
        s = input_ids.shape[1]
        x = d._embed(input_ids, torch.arange(s, device=input_ids.device))
        mask = causal_mask(s, s, 0, input_ids.device)
        presents = []
        for block in d.blocks:
            q, k, v = block.project(x)
            presents += [k, v]
            x = block.attend(x, q, k, v, mask)
        logits = d._logits(x[:, -1])
        return (logits.argmax(dim=-1), logits, *presents)


class OnnxDecode(nn.Module):
    def __init__(self, decoder: GPTDecoder):
        super().__init__()
        self.d = decoder

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor):
        d = self.d
        t = past[0].shape[2]
        x = d._embed(input_ids, torch.arange(1, device=input_ids.device) + t)
        presents = []
        for i, block in enumerate(d.blocks):
            q, k, v = block.project(x)
            keys = torch.cat([past[2 * i], k], dim=2)
            values = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [keys, values]
            x = block.attend(x, q, keys, values, None)
        logits = d._logits(x[:, -1])
        return (logits.argmax(dim=-1), logits, *presents)


def export_onnx(module: nn.Module, prefill_path: str, decode_path: str, opset: int) -> None:
    """Write the prefill and decode graphs; dynamic batch, prompt and past lengths."""
    import logging
    import warnings

    if not isinstance(module, GPTDecoder):
        raise TypeError(f"{type(module).__name__} has no ONNX past/present form (only the zoo decoder does)")
    depth = len(module.blocks)
    past_names, present_names = onnx_names(depth)
    outputs = ["next_token", "logits", *present_names]
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    # Examples of sizes > 1, so that export keeps each axis symbolic (sizes 0 and 1 specialise).
    prompt = torch.export.Dim("prompt", min=1, max=module.max_len)
    past_len = torch.export.Dim("past", min=1, max=module.max_len - 1)
    ids = torch.zeros(2, 3, dtype=torch.int64)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(OnnxPrefill(module).eval(), (ids,), prefill_path, dynamo=True, external_data=False,
                          opset_version=opset, verbose=False, input_names=["input_ids"], output_names=outputs,
                          dynamic_shapes=({0: batch, 1: prompt},))
        past = tuple(torch.zeros(2, module.heads, 3, module.head_dim) for _ in past_names)
        torch.onnx.export(OnnxDecode(module).eval(), (ids[:, :1], *past), decode_path, dynamo=True,
                          external_data=False, opset_version=opset, verbose=False,
                          input_names=["input_ids", *past_names], output_names=outputs,
                          dynamic_shapes=({0: batch}, tuple({0: batch, 2: past_len} for _ in past_names)))
