"""DepthwiseConv2d: a drop-in nn.Conv2d subclass running dsconv's kernels."""
import torch
import torch.nn.functional as F
from torch import nn

from .functional import depthwise_conv2d, has_kernel


class DepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d with groups fixed to in_channels (out_channels a multiple of it).

    Same parameters, initialisation, state_dict and repr as
    ``nn.Conv2d(in_channels, out_channels, kernel_size, ..., groups=in_channels)``; padding_mode
    'zeros', 'reflect', 'replicate' and 'circular' behave as in nn.Conv2d. On a device type with no
    dsconv kernel (e.g. MPS, or CUDA in a CPU-only build) it runs nn.Conv2d's own path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias):
        if not has_kernel(input.device):
            return super()._conv_forward(input, weight, bias)
        if self.padding_mode != "zeros":
            # As nn.Conv2d: pad explicitly with the mode, then convolve without padding.
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return depthwise_conv2d(input, weight, bias, self.stride, 0, self.dilation)
        return depthwise_conv2d(input, weight, bias, self.stride, self.padding, self.dilation)
