"""Built-in models with random weights, built locally (never downloaded).

Each entry builds a torch module from keyword arguments (depth, width, sequence length, ...)
and gives its input spec. Weights come from torch's RNG seeded by the benchmark's seed, so
every process that builds the same entry gets the same weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from bench.models.decoder import GPTDecoder
from bench.models.inputs import InputSpec


class MLP(nn.Module):
    def __init__(self, in_features: int = 256, width: int = 512, depth: int = 3, classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.GELU()]
            d = width
        layers.append(nn.Linear(d, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    """1x1 projection when a block changes shape; None keeps the identity."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + identity)


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int = 4):
        super().__init__()
        mid = c_out // expansion
        self.conv1 = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.down = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + identity)


class ResNet(nn.Module):
    """ResNet-style CNN. `blocks` per stage; `width` is the first stage's channels, doubled per stage.

    bottleneck=True with blocks="3,4,6,3", width=256 and image=224 is ResNet-50's shape, its
    ImageNet stem included (7x7 stride-2 convolution and a stride-2 max-pool: 4.1 G multiply-adds
    per 224x224 image, as torchvision's resnet50). The basic-block form keeps a CIFAR-style stem
    (3x3, stride 1) for small images.
    """

    def __init__(self, width: int = 16, blocks: str = "1,1,1", image: int = 32, classes: int = 10,
                 bottleneck: bool = False):
        super().__init__()
        stem = max(width // 4, 16) if bottleneck else width
        if bottleneck:
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        stages: list[nn.Module] = []
        c_in = stem
        for s, n in enumerate(int(b) for b in str(blocks).split(",")):
            c_out = width * 2**s
            for j in range(n):
                stride = 2 if (j == 0 and s > 0) else 1
                stages.append((Bottleneck if bottleneck else BasicBlock)(c_in, c_out, stride))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, classes)
        # Random BatchNorm statistics, so the normalisation is not an identity.
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(self.stem(x))
        return self.head(y.mean(dim=(2, 3)))


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln1 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))
        self.ln2 = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(h // self.heads), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + self.proj(y))
        return self.ln2(x + self.ff(x))


class BertEncoder(nn.Module):
    """BERT-style encoder: token + position embeddings, post-LN layers, first-token pooler.

    depth=12, hidden=768, heads=12, seq_len=128 is BERT-base's shape.
    """

    def __init__(self, vocab: int = 1000, hidden: int = 128, depth: int = 2, heads: int = 2,
                 seq_len: int = 32, ffn_mult: int = 4):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(torch.randn(seq_len, hidden) * 0.02)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.Sequential(*(EncoderLayer(hidden, heads, hidden * ffn_mult) for _ in range(depth)))
        self.pool = nn.Linear(hidden, hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.ln(self.tok(input_ids) + self.pos)
        x = self.layers(x)
        return torch.tanh(self.pool(x[:, 0]))


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[..., nn.Module]
    inputs: Callable[[dict[str, Any]], tuple[InputSpec, ...]]
    defaults: dict[str, Any]


def _mlp_inputs(a: dict[str, Any]) -> tuple[InputSpec, ...]:
    return (InputSpec("x", (a["in_features"],)),)


def _resnet_inputs(a: dict[str, Any]) -> tuple[InputSpec, ...]:
    return (InputSpec("pixels", (3, a["image"], a["image"])),)


def _bert_inputs(a: dict[str, Any]) -> tuple[InputSpec, ...]:
    return (InputSpec("input_ids", (a["seq_len"],), "int64", 0, a["vocab"]),)


def _decoder_inputs(a: dict[str, Any]) -> tuple[InputSpec, ...]:
    # A plain forward (single-stream and the other scenarios) runs over a prompt of up to 64 tokens.
    return (InputSpec("input_ids", (min(a["max_len"], 64),), "int64", 0, a["vocab"]),)


ZOO: dict[str, ZooEntry] = {
    "mlp": ZooEntry(MLP, _mlp_inputs, dict(in_features=256, width=512, depth=3, classes=10)),
    "resnet-mini": ZooEntry(ResNet, _resnet_inputs, dict(width=16, blocks="1,1,1", image=32, classes=10, bottleneck=False)),
    "resnet50-like": ZooEntry(ResNet, _resnet_inputs, dict(width=256, blocks="3,4,6,3", image=224, classes=1000, bottleneck=True)),
    "bert-mini": ZooEntry(BertEncoder, _bert_inputs, dict(vocab=1000, hidden=128, depth=2, heads=2, seq_len=32, ffn_mult=4)),
    "bert-base-like": ZooEntry(BertEncoder, _bert_inputs, dict(vocab=30522, hidden=768, depth=12, heads=12, seq_len=128, ffn_mult=4)),
    # GPT-style decoders with a KV cache (bench.models.decoder): the generate scenario's models.
    "decoder": ZooEntry(GPTDecoder, _decoder_inputs, dict(vocab=512, hidden=64, depth=2, heads=2, max_len=128, ffn_mult=4)),
    "gpt2-like": ZooEntry(GPTDecoder, _decoder_inputs, dict(vocab=50257, hidden=768, depth=12, heads=12, max_len=1024, ffn_mult=4)),
}


def resolve_args(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The entry's defaults with overrides applied; raises KeyError/TypeError on bad names/types."""
    entry = ZOO[name]
    unknown = sorted(set(overrides) - set(entry.defaults))
    if unknown:
        raise TypeError(f"unknown model_args {unknown} (allowed: {', '.join(sorted(entry.defaults))})")
    args = dict(entry.defaults)
    for k, v in overrides.items():
        if type(v) is not type(entry.defaults[k]) and not (isinstance(v, int) and isinstance(entry.defaults[k], float)):
            raise TypeError(f"model_args.{k} = {v!r}: expected {type(entry.defaults[k]).__name__}")
        # Every integer of a zoo model is a size or a count: below 1 the model degenerates (a
        # depth of -1 built an empty stack that ran and was timed as if it were the model).
        if type(v) is int and v < 1:
            raise ValueError(f"model_args.{k} = {v!r}: expected an integer >= 1")
        args[k] = v
    return args


def build(name: str, args: dict[str, Any], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = ZOO[name].build(**args)
    return module.eval()
