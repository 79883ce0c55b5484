"""Tiny user models for the inputs tests, built in tmp_path: a BERT-like ONNX graph (input_ids and
attention_mask with a dynamic batch and sequence, a position table of MAX_POSITIONS rows) and an
MLP exported by torch with its weights in a side file (model.onnx + model.onnx.data)."""
from __future__ import annotations

from pathlib import Path

VOCAB = 50
MAX_POSITIONS = 32

BERT_SOURCE = f'''
import torch


class TinyBert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding({VOCAB}, 16)
        self.pos = torch.nn.Embedding({MAX_POSITIONS}, 16)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask):
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        h = self.tok(input_ids) + self.pos(positions)
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.out((h * m).sum(1) / m.sum(1))


def make():
    ids = torch.randint(0, {VOCAB}, (2, 8))
    return TinyBert(), (ids, torch.ones_like(ids))
'''


def bert_onnx(directory: Path) -> Path:
    """The BERT-like model as ONNX, exported by torch with the batch and `seq` dynamic."""
    import sys

    import torch

    (directory / "tinybert.py").write_text(BERT_SOURCE)
    sys.path.insert(0, str(directory))
    try:
        import importlib

        module, example = importlib.import_module("tinybert").make()
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("tinybert", None)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=MAX_POSITIONS)
    path = directory / "bert.onnx"
    torch.onnx.export(module.eval(), example, str(path), dynamo=True, external_data=False,
                      input_names=["input_ids", "attention_mask"],
                      dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    return path


def mlp_with_external_data(directory: Path) -> Path:
    """A torch MLP exported as model.onnx with its weights in model.onnx.data beside it."""
    import onnx
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    path = directory / "model.onnx"
    torch.onnx.export(module, (torch.randn(2, 8),), str(path), dynamo=True, external_data=True,
                      input_names=["x"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    if not (directory / "model.onnx.data").exists():  # small weights may be inlined: move them out
        model = onnx.load(str(path))
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=0)
    assert (directory / "model.onnx.data").exists()
    return path
