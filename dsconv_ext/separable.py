"""Depthwise-separable block modules.

DepthwiseSeparableConv2d: the trainable block ``DW conv -> BN -> act -> PW conv -> BN -> act`` made
of ordinary submodules, with the state_dict of the equivalent plain PyTorch block:

    dw      DepthwiseConv2d (an nn.Conv2d with groups=in_channels)   keys dw.weight [, dw.bias]
    dw_bn   nn.BatchNorm2d(in_channels)  (nn.Identity if norm=False) keys dw_bn.weight, .bias,
                                                                     .running_mean, .running_var,
                                                                     .num_batches_tracked
    dw_act  activation module (nn.Identity for None)                 no state
    pw      nn.Conv2d(in_channels, out_channels, 1)                  keys pw.weight [, pw.bias]
    pw_bn   nn.BatchNorm2d(out_channels) (nn.Identity if norm=False) keys pw_bn.*
    pw_act  activation module (nn.Identity for None)                 no state

In train mode it runs those modules one after the other (BatchNorm uses and updates batch
statistics as usual). In eval mode it folds each BatchNorm into the preceding convolution's
weight and bias (computed on the fly at every call: a few tiny tensor ops, so nothing goes stale
when parameters or buffers change) and runs the fused op dsconv_ext.separable_conv2d. Gradients
flow through the folding, so eval-mode fine-tuning of the weights still works.

FusedSeparableConv2d: an inference-only module holding already-folded weights (as buffers), what
dsconv_ext.fuse() puts in place of DW -> BN -> act -> PW -> BN (-> act) chains. Calling it in
training mode raises: BatchNorm is gone, so training it would silently differ from the original.
"""
from typing import Optional, Tuple, Union

import torch
from torch import nn

from ._fused_act import act_code, act_module
from .fused import separable_conv2d
from .modules import DepthwiseConv2d


