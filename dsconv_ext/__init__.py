"""dsconv_ext: fast depthwise (and depthwise-separable) convolution for PyTorch.

    import dsconv_ext
    y = dsconv_ext.depthwise_conv2d(x, weight, bias, stride=1, padding=1)
    model = dsconv_ext.convert(model)   # swap nn.Conv2d(groups=C) layers in place
"""
import torch  # noqa: F401  (first: loads libc10 / libtorch, which _C links against without an rpath)

from . import _C  # noqa: F401  (loads the compiled ops into torch.ops.dsconv)
from . import _autograd, _fake  # noqa: F401  (register fake kernels and autograd for the ops)
from ._isa import cpu_isa, set_cpu_isa  # noqa: F401  (CPU kernels' instruction set)
from ._cpu_cache import cpu_cache_info, empty_cpu_cache, set_cpu_cache_limit  # noqa: F401
from ._cuda_route import cuda_kernels, set_cuda_kernels  # noqa: F401  (dsconv's or PyTorch's CUDA kernels)
from .convert import convert
from .functional import depthwise_conv2d, has_kernel
from .modules import DepthwiseConv2d

# Fused depthwise-separable block (op fake kernel + autograd, functional, modules, fuse()).
from . import _fused_autograd, _fused_fake  # noqa: F401,E402
from .fuse import fuse  # noqa: E402
from .fused import has_separable_kernel, separable_conv2d  # noqa: E402
from .separable import DepthwiseSeparableConv2d, FusedSeparableConv2d  # noqa: E402

__all__ = ["depthwise_conv2d", "DepthwiseConv2d", "convert", "has_kernel"]
__all__ += ["separable_conv2d", "has_separable_kernel", "DepthwiseSeparableConv2d", "FusedSeparableConv2d", "fuse"]
__version__ = "0.1.0"
