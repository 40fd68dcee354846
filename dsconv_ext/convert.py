"""convert(): swap a model's depthwise nn.Conv2d layers for DepthwiseConv2d, in place."""
import copy

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


def to_depthwise(conv: nn.Conv2d) -> DepthwiseConv2d:
    """A DepthwiseConv2d holding the very same Parameter objects (so optimizers that reference them
    keep working), buffers, hooks, training flag and attributes; nothing is re-initialised."""
    new = DepthwiseConv2d.__new__(DepthwiseConv2d)
    # Copy the per-module containers (parameter/buffer/hook dicts), share what they hold.
    new.__dict__.update({k: copy.copy(v) if isinstance(v, (dict, list)) else v for k, v in conv.__dict__.items()})
    return new


def convert(module: nn.Module) -> nn.Module:
    """Replace, in place, every depthwise nn.Conv2d inside `module` by a DepthwiseConv2d with the
    same parameters, and return `module` (or the replacement, if `module` itself is one).
    A module reached twice (shared) is replaced by one shared DepthwiseConv2d."""
    memo = {}

    def visit(parent: nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if is_convertible(child):
                if id(child) not in memo:
                    memo[id(child)] = to_depthwise(child)
                setattr(parent, name, memo[id(child)])
            elif id(child) not in memo:
                memo[id(child)] = child
                visit(child)

    if is_convertible(module):
        return to_depthwise(module)
    visit(module)
    return module
