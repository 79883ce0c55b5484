"""The names of a decoder's ONNX past/present inputs and outputs (no torch here: an onnxruntime
worker that generates imports this, and only this, of the decoder's side)."""
from __future__ import annotations


def onnx_names(depth: int) -> tuple[list[str], list[str]]:
    """(past input names, present output names) in the graphs' order: key then value per block."""
    past = [f"past_{kind}_{i}" for i in range(depth) for kind in ("key", "value")]
    return past, [p.replace("past_", "present_") for p in past]