def fold_bn(
    weight: torch.Tensor, bias: Optional[torch.Tensor], bn: Optional[nn.Module]
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Weight and bias of conv followed by eval-mode BatchNorm, as one conv's (differentiable).

    bn may be None or nn.Identity (returned unchanged). Requires running statistics."""
    if bn is None or isinstance(bn, nn.Identity):
        return weight, bias
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("dsconv: can't fold a BatchNorm without running statistics (track_running_stats=False)")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    w = weight * scale.to(weight.dtype).reshape(-1, *([1] * (weight.dim() - 1)))
    return w, shift.to(weight.dtype)


def _default_padding(kernel_size, dilation):
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    return tuple((ki // 2) * di for ki, di in zip(k, d))


def _bn_foldable(bn: nn.Module) -> bool:
    return isinstance(bn, nn.Identity) or (bn.running_mean is not None and bn.running_var is not None)


class DepthwiseSeparableConv2d(nn.Module):
    """DW conv -> BN -> activation -> PW 1x1 conv -> BN -> pw_activation.

    Args:
        in_channels, out_channels: channels in / out.
        kernel_size, stride, dilation: of the depthwise conv (int or pair).
        padding: of the depthwise conv: int, pair, 'same', 'valid', or None (default) for
            (k // 2) * dilation per side ('same' for stride 1 and odd k; halves the size for stride 2).
        bias: give both convs a bias (default False: BatchNorm provides it).
        norm: BatchNorm2d after each conv (default True). With norm=False the block is
            conv(+bias) -> act -> conv(+bias) -> act.
        activation, pw_activation: None, 'relu', 'relu6', 'silu', 'hardswish' or 'gelu'.
            pw_activation=None gives MobileNetV2's linear bottleneck.

    Submodules (state_dict keys): see the module docstring of dsconv_ext.separable.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size=3,
        stride=1,
        padding=None,
        dilation=1,
        bias: bool = False,
        norm: bool = True,
        activation: Optional[str] = "relu",
        pw_activation: Optional[str] = "relu",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        act_code(activation, "activation")
        act_code(pw_activation, "pw_activation")
        if padding is None:
            padding = _default_padding(kernel_size, dilation)
        factory = dict(device=device, dtype=dtype)
        self.activation = activation
        self.pw_activation = pw_activation
        self.dw = DepthwiseConv2d(in_channels, in_channels, kernel_size, stride, padding, dilation, bias=bias, **factory)
        self.dw_bn = nn.BatchNorm2d(in_channels, **factory) if norm else nn.Identity()
        self.dw_act = act_module(activation)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=bias, **factory)
        self.pw_bn = nn.BatchNorm2d(out_channels, **factory) if norm else nn.Identity()
        self.pw_act = act_module(pw_activation)

    def forward_unfused(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw_act(self.pw_bn(self.pw(self.dw_act(self.dw_bn(self.dw(x))))))

    def folded_weights(self):
        """(dw_weight, dw_bias, pw_weight, pw_bias) with eval-mode BatchNorm folded in."""
        dw_w, dw_b = fold_bn(self.dw.weight, self.dw.bias, self.dw_bn)
        pw_w, pw_b = fold_bn(self.pw.weight, self.pw.bias, self.pw_bn)
        return dw_w, dw_b, pw_w, pw_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not (_bn_foldable(self.dw_bn) and _bn_foldable(self.pw_bn)):
            return self.forward_unfused(x)
        dw_w, dw_b, pw_w, pw_b = self.folded_weights()
        return separable_conv2d(
            x, dw_w, pw_w, dw_b, pw_b, self.dw.stride, self.dw.padding, self.dw.dilation,
            self.activation, self.pw_activation,
        )

    @torch.no_grad()
    def to_fused(self) -> "FusedSeparableConv2d":
        """An inference-only FusedSeparableConv2d with this block's (eval-mode) folded weights."""
        return FusedSeparableConv2d.from_modules(self.dw, self.dw_bn, self.activation, self.pw, self.pw_bn, self.pw_activation)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, pw_activation={self.pw_activation!r}"


class FusedSeparableConv2d(nn.Module):
    """Inference-only fused depthwise-separable conv: act(dw(x) + dw_bias) -> pw 1x1 + pw_bias -> pw_act,
    with any BatchNorm already folded into the weights. Weights are buffers (in state_dict, moved by
    .to(), not trained). Raises in training mode: make it from an eval-mode model, and train the
    original (unfused) model instead."""

    def __init__(
        self,
        dw_weight: torch.Tensor,
        dw_bias: Optional[torch.Tensor],
        pw_weight: torch.Tensor,
        pw_bias: Optional[torch.Tensor],
        stride=1,
        padding: Union[int, Tuple[int, int], str] = 0,
        dilation=1,
        activation: Optional[str] = None,
        pw_activation: Optional[str] = None,
    ) -> None:
        super().__init__()
        act_code(activation, "activation")
        act_code(pw_activation, "pw_activation")
        self.register_buffer("dw_weight", dw_weight.detach().clone())
        self.register_buffer("dw_bias", None if dw_bias is None else dw_bias.detach().clone())
        self.register_buffer("pw_weight", pw_weight.detach().clone())
        self.register_buffer("pw_bias", None if pw_bias is None else pw_bias.detach().clone())
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.activation = activation
        self.pw_activation = pw_activation
        self.eval()

    @classmethod
    @torch.no_grad()
    def from_modules(cls, dw: nn.Conv2d, dw_bn: Optional[nn.Module], activation: Optional[str], pw: nn.Conv2d,
                     pw_bn: Optional[nn.Module], pw_activation: Optional[str]) -> "FusedSeparableConv2d":
        dw_w, dw_b = fold_bn(dw.weight, dw.bias, dw_bn)
        pw_w, pw_b = fold_bn(pw.weight, pw.bias, pw_bn)
        return cls(dw_w, dw_b, pw_w, pw_b, dw.stride, dw.padding, dw.dilation, activation, pw_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise RuntimeError(
                "dsconv: FusedSeparableConv2d is inference-only (BatchNorm is folded into its weights); "
                "call .eval() on it, or train the original unfused model"
            )
        return separable_conv2d(
            x, self.dw_weight, self.pw_weight, self.dw_bias, self.pw_bias, self.stride, self.padding, self.dilation,
            self.activation, self.pw_activation,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.dw_weight.shape[0]}, {self.pw_weight.shape[0]}, kernel_size={tuple(self.dw_weight.shape[2:])}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"activation={self.activation!r}, pw_activation={self.pw_activation!r}"
        )
