"""Built-in models with random weights, built locally (never downloaded).

Each entry builds a torch module from keyword arguments (depth, width, sequence length, ...)
and gives its input spec. Weights come from torch's RNG seeded by the benchmark's seed, so
every process that builds the same entry gets the same weights.
"""
from __future__ import annotations

import copy
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
    per 224x224 image, as torchvision's resnet50). `stem` picks the stem: "imagenet" (that one) or
    "cifar" (3x3, stride 1, for small images); left empty it is "imagenet" for bottleneck blocks
    and "cifar" for basic ones. Basic blocks with stem="imagenet", blocks="2,2,2,2", width=64 and
    image=224 are torchvision's resnet18 (11,689,512 parameters, 1.82 G multiply-adds per image).

    init="torch" keeps torch's default layer initialisation; "torchvision" is torchvision's
    (Kaiming normal, fan_out, for the convolutions). centre=True sets the classifier's bias so the
    logits of noise images average zero (see centre_logits): without it a deep random network's
    top-1 is the same class for every N(0, 1) input. The defaults keep the zoo's older entries
    (resnet-mini, resnet50-like) exactly as they were, weights included.
    """

    def __init__(self, width: int = 16, blocks: str = "1,1,1", image: int = 32, classes: int = 10,
                 bottleneck: bool = False, stem: str = "", init: str = "torch", centre: bool = False):
        super().__init__()
        stem = stem or ("imagenet" if bottleneck else "cifar")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem {stem!r}: expected 'imagenet' or 'cifar'")
        if init not in ("torch", "torchvision"):
            raise ValueError(f"init {init!r}: expected 'torch' or 'torchvision'")
        c_stem = max(width // 4, 16) if bottleneck else width
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 7, 2, 3, bias=False), nn.BatchNorm2d(c_stem), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem), nn.ReLU())
        stages: list[nn.Module] = []
        c_in = c_stem
        for s, n in enumerate(int(b) for b in str(blocks).split(",")):
            c_out = width * 2**s
            for j in range(n):
                stride = 2 if (j == 0 and s > 0) else 1
                stages.append((Bottleneck if bottleneck else BasicBlock)(c_in, c_out, stride))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, classes)
        if init == "torchvision":
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        _random_bn_stats(self)
        if centre:
            centre_logits(self, self.head, image)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stages(self.stem(x))
        return self.head(y.mean(dim=(2, 3)))


def _random_bn_stats(module: nn.Module) -> None:
    """Random BatchNorm statistics, so the normalisation is not an identity."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


