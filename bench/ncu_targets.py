"""A few benchmark-sized CUDA calls for Nsight Compute, so the GPU check records why a kernel runs
at the speed it does (stall reasons, occupancy, achieved bandwidth), not only how fast:

    ncu --clock-control none --section SpeedOfLight --section Occupancy --section LaunchStats \\
        --section WarpStateStats -k regex:'plane|nhwc|fused' python3 bench/ncu_targets.py

The first GPU run (H200, 2026-11-26) measured the 3x3 depthwise kernels at 9-32% of the copy
bandwidth and the fused separable kernel at 1.5-5%: neither memory- nor FMA-bound. These are the
fused blocks of bench/gpu_bench.py in each of the fused kernel's modes (one call each, after one
warm-up call); the depthwise kernels' profiles are in bench/results/gpu-h200-2026-11-26-b.md.
"""
import os

import torch

import dsconv_ext  # noqa: F401

ops = torch.ops.dsconv


def fused(shape, cout, dtype, layout, env=None):
    """env: DSCONV_FUSED_* settings for this call only (the op reads them at each call)."""
    x = torch.randn(shape, device="cuda", dtype=dtype)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    C = shape[1]
    dww = torch.randn(C, 1, 3, 3, device="cuda", dtype=dtype)
    pw = torch.randn(cout, C, 1, 1, device="cuda", dtype=dtype)

    def f():
        old = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            return ops.separable_conv2d(x, dww, None, pw, None, [1, 1], [1, 1, 1, 1], [1, 1], 2, 0)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return f


PIPE = {"DSCONV_FUSED_STAGE": "3"}
# The plane / nhwc depthwise kernels were profiled in the second H200 session (2026-11-26, see
# bench/results/gpu-h200-2026-11-26-b.md); these are the fused kernel's modes.
CALLS = [
    ("fused 16x144x56x56 ->24 nchw fp16 (band)", fused((16, 144, 56, 56), 24, torch.float16, "nchw")),
    ("fused 16x576x14x14 ->96 nchw fp16 (tile, staging loop)", fused((16, 576, 14, 14), 96, torch.float16, "nchw")),
    ("fused 16x576x14x14 ->96 nchw fp16 (pipeline)", fused((16, 576, 14, 14), 96, torch.float16, "nchw", PIPE)),
    ("fused 16x576x14x14 ->96 cl fp16 (pipeline)", fused((16, 576, 14, 14), 96, torch.float16, "cl", PIPE)),
    ("fused 16x576x14x14 ->96 nchw fp16 (pipeline, NFMAX)",
     fused((16, 576, 14, 14), 96, torch.float16, "nchw", dict(PIPE, DSCONV_FUSED_NFMAX="1"))),
    ("fused 16x256x28x28 ->256 nchw fp16 (pipeline)", fused((16, 256, 28, 28), 256, torch.float16, "nchw", PIPE)),
    ("fused 16x144x56x56 ->24 nchw fp16 (pipeline, tile 64)",
     fused((16, 144, 56, 56), 24, torch.float16, "nchw", dict(PIPE, DSCONV_FUSED_TILE="64"))),
]

if __name__ == "__main__":
    for name, f in CALLS:
        f()
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push(name)
        f()
        torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()
        print("ran", name, flush=True)
