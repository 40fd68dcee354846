"""Memory-format rule shared by the fake kernels: what the C++ ops allocate."""
import torch
from torch._prims_common import suggest_memory_format


def output_memory_format(input: torch.Tensor, weight: torch.Tensor) -> torch.memory_format:
    """PyTorch's rule for convolution outputs: channels_last if the input or weight suggests it."""
    if suggest_memory_format(input) == torch.channels_last or suggest_memory_format(weight) == torch.channels_last:
        return torch.channels_last
    return torch.contiguous_format
