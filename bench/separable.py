"""Separable versus standard convolution, forward: is the depthwise-separable layer as much faster
as its FLOPs say?

For k x k, C -> C, stride 1: the theoretical speed-up is 1 / (1/C + 1/k^2) (dsconv_ext.cost).
Measured: PyTorch's standard conv / PyTorch's separable (F.conv2d groups=C, then a 1x1 F.conv2d),
and standard / ours (dsconv_ext.separable_conv2d when the extension has it, else our depthwise
followed by PyTorch's 1x1 conv).
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Iterator, Tuple

import torch
import torch.nn.functional as F

import dsconv_ext
from dsconv_ext import cost

from .check import agreement
from .layers import memory_format
from .malloc_state import steady_malloc
from .suites import SeparableCase
from .timing import TimingConfig, compare


def _fused_call(fn: Callable, x, dw, pw, pad: int):
    return lambda: fn(x, dw, pw, stride=1, padding=pad)  # separable_conv2d(input, dw_weight, pw_weight, ...)


@functools.lru_cache(maxsize=None)
def fused_status(device_type: str) -> str:
    """'fused' when dsconv_ext.separable_conv2d exists, has a kernel for the device and reproduces
    depthwise + pointwise on a small input; otherwise why not ('absent', 'no kernel', 'mismatch: ...')."""
    fn = getattr(dsconv_ext, "separable_conv2d", None)
    if fn is None:
        return "absent"
    has = getattr(dsconv_ext, "has_separable_kernel", None)
    if has is not None and not has(device_type):
        return "no kernel"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 9, 9, generator=g).to(device_type)
    dw = torch.randn(8, 1, 3, 3, generator=g).to(device_type)
    pw = torch.randn(6, 8, 1, 1, generator=g).to(device_type)
    ref = F.conv2d(F.conv2d(x, dw, None, 1, 1, 1, 8), pw)
    try:
        out = _fused_call(fn, x, dw, pw, 1)()
    except Exception as e:
        return f"mismatch: {type(e).__name__}: {e}"
    if not (isinstance(out, torch.Tensor) and out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-2, atol=1e-2)):
        return "mismatch: wrong result"  # tolerance loose for TF32 on GPUs
    return "fused"


def callables(case: SeparableCase, x, dw, pw, std_w, device_type: str) -> Tuple[Dict[str, Callable], str]:
    """The standard conv, PyTorch's separable pair and ours, and which implementation ours is."""
    pad = case.k // 2
    status = fused_status(device_type)

    def standard():
        with torch.no_grad():
            return F.conv2d(x, std_w, None, 1, pad)

    def torch_sep():
        with torch.no_grad():
            return F.conv2d(F.conv2d(x, dw, None, 1, pad, 1, case.c), pw)

    if status == "fused":
        call = _fused_call(dsconv_ext.separable_conv2d, x, dw, pw, pad)
        impl = "fused"

        def ours_sep():
            with torch.no_grad():
                return call()
    else:
        impl = "dw+pw" if status == "absent" else f"dw+pw (fused op: {status})"

        def ours_sep():
            with torch.no_grad():
                return F.conv2d(dsconv_ext.depthwise_conv2d(x, dw, None, 1, pad, 1), pw)

    return {"standard": standard, "torch": torch_sep, "ours": ours_sep}, impl


def measure(case: SeparableCase, dtype: torch.dtype, layout: str, device, cfg: TimingConfig) -> Iterator[Dict]:
    if torch.device(device).type == "cpu":
        steady_malloc()  # PyTorch's standard conv in its steady allocation state (bench/malloc_state.py)
    fmt = memory_format(layout)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(case.n, case.c, case.h, case.w, generator=g).to(device, dtype, memory_format=fmt)
    dw = (torch.randn(case.c, 1, case.k, case.k, generator=g) / case.k).to(device, dtype, memory_format=fmt)
    pw = (torch.randn(case.c, case.c, 1, 1, generator=g) / case.c**0.5).to(device, dtype, memory_format=fmt)
    std_w = (torch.randn(case.c, case.c, case.k, case.k, generator=g) / (case.k * case.c**0.5)).to(device, dtype, memory_format=fmt)
    fns, impl = callables(case, x, dw, pw, std_w, torch.device(device).type)
    t = compare(fns, cfg, device)
    std_cost = cost.standard_cost(case.c, case.c, case.k, case.h, case.w) * case.n
    sep_cost = cost.separable_cost(case.c, case.c, case.k, case.h, case.w) * case.n
    std_s, torch_s, ours_s = t["standard"].median_s, t["torch"].median_s, t["ours"].median_s
    row = {
        "case": case.label, "n": case.n, "c": case.c, "h": case.h, "w": case.w, "k": case.k,
        "dtype": str(dtype).replace("torch.", ""), "layout": layout, "pass": "fwd", "ours_impl": impl,
        "standard_ms": std_s * 1e3, "torch_ms": torch_s * 1e3, "ours_ms": ours_s * 1e3,
        "speedup": torch_s / ours_s,
        "theory_ratio": 1 / cost.separable_ratio(case.c, case.k),
        "flop_ratio": std_cost.macs / sep_cost.macs,
        "torch_ratio": std_s / torch_s, "ours_ratio": std_s / ours_s,
        "standard_gflops": std_cost.flops / std_s / 1e9,
        "torch_gflops": sep_cost.flops / torch_s / 1e9, "ours_gflops": sep_cost.flops / ours_s / 1e9,
        "rounds": len(t["ours"].samples_s),
    }
    row.update(agreement(t["ours"].output, t["torch"].output, dtype))
    yield row
