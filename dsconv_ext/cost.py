"""Arithmetic cost of convolution layers and models: multiply-adds (MACs) and parameters.

Closed forms, per input sample, for one layer (``h``, ``w`` are the *input* size; padding defaults
to ``dilation * (k - 1) // 2``, i.e. 'same' for odd k, so a stride-s layer outputs ceil(h / s)):

    standard   k x k, c_in -> c_out        MACs = c_in * c_out * k^2 * oh * ow
    depthwise  k x k, c -> c * m           MACs = c * m * k^2 * oh * ow
    pointwise  1 x 1, c_in -> c_out        MACs = c_in * c_out * oh * ow
    separable  depthwise k x k then pointwise at the depthwise output size

so separable / standard = 1 / c_out + 1 / k^2 (``separable_ratio``): 0.115 (8.7x fewer) for k=3,
c_out=256. A multiply-add is 2 FLOPs (``Cost.flops``). Bias additions are not counted as MACs
(the usual convention: the MobileNet papers' 569M / 300M figures); bias parameters are.

``model_cost(model, input_size)`` measures any nn.Module by running one forward pass with hooks on
Conv1d/2d/3d (any groups, stride, dilation, padding) and Linear; parameters are counted once each
(shared parameters once) over ``model.parameters()``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

IntOrPair = Union[int, Sequence[int]]

__all__ = [
    "Cost",
    "conv_out_size",
    "conv_cost",
    "standard_cost",
    "depthwise_cost",
    "pointwise_cost",
    "separable_cost",
    "separable_ratio",
    "model_cost",
]


@dataclasses.dataclass(frozen=True)
class Cost:
    """Multiply-adds and parameter count. Costs add (``a + b``) and scale by an int (``cost * n``)."""

    macs: int = 0
    params: int = 0

    @property
    def flops(self) -> int:
        """2 FLOPs (a multiply and an add) per multiply-add."""
        return 2 * self.macs

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.params + other.params)

    def __mul__(self, n: int) -> "Cost":
        return Cost(self.macs * n, self.params * n)

    __rmul__ = __mul__

    def __str__(self) -> str:
        return f"{self.macs / 1e6:.2f}M MACs, {self.params / 1e6:.3f}M params"


def _pair(v: IntOrPair) -> Tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def conv_out_size(size: int, k: int, stride: int = 1, padding: Optional[int] = None, dilation: int = 1) -> int:
    """Output length of a convolution along one dimension (padding None: dilation*(k-1)//2)."""
    if padding is None:
        padding = dilation * (k - 1) // 2
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def conv_cost(
    c_in: int,
    c_out: int,
    k: IntOrPair,
    h: int,
    w: int,
    groups: int = 1,
    stride: IntOrPair = 1,
    padding: Optional[IntOrPair] = None,
    dilation: IntOrPair = 1,
    bias: bool = False,
) -> Cost:
    """A Conv2d(c_in, c_out, k, stride, padding, dilation, groups, bias) on a (c_in, h, w) input."""
    if c_in % groups or c_out % groups:
        raise ValueError(f"channels ({c_in}, {c_out}) must be divisible by groups={groups}")
    (kh, kw), (sh, sw), (dh, dw) = _pair(k), _pair(stride), _pair(dilation)
    ph, pw = (None, None) if padding is None else _pair(padding)
    oh = conv_out_size(h, kh, sh, ph, dh)
    ow = conv_out_size(w, kw, sw, pw, dw)
    weights = c_out * (c_in // groups) * kh * kw
    return Cost(macs=weights * oh * ow, params=weights + (c_out if bias else 0))


def standard_cost(c_in: int, c_out: int, k: IntOrPair, h: int, w: int, **kw) -> Cost:
    """A dense k x k convolution (groups=1)."""
    return conv_cost(c_in, c_out, k, h, w, groups=1, **kw)


def depthwise_cost(c: int, k: IntOrPair, h: int, w: int, multiplier: int = 1, **kw) -> Cost:
    """A depthwise k x k convolution, c -> c * multiplier channels (groups=c)."""
    return conv_cost(c, c * multiplier, k, h, w, groups=c, **kw)


def pointwise_cost(c_in: int, c_out: int, h: int, w: int, bias: bool = False) -> Cost:
    """A 1 x 1 convolution."""
    return conv_cost(c_in, c_out, 1, h, w, bias=bias)


def separable_cost(
    c_in: int, c_out: int, k: IntOrPair, h: int, w: int, stride: IntOrPair = 1, dilation: IntOrPair = 1, bias: bool = False
) -> Cost:
    """Depthwise k x k (with the stride) followed by a pointwise c_in -> c_out at the output size."""
    (kh, kw), (sh, sw), (dh, dw_) = _pair(k), _pair(stride), _pair(dilation)
    dw = depthwise_cost(c_in, (kh, kw), h, w, stride=(sh, sw), dilation=(dh, dw_), bias=bias)
    oh, ow = conv_out_size(h, kh, sh, None, dh), conv_out_size(w, kw, sw, None, dw_)
    return dw + pointwise_cost(c_in, c_out, oh, ow, bias=bias)


def separable_ratio(c_out: int, k: int) -> float:
    """MACs of a depthwise-separable layer over a standard one with the same k, c_out (stride 1):
    1/c_out + 1/k^2. Its inverse is the theoretical speed-up (8.7x for k=3, c_out=256)."""
    return 1.0 / c_out + 1.0 / k**2


_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # not ConvTranspose: its MACs follow the input's size


def _conv_hook_macs(module: nn.Module, output: torch.Tensor) -> int:
    # Every output element costs (c_in / groups) * prod(kernel) multiply-adds; stride, dilation
    # and padding are all in the output's shape.
    per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return output.numel() * per_output


def _separable_weights(module: nn.Module):
    """(dw_weight, pw_weight) of dsconv's separable blocks (DepthwiseSeparableConv2d,
    FusedSeparableConv2d), whose eval forward is one fused op; None for anything else."""
    dw, pw = getattr(module, "dw", None), getattr(module, "pw", None)
    if isinstance(dw, nn.Conv2d) and isinstance(pw, nn.Conv2d) and hasattr(module, "pw_activation"):
        return dw.weight, pw.weight
    dw_w, pw_w = getattr(module, "dw_weight", None), getattr(module, "pw_weight", None)
    if isinstance(dw_w, torch.Tensor) and isinstance(pw_w, torch.Tensor) and dw_w.dim() == 4 and pw_w.dim() == 4:
        return dw_w, pw_w
    return None


def _separable_block_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Depthwise k*k*C plus pointwise C*Cout multiply-adds per output pixel."""
    dw_w, pw_w = _separable_weights(module)
    pixels = output.shape[0] * output.shape[-2] * output.shape[-1]
    return pixels * (dw_w.shape[0] * dw_w.shape[2] * dw_w.shape[3] + pw_w.shape[0] * pw_w.shape[1])


def model_cost(model: nn.Module, input_size: Optional[Sequence[int]] = None, *, inputs: Optional[Iterable] = None) -> Cost:
    """MACs of one forward pass of ``model`` on a zero input of shape ``input_size`` (include the
    batch dimension: MACs scale with it), and its parameter count.

    Counts Conv1d/2d/3d (any groups/stride/dilation/padding) and Linear layers, each time they
    are called. The model runs once in eval mode (restored afterwards) under no_grad on the
    device and dtype of its first parameter; pass ``inputs`` to supply the forward arguments.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    macs = 0

    inside_block = 0  # > 0 while a fused separable block runs (its own hook counts it)

    def hook(module, _inputs, output):
        nonlocal macs
        if inside_block:
            return
        if isinstance(module, _CONVS):
            macs += _conv_hook_macs(module, output)
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    def block_enter(module, _inputs):
        nonlocal inside_block
        inside_block += 1

    def block_exit(module, _inputs, output):
        nonlocal macs, inside_block
        inside_block -= 1
        if not inside_block:
            macs += _separable_block_macs(module, output)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, _CONVS + (nn.Linear,))
    ]
    for m in model.modules():
        if _separable_weights(m) is not None:
            # Fused blocks run their convs as one op (children's hooks don't fire): count the block.
            handles += [m.register_forward_pre_hook(block_enter), m.register_forward_hook(block_exit)]
    was_training = model.training
    try:
        model.eval()
        args = tuple(inputs) if inputs is not None else (torch.zeros(tuple(input_size), device=device, dtype=dtype),)
        with torch.no_grad():
            model(*args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())  # parameters() yields each Parameter once
    return Cost(macs=macs, params=params)
