"""convert(): swap a model's depthwise nn.Conv2d layers for DepthwiseConv2d, in place."""
from torch import nn

from .modules import DepthwiseConv2d


def is_convertible(module: nn.Module) -> bool:
    """Exactly nn.Conv2d (not a subclass with its own forward), groups == in_channels > 1 and
    out_channels a multiple of in_channels."""
    return (
        type(module) is nn.Conv2d
        and module.in_channels > 1
        and module.groups == module.in_channels
        and module.out_channels % module.in_channels == 0
    )


def convert(module: nn.Module) -> nn.Module:
    """Turn, in place, every depthwise nn.Conv2d inside `module` (and `module` itself, if it is
    one) into a DepthwiseConv2d, and return `module`.

    The layer object itself changes class: DepthwiseConv2d adds no state to nn.Conv2d, so the same
    Parameter objects (optimizers keep working), buffers, hooks and their handles, training flag and
    state_dict keys carry over, and a layer shared between several places stays shared.
    """
    for m in module.modules():
        if is_convertible(m):
            m.__class__ = DepthwiseConv2d
    return module
