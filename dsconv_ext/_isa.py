"""Which instruction set the CPU kernels use.

The choice is made once, at the first CPU call, from the CPU's features; the environment
variable DSCONV_CPU_ISA (avx512, avx2, generic, auto) overrides it. ``set_cpu_isa`` switches at
run time, mainly so tests can cover every path on one machine.
"""
import torch


def cpu_isa() -> str:
    """The CPU kernels' instruction set: "avx512", "avx2" or "generic" (the portable loops)."""
    return torch.ops.dsconv._cpu_isa()


def set_cpu_isa(isa: str) -> str:
    """Force the CPU kernels' instruction set ("avx512", "avx2", "generic" or "auto" for the
    best this CPU supports). Raises RuntimeError for a name this CPU can't run. Returns the
    previous setting."""
    return torch.ops.dsconv._set_cpu_isa(isa)
