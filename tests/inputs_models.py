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


def _export(directory: Path, script: str) -> None:
    """Run an export in its own interpreter: torch's exporter attaches a log handler to the stderr
    it finds, which under pytest is a capture that later closes."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], cwd=directory, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]


def bert_onnx(directory: Path) -> Path:
    """The BERT-like model as ONNX, exported by torch with the batch and `seq` dynamic."""
    (directory / "tinybert.py").write_text(BERT_SOURCE)
    _export(directory, f"""
import torch, tinybert
module, example = tinybert.make()
batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max={MAX_POSITIONS})
torch.onnx.export(module.eval(), example, "bert.onnx", dynamo=True, external_data=False, verbose=False,
                  input_names=["input_ids", "attention_mask"], dynamic_shapes=({{0: batch, 1: seq}}, {{0: batch, 1: seq}}))
""")
    return directory / "bert.onnx"


def mlp_with_external_data(directory: Path) -> Path:
    """A torch MLP exported by torch as model.onnx with its weights in model.onnx.data beside it."""
    _export(directory, """
import onnx, os, torch
torch.manual_seed(0)
module = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
torch.onnx.export(module, (torch.randn(2, 8),), "model.onnx", dynamo=True, external_data=True, verbose=False,
                  input_names=["x"], dynamic_shapes=({0: torch.export.Dim("batch")},))
if not os.path.exists("model.onnx.data"):  # small weights may be inlined: move them out
    onnx.save_model(onnx.load("model.onnx"), "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=0)
""")
    assert (directory / "model.onnx.data").exists()
    return directory / "model.onnx"
