"""What the benchmark measures: suites of depthwise layers, the separable-vs-standard comparison
and whole models. Each suite is a list of items; the runner measures each item by its type
(Layer, SeparableCase, ModelCase). Shapes are those of the real networks at 224x224 input."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple, Union

# Batch sizes: full runs use 32 for kernels up to 7x7 and 16 for the large-kernel layers; --quick
# uses 8 and 1 (and a subset of the layers, marked q below).
FULL_BATCH, FULL_BATCH_LARGE_K = 32, 16
QUICK_BATCH, QUICK_BATCH_LARGE_K = 8, 1


@dataclasses.dataclass(frozen=True)
class Layer:
    """A depthwise conv2d: (n, c, h, w) input, k x k, stride, c * multiplier outputs, 'same'-style
    padding dilation*(k-1)//2. ``count``: how many times the network uses this shape."""

    n: int
    c: int
    h: int
    w: int
    k: int
    stride: int = 1
    dilation: int = 1
    multiplier: int = 1
    bias: bool = False
    count: int = 1

    @property
    def oc(self) -> int:
        return self.c * self.multiplier

    @property
    def padding(self) -> int:
        return self.dilation * (self.k - 1) // 2

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.padding - self.dilation * (self.k - 1) - 1) // self.stride + 1

    @property
    def label(self) -> str:
        s = f"{self.c}x{self.h}x{self.w} k{self.k} s{self.stride}"
        if self.dilation != 1:
            s += f" d{self.dilation}"
        if self.multiplier != 1:
            s += f" m{self.multiplier}"
        return s

    @property
    def key(self) -> Tuple:
        """Identity of the measurement (a shape shared by two suites is measured once)."""
        return (self.n, self.c, self.h, self.w, self.k, self.stride, self.dilation, self.multiplier, self.bias)


@dataclasses.dataclass(frozen=True)
class SeparableCase:
    """k x k standard conv C -> C versus depthwise k x k + pointwise 1x1 C -> C, stride 1."""

    n: int
    c: int
    h: int
    w: int
    k: int = 3

    @property
    def label(self) -> str:
        return f"{self.c}x{self.h}x{self.w} k{self.k}"


@dataclasses.dataclass(frozen=True)
class ModelCase:
    """A torchvision model (weights=None) or a model named in bench.models.BUILDERS."""

    model: str
    n: int
    size: int

    @property
    def label(self) -> str:
        return f"{self.model} {self.n}x3x{self.size}x{self.size}"


Item = Union[Layer, SeparableCase, ModelCase]


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    full: Tuple[Item, ...]
    quick: Tuple[Item, ...]
    hidden: bool = False  # not part of 'all' nor listed in --help (test fixtures)

    def items(self, quick: bool) -> Tuple[Item, ...]:
        return self.quick if quick else self.full


def _layers(spec: Sequence[Tuple], bias: bool = False) -> Tuple[Tuple[Layer, ...], Tuple[Layer, ...]]:
    """spec rows: (c, hw, k, stride, count, in_quick). Returns (full, quick) layer tuples."""
    full, quick = [], []
    for c, hw, k, stride, count, in_quick in spec:
        large = k > 7
        full.append(Layer(FULL_BATCH_LARGE_K if large else FULL_BATCH, c, hw, hw, k, stride, bias=bias, count=count))
        if in_quick:
            quick.append(Layer(QUICK_BATCH_LARGE_K if large else QUICK_BATCH, c, hw, hw, k, stride, bias=bias, count=count))
    return tuple(full), tuple(quick)


