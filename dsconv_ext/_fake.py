"""Fake (meta) kernels: shapes, dtypes and memory formats of the ops' outputs without computing
them, so meta tensors, FakeTensor tracing and torch.compile(fullgraph=True) work. They validate
arguments exactly as the C++ ops do (dsconv_ext/_checks.py)."""
import torch

from ._checks import check_backward, check_forward
from ._layout import output_memory_format


@torch.library.register_fake("dsconv::depthwise_conv2d")
def _depthwise_conv2d_fake(input, weight, bias, stride, padding, dilation):
    oh, ow = check_forward(input, weight, bias, stride, padding, dilation)
    return torch.empty(
        (input.shape[0], weight.shape[0], oh, ow),
        dtype=input.dtype,
        device=input.device,
        memory_format=output_memory_format(input, weight),
    )


@torch.library.register_fake("dsconv::depthwise_conv2d_backward")
def _depthwise_conv2d_backward_fake(grad_output, input, weight, stride, padding, dilation, output_mask):
    check_backward(grad_output, input, weight, stride, padding, dilation, output_mask)
    empty = input.new_empty((0,))
    gi = (
        torch.empty(input.shape, dtype=input.dtype, device=input.device, memory_format=output_memory_format(input, weight))
        if output_mask[0]
        else empty
    )
    gw = input.new_empty(weight.shape) if output_mask[1] else input.new_empty((0,))
    gb = input.new_empty((weight.shape[0],)) if output_mask[2] else input.new_empty((0,))
    return gi, gw, gb
