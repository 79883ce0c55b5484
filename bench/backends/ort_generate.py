"""Greedy generation on ONNX Runtime: the decoder's prefill and decode graphs (past/present
convention, bench.models.decoder), with the cache kept in place between steps.

Every call runs with IOBinding: the present_* outputs stay OrtValues on the target's device (the
GPU on cuda) and are bound as the next step's past_* inputs, so the cache never crosses to the
host; only the step's next_token (the arg-max, computed in the graph) is copied out. ORT allocates
each step's presents (one position longer than the pasts), as a past/present graph requires: the
cost of a concatenated cache, which grows with the sequence, is part of what this target measures.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from bench.models.decoder_io import onnx_names

_ITEM_BYTES = {"tensor(float)": 4, "tensor(float16)": 2, "tensor(bfloat16)": 2, "tensor(double)": 8}


class OrtGenerator:
    cache_source = "the present_* OrtValues of the last step (past/present graphs), their bytes summed"

    def __init__(self, prefill: ort.InferenceSession, decode: ort.InferenceSession, batch: int, device: str,
                 device_id: int, max_len: int):
        self.prefill_session = prefill
        self.decode_session = decode
        self.batch = batch
        self.device = device
        self.device_id = device_id
        self.max_len = max_len
        self.past_names, self.present_names = onnx_names(len(prefill.get_outputs()) // 2 - 1)
        self._outputs = [o.name for o in prefill.get_outputs()]
        self._item = _ITEM_BYTES.get(prefill.get_outputs()[1].type, 4)
        self.vocab = int(prefill.get_outputs()[1].shape[-1])
        self._past: list[Any] = []
        self._logits: Any = None
        self.length = 0

    def _run(self, session: ort.InferenceSession, ids: np.ndarray, past: list[Any]) -> np.ndarray:
        binding = session.io_binding()
        binding.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(ids, dtype=np.int64), self.device, self.device_id))
        for name, value in zip(self.past_names, past):
            binding.bind_ortvalue_input(name, value)
        for name in self._outputs:
            binding.bind_output(name, self.device, self.device_id)
        session.run_with_iobinding(binding)
        out = binding.get_outputs()
        self._logits = out[1]
        self._past = list(out[2:])
        return np.asarray(out[0].numpy(), dtype=np.int64)

    def prefill(self, input_ids: np.ndarray) -> np.ndarray:
        from bench.errors import CellFailure

        if input_ids.shape[1] >= self.max_len:
            raise CellFailure(f"a prompt of {input_ids.shape[1]} tokens leaves no room to generate in "
                              f"max_len {self.max_len}")
        self.length = input_ids.shape[1]
        return self._run(self.prefill_session, input_ids, [])

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        from bench.errors import CellFailure

        if self.length >= self.max_len:
            raise CellFailure(f"generation ran past the decoder's max_len {self.max_len}")
        out = self._run(self.decode_session, np.asarray(tokens).reshape(self.batch, 1), self._past)
        self.length += 1
        return out

    def last_logits(self) -> np.ndarray:
        if self._logits is None:
            return np.zeros(0)
        return np.asarray(self._logits.numpy()[0], dtype=np.float64)

    def cache_bytes(self) -> int:
        return int(sum(int(np.prod(v.shape())) * self._item for v in self._past))
