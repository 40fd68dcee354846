"""Fake (meta) kernels: shapes, dtypes and memory formats of the ops' outputs without computing
them, so meta tensors, FakeTensor tracing and torch.compile(fullgraph=True) work."""
import torch

from ._layout import output_memory_format


def _out_hw(input, weight, stride, padding, dilation):
    H, W = input.shape[2], input.shape[3]
    KH, KW = weight.shape[2], weight.shape[3]
    oh = (H + padding[0] + padding[1] - dilation[0] * (KH - 1) - 1) // stride[0] + 1
    ow = (W + padding[2] + padding[3] - dilation[1] * (KW - 1) - 1) // stride[1] + 1
    torch._check(oh > 0 and ow > 0, lambda: "dsconv: the kernel can't be larger than the padded input")
    return oh, ow


def _check(input, weight):
    torch._check(input.dim() == 4, lambda: f"dsconv: expected a 4-D input, got {input.dim()}-D")
    torch._check(weight.dim() == 4 and weight.shape[1] == 1, lambda: "dsconv: weight must be (C*m, 1, kH, kW)")
    torch._check(
        input.shape[1] > 0 and weight.shape[0] % input.shape[1] == 0,
        lambda: "dsconv: weight's output channels must be a positive multiple of the input channels",
    )
    torch._check(input.dtype == weight.dtype, lambda: "dsconv: input and weight dtypes should be the same")


@torch.library.register_fake("dsconv::depthwise_conv2d")
def _depthwise_conv2d_fake(input, weight, bias, stride, padding, dilation):
    _check(input, weight)
    oh, ow = _out_hw(input, weight, stride, padding, dilation)
    return torch.empty(
        (input.shape[0], weight.shape[0], oh, ow),
        dtype=input.dtype,
        device=input.device,
        memory_format=output_memory_format(input, weight),
    )


@torch.library.register_fake("dsconv::depthwise_conv2d_backward")
def _depthwise_conv2d_backward_fake(grad_output, input, weight, stride, padding, dilation, output_mask):
    _check(input, weight)
    empty = input.new_empty((0,))
    gi = (
        torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=output_memory_format(input, weight))
        if output_mask[0]
        else empty
    )
    gw = input.new_empty(weight.shape) if output_mask[1] else input.new_empty((0,))
    gb = input.new_empty((weight.shape[0],)) if output_mask[2] else input.new_empty((0,))
    return gi, gw, gb
