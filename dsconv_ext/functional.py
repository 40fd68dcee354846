"""The functional API: depthwise_conv2d, a drop-in for F.conv2d(..., groups=C)."""
from typing import Optional

import torch
import torch.nn.functional as F

from ._args import conv_args
from ._cuda_route import use_torch_depthwise


def has_kernel(device: torch.device) -> bool:
    """Whether dsconv has compiled kernels for this device type (meta is always handled)."""
    dtype = torch.device(device).type
    if dtype in ("cpu", "meta"):
        return True
    key = {"cuda": "CUDA"}.get(dtype)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key("dsconv::depthwise_conv2d", key)


def _autocast(input, weight, bias):
    """Under torch.autocast, run in the autocast dtype as F.conv2d does (conv is a lower-precision op
    on both CPU and CUDA), so converted models keep working in mixed precision."""
    device_type = input.device.type
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return input, weight, bias
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t):
        return t.to(dtype) if t is not None and t.is_floating_point() and t.device.type == device_type else t

    return cast(input), cast(weight), cast(bias)


def _as_conv2d(input, weight, bias, stride, padding, dilation):
    """The op as F.conv2d(groups=C), with explicit padding (top, bottom, left, right): an
    asymmetric one becomes F.pad, not padding='same' (which the TorchScript exporter writes as
    auto_pad=SAME_*, unsupported with dilation by onnxruntime)."""
    top, bottom, left, right = padding
    if top != bottom or left != right:
        input = F.pad(input, [left, right, top, bottom])
        top = left = 0
    return F.conv2d(input, weight, bias, stride, [top, left], dilation, groups=input.shape[-3])


def depthwise_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    stride=1,
    padding=0,
    dilation=1,
) -> torch.Tensor:
    """Same result, shape and memory format as
    ``F.conv2d(input, weight, bias, stride, padding, dilation, groups=input.shape[-3])``.

    input: (N, C, H, W) or unbatched (C, H, W), any strides. weight: (C*m, 1, kH, kW) for a channel
    multiplier m >= 1. padding: int, pair, 'same' or 'valid'.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"dsconv: input must be a Tensor, got {type(input).__name__}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"dsconv: weight must be a Tensor, got {type(weight).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"dsconv: bias must be a Tensor or None, got {type(bias).__name__}")
    if input.dim() not in (3, 4):
        raise ValueError(
            f"dsconv: expected a 3-D (unbatched) or 4-D (batched) input, got {input.dim()}-D with shape {tuple(input.shape)}"
        )
    if weight.dim() != 4:
        raise ValueError(
            f"dsconv: expected a 4-D weight (C*multiplier, 1, kH, kW), got {weight.dim()}-D with shape {tuple(weight.shape)}"
        )
    s, p, d = conv_args(weight.shape, stride, padding, dilation)
    if torch.onnx.is_in_onnx_export():
        # ONNX has no dsconv op: export the standard Conv(group=C) that this op is equal to.
        # True under both exporters (dynamo=True runs the model in Python via non-strict
        # torch.export; dynamo=False traces it); torch.compile folds the check to False.
        return _as_conv2d(input, weight, bias, s, p, d)
    input, weight, bias = _autocast(input, weight, bias)
    if use_torch_depthwise(input, weight, p, s, d):
        # CUDA classes where PyTorch's own kernel measured faster (see _cuda_route.py).
        return _as_conv2d(input, weight, bias, s, p, d)
    if input.dim() == 3:
        return torch.ops.dsconv.depthwise_conv2d(input.unsqueeze(0), weight, bias, s, p, d).squeeze(0)
    return torch.ops.dsconv.depthwise_conv2d(input, weight, bias, s, p, d)
