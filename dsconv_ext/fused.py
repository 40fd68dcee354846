"""The fused depthwise-separable block, functional form:

    y = pw_act(F.conv2d(act(F.conv2d(x, dw_weight, dw_bias, stride, padding, dilation, groups=C)),
                        pw_weight, pw_bias))

computed by torch.ops.dsconv.separable_conv2d without materialising the depthwise output (on the
CPU it lives only in a per-thread L1/L2-sized tile). Its backward recomputes the depthwise output
instead of saving it (see _fused_autograd.py).
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F

from ._args import conv_args
from ._fused_act import act_code, act_fn
from ._cuda_route import use_torch_depthwise, use_torch_separable
from ._fused_fake import separable_memory_format
from .functional import _as_conv2d, _autocast, has_kernel


def has_separable_kernel(device: Union[str, torch.device]) -> bool:
    """Whether dsconv has a fused separable_conv2d kernel for this device type (meta: always)."""
    dtype = torch.device(device).type
    if dtype in ("cpu", "meta"):
        return True
    key = {"cuda": "CUDA"}.get(dtype)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key("dsconv::separable_conv2d", key)


def _check_tensor(t, name: str, optional: bool = False) -> None:
    if t is None and optional:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"dsconv: {name} must be a Tensor{' or None' if optional else ''}, got {type(t).__name__}")


def separable_conv2d(
    input: torch.Tensor,
    dw_weight: torch.Tensor,
    pw_weight: torch.Tensor,
    dw_bias: Optional[torch.Tensor] = None,
    pw_bias: Optional[torch.Tensor] = None,
    stride=1,
    padding=0,
    dilation=1,
    activation: Optional[str] = None,
    pw_activation: Optional[str] = None,
) -> torch.Tensor:
    """Depthwise (multiplier 1) -> activation -> pointwise 1x1 -> pw_activation, fused.

    Same result, shape and memory format as the PyTorch composition
    ``pw_act(F.conv2d(act(F.conv2d(input, dw_weight, dw_bias, stride, padding, dilation, groups=C)), pw_weight, pw_bias))``.

    input: (N, C, H, W) or unbatched (C, H, W), any strides. dw_weight: (C, 1, kH, kW).
    pw_weight: (Cout, C, 1, 1). dw_bias: (C,) or None; pw_bias: (Cout,) or None.
    stride / dilation: int or pair; padding: int, pair, 'same' or 'valid'.
    activation / pw_activation: None, 'relu', 'relu6', 'silu', 'hardswish' or 'gelu' (erf form).
    """
    _check_tensor(input, "input")
    _check_tensor(dw_weight, "dw_weight")
    _check_tensor(pw_weight, "pw_weight")
    _check_tensor(dw_bias, "dw_bias", optional=True)
    _check_tensor(pw_bias, "pw_bias", optional=True)
    act = act_code(activation, "activation")
    pw_act = act_code(pw_activation, "pw_activation")
    if input.dim() not in (3, 4):
        raise ValueError(
            f"dsconv: expected a 3-D (unbatched) or 4-D (batched) input, got {input.dim()}-D with shape {tuple(input.shape)}"
        )
    if dw_weight.dim() != 4 or dw_weight.shape[1] != 1:
        raise ValueError(f"dsconv: dw_weight must have shape (C, 1, kH, kW), got {tuple(dw_weight.shape)}")
    C = input.shape[-3]
    if dw_weight.shape[0] != C:
        raise ValueError(
            f"dsconv: dw_weight has {dw_weight.shape[0]} channels but the input has {C}; separable_conv2d needs "
            f"dw_weight of shape ({C}, 1, kH, kW) (channel multiplier 1)"
        )
    if pw_weight.dim() != 4 or tuple(pw_weight.shape[1:]) != (C, 1, 1):
        raise ValueError(f"dsconv: pw_weight must have shape (Cout, {C}, 1, 1), got {tuple(pw_weight.shape)}")
    if dw_bias is not None and tuple(dw_bias.shape) != (C,):
        raise ValueError(f"dsconv: dw_bias must have shape ({C},), got {tuple(dw_bias.shape)}")
    if pw_bias is not None and tuple(pw_bias.shape) != (pw_weight.shape[0],):
        raise ValueError(f"dsconv: pw_bias must have shape ({pw_weight.shape[0]},), got {tuple(pw_bias.shape)}")
    s, p, d = conv_args(dw_weight.shape, stride, padding, dilation)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    # Under torch.autocast, run in the autocast dtype as the F.conv2d composition would.
    x, dw_weight, dw_bias = _autocast(x, dw_weight, dw_bias)
    x, pw_weight, pw_bias = _autocast(x, pw_weight, pw_bias)
    if use_torch_separable(x, dw_weight, pw_weight, dw_bias, pw_bias):
        # CUDA inference: PyTorch's composition measured faster than the fused kernel (_cuda_route.py);
        # same memory format as the fused op's.
        if use_torch_depthwise(x, dw_weight, p, s, d) or not has_kernel(x.device):
            y = _as_conv2d(x, dw_weight, dw_bias, s, p, d)
        else:
            y = torch.ops.dsconv.depthwise_conv2d(x, dw_weight, dw_bias, s, p, d)
        out = act_fn(pw_act)(F.conv2d(act_fn(act)(y), pw_weight, pw_bias))
        out = out.contiguous(memory_format=separable_memory_format(x, dw_weight, pw_weight))
    # ONNX has no dsconv op: export the composition's standard Conv nodes instead.
    elif has_separable_kernel(x.device) and not torch.onnx.is_in_onnx_export():
        out = torch.ops.dsconv.separable_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, s, p, d, act, pw_act)
    else:  # no fused kernel for this device: the (unfused) composition
        out = separable_conv2d_unfused(x, dw_weight, pw_weight, dw_bias, pw_bias, s, p, d, act, pw_act)
    return out.squeeze(0) if unbatched else out


def separable_conv2d_unfused(input, dw_weight, pw_weight, dw_bias, pw_bias, stride, padding, dilation, act, pw_act):
    """The composition the fused op computes, from dsconv's depthwise op (or F.conv2d where dsconv
    has no kernel) and F.conv2d 1x1. padding: (top, bottom, left, right); act codes as the schema's.
    Used by the backward (recompute) and on devices without a fused kernel."""
    if has_kernel(input.device) and not torch.onnx.is_in_onnx_export():  # ONNX: standard Conv nodes
        y = torch.ops.dsconv.depthwise_conv2d(input, dw_weight, dw_bias, stride, padding, dilation)
    else:
        top, bottom, left, right = padding
        groups = input.shape[1]
        if top == bottom and left == right:
            y = F.conv2d(input, dw_weight, dw_bias, stride, (top, left), dilation, groups)
        else:
            y = F.conv2d(F.pad(input, (left, right, top, bottom)), dw_weight, dw_bias, stride, 0, dilation, groups)
    y = act_fn(act)(y)
    return act_fn(pw_act)(F.conv2d(y, pw_weight, pw_bias))