def centre_logits(module: nn.Module, head: nn.Linear, image: int, samples: int = 4) -> None:
    """Set `head`'s bias so the logits of `samples` N(0, 1) images (the zoo's pixel inputs) average zero.

    Why: global average pooling of i.i.d. noise averages the per-image part of the features away
    (law of large numbers), while every ReLU and max-pool adds a part that is the same for every
    image. In torchvision's resnet18 with random weights the per-image spread of the logits was
    ~3% of their spread across classes, so top-1 was one class for all 16 of 16 inputs and a top-1
    agreement figure meaningless. Subtracting the shared part leaves the per-image part.

    With 4 probe images the part left shared is about half the per-image part (its error falls as
    1/sqrt(samples)): top-1 was 13-16 classes of 16 inputs over seeds 0-4 for both CNNs.

    The probe images come from torch's RNG after the weights are drawn (the weights do not depend
    on it). They run through a float64 copy, and the bias is rounded to a multiple of 2^-16: the
    summation order (threads, CPU, BLAS) moves a float64 result by ~1e-14, so a bias lands on
    another multiple about once in 10^9, and every process and machine gets the same bits, which
    the model's content hash (its ONNX cache entry, its results' series) relies on. A float32 probe
    would differ in the last bits between machines, and so would the hash.
    """
    probe = torch.randn(samples, 3, image, image, dtype=torch.float32)
    twin = copy.deepcopy(module).double().eval()
    twin_head = twin.get_submodule(next(n for n, m in module.named_modules() if m is head))
    seen: list[torch.Tensor] = []
    hook = twin_head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            twin(probe.double())
    finally:
        hook.remove()
    mean = seen[0].mean(dim=0)
    with torch.no_grad():
        bias = -(twin_head.weight @ mean)
        head.bias.copy_((bias * 2**16).round() / 2**16)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: to a multiple of `divisor`, never more than 10% down."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_act(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = None) -> nn.Sequential:
    """torchvision's Conv2dNormActivation with MobileNetV3's BatchNorm (eps 0.001), its weights
    Kaiming normal over fan_in: the ReLU gain before an activation, 1 before none (a projection)."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear" if act is None else "relu")
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(c_out, eps=0.001, momentum=0.01)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        nn.init.kaiming_normal_(self.fc1.weight, mode="fan_in", nonlinearity="relu")
        nn.init.kaiming_normal_(self.fc2.weight, mode="fan_in", nonlinearity="linear")
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.fc2(s))


class InvertedResidual(nn.Module):
    """MobileNetV3's block: 1x1 expansion, depthwise k x k, optional squeeze-excite, 1x1 projection."""

    def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, se: bool, act: str, stride: int):
        super().__init__()
        a = nn.Hardswish if act == "HS" else nn.ReLU
        self.residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(_conv_bn_act(c_in, expanded, 1, act=a))
        layers.append(_conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=a))
        if se:
            layers.append(SqueezeExcite(expanded, _make_divisible(expanded // 4, 8)))
        layers.append(_conv_bn_act(expanded, c_out, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# torchvision's mobilenet_v3_large table (Howard et al. 2019, table 1): input channels, kernel,
# expanded channels, output channels, squeeze-excite, activation (RE: ReLU, HS: Hardswish), stride.
MOBILENET_V3_LARGE = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)


class MobileNetV3(nn.Module):
    """torchvision's mobilenet_v3_large, layer for layer: 5,483,032 parameters and 0.217 G
    multiply-adds per 224x224 image with classes=1000. Dropout(0.2) before the last Linear is a
    no-op in eval mode (and in the exported graph).

    Initialised as torchvision does (N(0, 0.01) Linear weights, zero biases) but for the
    convolutions: Kaiming normal over fan_in (the ReLU gain before an activation, 1 before none)
    rather than torchvision's fan_out with the ReLU gain everywhere. For a depthwise convolution
    fan_out counts every channel (channels x k x k, for filters that each see one channel), and with
    random BatchNorm statistics (which, unlike trained ones, do not undo it) the signal shrank
    ~channels-fold per block: the logits were the same to 1e-9 for every input. fan_in with the
    ReLU gain everywhere grew the activations ~400-fold over the 17 stages; as here their rms stays
    within 1-10 (N(0, 1) input). With centre=True the last Linear's bias centres the logits
    (centre_logits).
    """

    def __init__(self, image: int = 224, classes: int = 1000, centre: bool = True):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_act(3, 16, 3, 2, act=nn.Hardswish)]
        layers += [InvertedResidual(*row) for row in MOBILENET_V3_LARGE]
        layers.append(_conv_bn_act(160, 960, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(960, 1280), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(1280, classes))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        _random_bn_stats(self)
        if centre:
            centre_logits(self, self.classifier[-1], image)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


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
    """A zoo model: its builder, input specs from its args, its default args, and `output_kind`,
    the accuracy metric its output fits: "top1" for class (or next-token) logits, "cosine" for an
    embedding (the BERT encoders' pooled output)."""

    build: Callable[..., nn.Module]
    inputs: Callable[[dict[str, Any]], tuple[InputSpec, ...]]
    defaults: dict[str, Any]
    output_kind: str = "top1"


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
    # torchvision's resnet18 and mobilenet_v3_large, layer for layer, with random weights.
    # (11.7 M parameters, 1.82 G multiply-adds; 5.5 M, 0.22 G per 224x224 image)
    "resnet18": ZooEntry(ResNet, _resnet_inputs, dict(
        width=64, blocks="2,2,2,2", image=224, classes=1000, bottleneck=False, stem="imagenet", init="torchvision",
        centre=True)),
    "mobilenet-v3": ZooEntry(MobileNetV3, _resnet_inputs, dict(image=224, classes=1000, centre=True)),
    # The encoders' output is a pooled embedding: compared by cosine similarity, not top-1.
    "bert-mini": ZooEntry(BertEncoder, _bert_inputs, dict(
        vocab=1000, hidden=128, depth=2, heads=2, seq_len=32, ffn_mult=4), "cosine"),
    "bert-base-like": ZooEntry(BertEncoder, _bert_inputs, dict(
        vocab=30522, hidden=768, depth=12, heads=12, seq_len=128, ffn_mult=4), "cosine"),
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
