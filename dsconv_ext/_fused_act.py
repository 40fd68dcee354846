"""Activation names of the fused separable ops, their integer codes in the op schema
(`int act`, `int pw_act`: the enum in csrc/cpu/fused_kernels.h) and their PyTorch functions."""
from typing import Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

# name -> code; None (no activation) is code 0.
ACT_CODES: Dict[Optional[str], int] = {None: 0, "relu": 1, "relu6": 2, "silu": 3, "hardswish": 4, "gelu": 5}
ACT_NAMES: Dict[int, Optional[str]] = {v: k for k, v in ACT_CODES.items()}

def _hardswish(x: torch.Tensor) -> torch.Tensor:
    # PyTorch's CUDA hardswish rounds its 1/6 to float32 even for float64 tensors (a relative
    # error of 3e-8, seen on an H200): float64 on CUDA uses the exact formula, with the same
    # derivative (0 below -3, (2x+3)/6 between, 1 above; clamp passes the gradient at its ends).
    if x.dtype == torch.float64 and x.is_cuda:
        return x * (x + 3).clamp(0, 6) / 6
    return F.hardswish(x)


_FUNCS: Dict[int, Callable[[torch.Tensor], torch.Tensor]] = {
    0: lambda x: x,
    1: F.relu,
    2: F.relu6,
    3: F.silu,
    4: _hardswish,
    5: F.gelu,  # erf form (approximate='none')
}


def act_code(act: Union[None, str], name: str = "activation") -> int:
    """The schema code of an activation given as None or one of the names in ACT_CODES."""
    if act is None or (isinstance(act, str) and act in ACT_CODES):
        return ACT_CODES[act]
    choices = ", ".join(repr(k) for k in ACT_CODES)
    raise ValueError(f"dsconv: unknown {name} {act!r}; expected one of {choices}")


def act_fn(code: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return _FUNCS[code]


def act_module(act: Union[None, str]) -> nn.Module:
    """The nn.Module for an activation name (nn.Identity for None)."""
    code = act_code(act)
    return {
        0: nn.Identity,
        1: nn.ReLU,
        2: nn.ReLU6,
        3: nn.SiLU,
        4: nn.Hardswish,
        5: nn.GELU,
    }[code]()


def act_name_of_module(module: nn.Module) -> Union[None, str, bool]:
    """The activation name of a module the fused op can run (None for nn.Identity), or False."""
    t = type(module)
    if t is nn.Identity:
        return None
    if t is nn.ReLU:
        return "relu"
    if t is nn.ReLU6:
        return "relu6"
    if t is nn.SiLU:
        return "silu"
    if t is nn.Hardswish:
        return "hardswish"
    if t is nn.GELU and module.approximate == "none":
        return "gelu"
    if t is nn.Hardtanh and module.min_val == 0.0 and module.max_val == 6.0:
        return "relu6"
    return False
