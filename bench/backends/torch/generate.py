"""Greedy generation on torch: a decoder (bench.models.decoder) with a static KV cache, in the
target's mode.

  eager      prefill and decode as the module runs them; decode gets kv_len when it takes it, so a
             step reads the cache up to the sequence's length (its cost grows with it);
  compile    the decode step (decode + arg-max) through torch.compile(dynamic=False): one graph per
             batch size, the cache a static buffer it updates in place; prefill eager;
  cudagraph  the decode step captured once per batch size in a CUDA graph over static buffers
             (ids, position, cache, logits, next token), as torch's documentation does for
             whole-network capture; each step copies the tokens in, replays, and copies the next
             tokens out. Prefill eager (prompts vary in length; the graph is for the per-token step,
             where launch overhead dominates).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bench.backends.torch.modes import GRAPH_WARMUP_ITERATIONS
from bench.errors import CellFailure
from bench.models.decoder import accepts_kv_len, contract_problem


class TorchGenerator:
    cache_source = "the decoder's new_cache() tensors (static, max_len positions), their bytes summed"

    def __init__(self, module: torch.nn.Module, batch: int, device: torch.device, dtype: torch.dtype, mode: str,
                 context: Any, compile_mode: str = "default"):
        problem = contract_problem(module)
        if problem:
            raise CellFailure(f"the model is not a decoder: its module {type(module).__name__} {problem}")
        if mode != "eager" and not getattr(module, "static_cache", True):
            raise CellFailure(f"mode {mode!r} needs a decoder with a static cache; {type(module).__name__} grows its "
                              "cache each step (run it with mode = \"eager\")", kind="unsupported")
        self.module = module
        self.batch = batch
        self.device = device
        self.mode = mode
        # CUDA-graph tensors are made outside inference_mode: a tensor made inside cannot be updated
        # in place outside it later (pytorch#166792); no_grad runs no autograd all the same.
        self.context = (lambda: torch.no_grad()) if mode == "cudagraph" else context
        self.max_len = int(module.max_len)
        self.vocab = int(module.vocab_size)
        with self.context():
            self.cache = module.new_cache(batch, device, dtype)
            self.ids = torch.zeros(batch, 1, dtype=torch.int64, device=device)
            self.position = torch.zeros((), dtype=torch.int64, device=device)
        if callable(getattr(self.cache, "nbytes", None)):
            self.cache_source = "the decoder's own cache object (it grows with the sequence), its tensors' bytes"
        self.length = 0  # tokens in the cache
        self._kv_len = mode == "eager" and accepts_kv_len(module)
        self._logits: torch.Tensor | None = None
        self._graph = None
        self._next: torch.Tensor | None = None
        self._step = None
        if mode == "compile":
            from torch import _dynamo

            _dynamo.config.recompile_limit = max(_dynamo.config.recompile_limit, 64)

            def step(ids, position, cache):
                logits = module.decode(ids, position, cache)
                return logits, logits.argmax(dim=-1)

            self._step = torch.compile(step, mode=compile_mode, dynamic=False)

    def cache_bytes(self) -> int:
        own = getattr(self.cache, "nbytes", None)
        if callable(own):  # a cache object that counts itself (bench.models.hf)
            return int(own())
        return int(sum(t.numel() * t.element_size() for t in self.cache))

    def _host(self, t: torch.Tensor) -> np.ndarray:
        return t.to("cpu").numpy().astype(np.int64, copy=False)

    def prefill(self, input_ids: np.ndarray) -> np.ndarray:
        prompt = input_ids.shape[1]
        if prompt >= self.max_len:
            raise CellFailure(f"a prompt of {prompt} tokens leaves no room to generate in max_len {self.max_len}")
        with self.context():
            ids = torch.from_numpy(np.ascontiguousarray(input_ids)).to(self.device)
            logits = self.module.prefill(ids, self.cache)
            self._logits = logits
            out = self._host(logits.argmax(dim=-1))
        self.length = prompt
        return out

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        if self.length >= self.max_len:
            raise CellFailure(f"generation ran past the decoder's max_len {self.max_len}")
        with self.context():
            host = torch.from_numpy(np.ascontiguousarray(tokens).reshape(self.batch, 1))
            if self.mode == "cudagraph":
                if self._graph is None:
                    self._capture()
                self.ids.copy_(host)
                self.position.fill_(self.length)
                self._graph.replay()
                self._logits = self._static_logits
                out = self._host(self._next)
            elif self.mode == "compile":
                self.ids.copy_(host)
                self.position.fill_(self.length)
                logits, nxt = self._step(self.ids, self.position, self.cache)
                self._logits = logits
                out = self._host(nxt)
            else:
                ids = host.to(self.device)
                position = torch.tensor(self.length, dtype=torch.int64, device=self.device)
                if self._kv_len:
                    logits = self.module.decode(ids, position, self.cache, kv_len=self.length + 1)
                else:
                    logits = self.module.decode(ids, position, self.cache)
                self._logits = logits
                out = self._host(logits.argmax(dim=-1))
        self.length += 1
        return out

    def _capture(self) -> None:
        """The decode step's graph, captured after side-stream warm-up (torch's recipe). Warm-up
        and capture write keys and values at the current position, which the replay that follows
        writes again: the cache holds what an uncaptured step would have left."""
        self.position.fill_(self.length)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_ITERATIONS):
                self.module.decode(self.ids, self.position, self.cache)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_logits = self.module.decode(self.ids, self.position, self.cache)
            self._next = self._static_logits.argmax(dim=-1)
        torch.cuda.synchronize(self.device)
        self._graph = graph

    def last_logits(self) -> np.ndarray:
        if self._logits is None:
            return np.zeros(0)
        return self._logits[0].detach().to(torch.float64).cpu().numpy()