q, _ = True, False
# (channels, input size, kernel, stride, occurrences in the model, in --quick)
MOBILENET_V1 = _layers([
    (32, 112, 3, 1, 1, _), (64, 112, 3, 2, 1, q), (128, 56, 3, 1, 1, _), (128, 56, 3, 2, 1, _),
    (256, 28, 3, 1, 1, _), (256, 28, 3, 2, 1, _), (512, 14, 3, 1, 5, q), (512, 14, 3, 2, 1, _),
    (1024, 7, 3, 1, 1, _),
])
MOBILENET_V2 = _layers([
    (32, 112, 3, 1, 1, _), (96, 112, 3, 2, 1, _), (144, 56, 3, 1, 1, q), (144, 56, 3, 2, 1, _),
    (192, 28, 3, 1, 2, _), (192, 28, 3, 2, 1, _), (384, 14, 3, 1, 4, _), (576, 14, 3, 1, 2, _),
    (576, 14, 3, 2, 1, _), (960, 7, 3, 1, 3, q),
])
EFFICIENTNET_B0 = _layers([
    (32, 112, 3, 1, 1, _), (96, 112, 3, 2, 1, _), (144, 56, 3, 1, 1, _), (144, 56, 5, 2, 1, _),
    (240, 28, 5, 1, 1, q), (240, 28, 3, 2, 1, _), (480, 14, 3, 1, 2, _), (480, 14, 5, 1, 1, _),
    (672, 14, 5, 1, 2, _), (672, 14, 5, 2, 1, _), (1152, 7, 5, 1, 3, q), (1152, 7, 3, 1, 1, _),
])
# ConvNeXt's depthwise 7x7 convs have a bias.
CONVNEXT_T = _layers([(96, 56, 7, 1, 3, q), (192, 28, 7, 1, 3, _), (384, 14, 7, 1, 9, q), (768, 7, 7, 1, 3, _)], bias=True)
# RepLKNet-31B's large kernels, scaled to stay affordable on a CPU: one 31x31 layer and the 13x13 ones.
REPLKNET_31B = _layers([(256, 32, 31, 1, 1, q), (512, 14, 13, 1, 1, _), (1024, 7, 13, 1, 2, q)])

SEPARABLE = (
    tuple(SeparableCase(FULL_BATCH, c, hw, hw) for c, hw in [(64, 56), (128, 56), (256, 28)]),
    tuple(SeparableCase(QUICK_BATCH, c, hw, hw) for c, hw in [(64, 28), (256, 14)]),
)
MODELS = (
    tuple(ModelCase(m, 8, 224) for m in ("mobilenet_v2", "efficientnet_b0", "convnext_tiny")),
    tuple(ModelCase(m, 2, 128) for m in ("mobilenet_v2", "efficientnet_b0", "convnext_tiny")),
)
# The smallest of each kind, for the smoke test (hidden).
_SMOKE = (Layer(1, 8, 8, 8, 3), SeparableCase(1, 8, 8, 8), ModelCase("tiny", 1, 16))

SUITES: Dict[str, Suite] = {
    s.name: s
    for s in [
        Suite("mobilenet_v1", "MobileNetV1 depthwise 3x3 layers", *MOBILENET_V1),
        Suite("mobilenet_v2", "MobileNetV2 depthwise 3x3 layers", *MOBILENET_V2),
        Suite("efficientnet_b0", "EfficientNet-B0 depthwise 3x3 and 5x5 layers", *EFFICIENTNET_B0),
        Suite("convnext_t", "ConvNeXt-T depthwise 7x7 layers (with bias)", *CONVNEXT_T),
        Suite("replknet_31b", "RepLKNet-31B large kernels: 31x31 and 13x13", *REPLKNET_31B),
        Suite("separable", "3x3 standard conv vs depthwise + pointwise, C -> C", *SEPARABLE),
        Suite("models", "torchvision models end to end: inference and a training step", *MODELS),
        Suite("smoke", "one tiny item of each kind (tests)", _SMOKE, _SMOKE, hidden=True),
    ]
}
DEFAULT_SUITES: List[str] = [name for name, s in SUITES.items() if not s.hidden]


def resolve(names: Sequence[str]) -> List[str]:
    """Expand 'all', split comma lists, drop duplicates, validate."""
    out: List[str] = []
    for entry in names:
        for name in filter(None, (n.strip() for n in entry.split(","))):
            for n in DEFAULT_SUITES if name == "all" else [name]:
                if n not in SUITES:
                    raise ValueError(f"unknown suite {n!r}; choose from {', '.join(DEFAULT_SUITES)} or all")
                if n not in out:
                    out.append(n)
    return out
