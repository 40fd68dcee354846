"""dsconv_ext: fast depthwise (and depthwise-separable) convolution for PyTorch.

    import dsconv_ext
    y = dsconv_ext.depthwise_conv2d(x, weight, bias, stride=1, padding=1)
    model = dsconv_ext.convert(model)   # swap nn.Conv2d(groups=C) layers in place
"""
import torch  # noqa: F401  (first: loads libc10 / libtorch, which _C links against without an rpath)

from . import _C  # noqa: F401  (loads the compiled ops into torch.ops.dsconv)
from . import _autograd, _fake  # noqa: F401  (register fake kernels and autograd for the ops)
from ._isa import cpu_isa, set_cpu_isa  # noqa: F401  (CPU kernels' instruction set)
from .convert import convert
from .functional import depthwise_conv2d, has_kernel
from .modules import DepthwiseConv2d

__all__ = ["depthwise_conv2d", "DepthwiseConv2d", "convert", "has_kernel"]
__version__ = "0.1.0"
