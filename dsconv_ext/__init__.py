"""dsconv_ext: fast depthwise (and depthwise-separable) convolution for PyTorch.

    import dsconv_ext
    y = dsconv_ext.depthwise_conv2d(x, weight, bias, stride=1, padding=1)
    model = dsconv_ext.convert(model)   # swap nn.Conv2d(groups=C) layers in place
"""
from . import _C  # noqa: F401  (loads the compiled ops into torch.ops.dsconv)
from . import _autograd, _fake  # noqa: F401  (register fake kernels and autograd for the ops)
from . import _fused_autograd, _fused_fake  # noqa: F401  (fused separable op: fake kernel, autograd)
from .convert import convert
from .functional import depthwise_conv2d, has_kernel
from .fused import has_separable_kernel, separable_conv2d
from .modules import DepthwiseConv2d

__all__ = ["depthwise_conv2d", "DepthwiseConv2d", "convert", "has_kernel"]
__all__ += ["separable_conv2d", "has_separable_kernel"]
__version__ = "0.1.0"
