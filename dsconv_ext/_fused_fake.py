"""Fake (meta) kernel of dsconv::separable_conv2d: output shape, dtype and memory format without
computing it (meta tensors, FakeTensor tracing, torch.compile)."""
import torch
from torch._prims_common import suggest_memory_format

from ._checks import check_forward
from ._layout import output_memory_format


def separable_memory_format(input, dw_weight, pw_weight) -> torch.memory_format:
    """The composition's rule: channels_last if input, dw_weight or pw_weight suggests it."""
    if output_memory_format(input, dw_weight) == torch.channels_last or suggest_memory_format(pw_weight) == torch.channels_last:
        return torch.channels_last
    return torch.contiguous_format


@torch.library.register_fake("dsconv::separable_conv2d")
def _separable_conv2d_fake(input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, act, pw_act):
    torch._check(input.dim() == 4, lambda: f"dsconv: expected a 4-D input, got {input.dim()}-D")
    C = input.shape[1]
    torch._check(
        dw_weight.dim() == 4 and dw_weight.shape[0] == C and dw_weight.shape[1] == 1,
        lambda: f"dsconv: dw_weight must have shape ({C}, 1, kH, kW), got {tuple(dw_weight.shape)}",
    )
    torch._check(
        pw_weight.dim() == 4 and pw_weight.shape[1] == C and pw_weight.shape[2] == 1 and pw_weight.shape[3] == 1,
        lambda: f"dsconv: pw_weight must have shape (Cout, {C}, 1, 1), got {tuple(pw_weight.shape)}",
    )
    torch._check(
        input.dtype == dw_weight.dtype == pw_weight.dtype, lambda: "dsconv: input and weight dtypes should be the same"
    )
    torch._check(0 <= act < 6 and 0 <= pw_act < 6, lambda: "dsconv: activation codes must be in [0, 6)")
    oh, ow = check_forward(input, dw_weight, dw_bias, stride, padding, dilation)
    return torch.empty(
        (input.shape[0], pw_weight.shape[0], oh, ow),
        dtype=input.dtype,
        device=input.device,
        memory_format=separable_memory_format(input, dw_weight, pw_weight),
    )
