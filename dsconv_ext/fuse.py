"""fuse(): replace depthwise-separable chains of an inference model by FusedSeparableConv2d.

A chain is, in the order a Sequential runs its children (nested plain Sequentials such as
torchvision's Conv2dNormActivation are looked through):

    depthwise conv -> [BatchNorm2d] -> [activation] -> 1x1 conv -> [BatchNorm2d] -> [activation]

- depthwise conv: nn.Conv2d (or dsconv's DepthwiseConv2d) with groups == in_channels == out_channels,
  padding_mode 'zeros';
- 1x1 conv: nn.Conv2d, kernel 1, stride 1, padding 0, groups 1, padding_mode 'zeros';
- BatchNorm2d with running statistics (folded into the conv before it);
- activation: nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU(approximate='none'),
  nn.Hardtanh(0, 6) or nn.Identity.

This covers torchvision's mobilenet_v2 (InvertedResidual.conv: Conv2dNormActivation(dw, BN, ReLU6),
Conv2d 1x1, BN) and MobileNetV1-style nn.Sequential stacks (conv dw, BN, ReLU, conv 1x1, BN, ReLU).
A chain is replaced only when it spans whole children of the Sequential being rewritten (a chain
that starts or ends inside a nested Sequential is left alone), and not when one of its modules has
hooks. The fused modules are for inference: fuse() requires an eval-mode model, and
FusedSeparableConv2d raises if run in training mode.
"""
from typing import List, Optional, Tuple

from torch import nn

from ._fused_act import act_name_of_module
from .modules import DepthwiseConv2d
from .separable import FusedSeparableConv2d


def _plain(m: nn.Module) -> bool:
    return not (m._forward_hooks or m._forward_pre_hooks or getattr(m, "_backward_hooks", None))


def _is_dw(m: nn.Module) -> bool:
    return (
        type(m) in (nn.Conv2d, DepthwiseConv2d)
        and m.groups == m.in_channels == m.out_channels
        and m.padding_mode == "zeros"
        and _plain(m)
    )


def _is_pw(m: nn.Module, channels: int) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.in_channels == channels
        and m.groups == 1
        and tuple(m.kernel_size) == (1, 1)
        and tuple(m.stride) == (1, 1)
        and (m.padding in ("valid", "same") or tuple(m.padding) == (0, 0))
        and m.padding_mode == "zeros"
        and _plain(m)
    )


def _is_bn(m: nn.Module, channels: int) -> bool:
    return (
        type(m) is nn.BatchNorm2d
        and m.num_features == channels
        and m.running_mean is not None
        and m.running_var is not None
        and _plain(m)
    )


def _is_seq(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward and _plain(m)


def _leaves(seq: nn.Sequential) -> List[Tuple[int, nn.Module]]:
    """(index of the top-level child, module) for the modules seq runs, nested Sequentials flattened."""
    out: List[Tuple[int, nn.Module]] = []

    def walk(m: nn.Module, top: int) -> None:
        if _is_seq(m):
            for c in m.children():
                walk(c, top)
        else:
            out.append((top, m))

    for i, c in enumerate(seq.children()):
        walk(c, i)
    return out


def _match(leaves: List[Tuple[int, nn.Module]], i: int) -> Optional[Tuple[int, FusedSeparableConv2d]]:
    """A chain starting at leaves[i]: (end index, fused module), or None."""
    dw = leaves[i][1]
    if not _is_dw(dw):
        return None
    C = dw.in_channels
    j = i + 1
    dw_bn = None
    if j < len(leaves) and _is_bn(leaves[j][1], C):
        dw_bn = leaves[j][1]
        j += 1
    act = None
    if j < len(leaves) and act_name_of_module(leaves[j][1]) is not False and _plain(leaves[j][1]):
        act = act_name_of_module(leaves[j][1])
        j += 1
    if j >= len(leaves) or not _is_pw(leaves[j][1], C):
        return None
    pw = leaves[j][1]
    j += 1
    pw_bn = None
    if j < len(leaves) and _is_bn(leaves[j][1], pw.out_channels):
        pw_bn = leaves[j][1]
        j += 1
    pw_act = None
    if j < len(leaves) and act_name_of_module(leaves[j][1]) is not False and _plain(leaves[j][1]):
        pw_act = act_name_of_module(leaves[j][1])
        j += 1
    return j, FusedSeparableConv2d.from_modules(dw, dw_bn, act, pw, pw_bn, pw_act)


def _fuse_sequential(seq: nn.Sequential) -> int:
    leaves = _leaves(seq)
    names = list(seq._modules.keys())
    first = {}  # top-level child index -> index of its first leaf
    last = {}
    for k, (top, _) in enumerate(leaves):
        first.setdefault(top, k)
        last[top] = k
    replace = {}  # first top-level child index -> (last top-level child index, fused module)
    i = 0
    while i < len(leaves):
        m = _match(leaves, i)
        if m is not None:
            j, fused = m
            t0, t1 = leaves[i][0], leaves[j - 1][0]
            if first[t0] == i and last[t1] == j - 1:  # whole children only
                replace[t0] = (t1, fused)
                i = j
                continue
        i += 1
    if not replace:
        return 0
    new = {}
    t = 0
    while t < len(names):
        if t in replace:
            t1, fused = replace[t]
            new[names[t]] = fused
            t = t1 + 1
        else:
            new[names[t]] = seq._modules[names[t]]
            t += 1
    seq._modules.clear()
    seq._modules.update(new)
    return len(replace)


def fuse(model: nn.Module) -> nn.Module:
    """Replace, in place, the depthwise-separable chains of an eval-mode `model` (see the module
    docstring) by FusedSeparableConv2d modules with BatchNorm folded into their weights, and return
    `model`. The result is for inference only; the outputs equal the original's within float32
    rounding. Raises ValueError if the model is in training mode."""
    if model.training:
        raise ValueError("dsconv: fuse() folds BatchNorm running statistics and is for inference: call model.eval() first")
    seen = set()

    def visit(m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if _is_seq(m):
            _fuse_sequential(m)
        for c in m.children():
            visit(c)

    visit(model)
    return model
