"""Runs every CUDA kernel path of dsconv_ext once on tiny tensors, for compute-sanitizer:

    compute-sanitizer --tool memcheck --error-exitcode 9 python3 bench/sanitize_kernels.py

Each case calls the forward and the backward (all three gradients, then bias only) and checks the
results loosely against F.conv2d on the CPU, so a wrong index shows up even when it stays inside
an allocation. The comment on each case names the path dw_dispatch.cpp / dw_wgrad.cu should pick.
FUSED_CASES do the same for the fused separable kernel (csrc/cuda/fused_*): forward against the
float64 CPU composition.
"""
import os
import sys

import torch
import torch.nn.functional as F

import dsconv_ext  # noqa: F401

ops = torch.ops.dsconv

# (N, C, H, W), (KH, KW), stride, pad (t, b, l, r), dil, M, layout, dtype   # expected paths
CASES = [
    ((2, 3, 9, 11), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "nchw", torch.float32),  # plane_small 3/1, wgrad plane fast
    ((1, 2, 13, 10), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, "nchw", torch.float16),  # plane_small 3/2, gi up=2 M=2
    ((1, 2, 9, 12), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 1, "nchw", torch.bfloat16),  # plane_small 5/2
    ((1, 2, 11, 9), (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 1, "nchw", torch.float32),  # plane_small 7/1
    ((1, 3, 5, 133), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "nchw", torch.float16),  # two tiles along x
    ((1, 2, 20, 19), (9, 9), (1, 1), (4, 4, 4, 4), (1, 1), 1, "nchw", torch.float32),  # plane_large fast
    ((1, 2, 35, 33), (31, 31), (1, 1), (15, 15, 15, 15), (1, 1), 1, "nchw", torch.float16),  # plane_large fast, K=31
    ((1, 2, 11, 9), (3, 2), (2, 1), (1, 0, 2, 1), (2, 1), 2, "nchw", torch.float32),  # plane_large slow, wgrad slow
    ((2, 8, 7, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "cl", torch.float32),  # nhwc_small 3/1, wgrad nhwc
    ((1, 8, 9, 7), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 1, "cl", torch.float16),  # nhwc_small 5/2, gi nhwc_generic up2
    ((1, 8, 9, 10), (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, "cl", torch.bfloat16),  # nhwc_small 7/2, wgrad nhwc 7/2
    ((1, 5, 8, 6), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "cl", torch.float32),  # nhwc_generic V=1
    ((1, 8, 9, 10), (4, 2), (1, 2), (2, 1, 0, 1), (1, 2), 1, "cl", torch.float16),  # nhwc_generic V=4, wgrad plane
    ((2, 4, 6, 5), (3, 3), (1, 1), (2, 0, 0, 2), (1, 1), 2, "cl", torch.float32),  # channels_last M=2 -> plane
    ((1, 3, 8, 9), (3, 3), (2, 1), (1, 1, 1, 1), (2, 1), 2, "nchw", torch.float64),  # generic fwd / gi / wgrad
    ((1, 8, 8, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "cl", torch.float64),  # generic, channels-inner order
]


# (N, C, H, W), Cout, (KH, KW), stride, pad (t, b, l, r), dil, layout, dtype, act, pw_act   # what it covers
FUSED_CASES = [
    ((2, 40, 9, 11), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "nchw", torch.float16, 2, 0),  # K=3, chunk tail
    ((1, 33, 10, 9), 300, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), "cl", torch.bfloat16, 1, 3),  # 2 Cout blocks, tails
    ((1, 16, 9, 12), 40, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), "cl", torch.float32, 4, 5),  # fp32 FMA, K=5
    ((2, 36, 11, 9), 150, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), "nchw", torch.float32, 3, 1),  # fp32 2 Cout blocks
    ((1, 8, 13, 10), 12, (3, 2), (2, 1), (1, 2, 0, 1), (1, 2), "cl", torch.float16, 5, 2),  # runtime K, dilation
    ((1, 5, 12, 7), 9, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), "view", torch.float16, 0, 0),  # strided view
    ((1, 4, 11, 9), 6, (9, 9), (1, 1), (4, 4, 4, 4), (1, 1), "nchw", torch.float16, 1, 0),  # > 64 taps: composition
    ((1, 6, 7, 8), 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "cl", torch.float64, 3, 3),  # fp64: composition
    # cp.async pipeline (the default; main runs the fused cases again with DSCONV_FUSED_STAGE=2):
    # pairs with the odd-padding shift and a chunk tail; pixel-major 16-byte groups, 2 Cout blocks
    ((2, 40, 9, 10), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "nchw", torch.float16, 2, 0),
    ((1, 48, 8, 10), 300, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), "cl", torch.bfloat16, 1, 0),
]
ACTS = [None, F.relu, F.relu6, F.silu, F.hardswish, F.gelu]


def fused_cases():
    bad = 0
    for shape, Cout, (KH, KW), s, p, d, layout, dtype, act, pw_act in FUSED_CASES:
        N, C, H, W = shape
        if layout == "view":
            x = make((N, C, 2 * H, W + 2), "nchw", dtype)[:, :, ::2, 1 : W + 1]
        else:
            x = make(shape, layout, dtype)
        dw = (torch.randn(C, 1, KH, KW, dtype=torch.float64) / (KH * KW) ** 0.5).to("cuda", dtype)
        pw = (torch.randn(Cout, C, 1, 1, dtype=torch.float64) / C**0.5).to("cuda", dtype)
        db = torch.randn(C, dtype=torch.float64).to("cuda", dtype)
        pb = torch.randn(Cout, dtype=torch.float64).to("cuda", dtype)
        y = ops.separable_conv2d(x, dw, db, pw, pb, list(s), list(p), list(d), act, pw_act)
        torch.cuda.synchronize()
        r = F.conv2d(F.pad(x.double().cpu(), (p[2], p[3], p[0], p[1])), dw.double().cpu(), db.double().cpu(), s, 0, d,
                     groups=C)
        r = ACTS[act](r) if act else r
        r = F.conv2d(r, pw.double().cpu(), pb.double().cpu())
        r = ACTS[pw_act](r) if pw_act else r
        tol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 3e-2)
        e = rel(y, r)
        ok = e < tol
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} fused {shape} ->{Cout} k{KH}x{KW} s{s} d{d} {layout} {dtype}: {e:.1e}", flush=True)
    return bad


def make(shape, layout, dtype):
    t = torch.randn(shape, dtype=torch.float64)
    if layout == "cl":
        t = t.contiguous(memory_format=torch.channels_last)
    return t.to("cuda", dtype)


def rel(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def main():
    torch.manual_seed(0)
    bad = 0
    for shape, (KH, KW), s, p, d, M, layout, dtype in CASES:
        N, C, H, W = shape
        x = make(shape, layout, dtype)
        w = torch.randn(C * M, 1, KH, KW, dtype=torch.float64).to("cuda", dtype)
        b = torch.randn(C * M, dtype=torch.float64).to("cuda", dtype)
        y = ops.depthwise_conv2d(x, w, b, list(s), list(p), list(d))
        go = torch.randn(y.shape, dtype=torch.float64).to("cuda", dtype)
        if layout == "cl":
            go = go.contiguous(memory_format=torch.channels_last)
        gi, gw, gb = ops.depthwise_conv2d_backward(go, x, w, list(s), list(p), list(d), [True, True, True])
        _, _, gb2 = ops.depthwise_conv2d_backward(go, x, w, list(s), list(p), list(d), [False, False, True])
        torch.cuda.synchronize()
        xr, wr, br = (t.double().cpu().requires_grad_(True) for t in (x, w, b))
        yr = F.conv2d(F.pad(xr, (p[2], p[3], p[0], p[1])), wr, br, s, 0, d, groups=C)
        yr.backward(go.double().cpu())
        tol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 2e-2)
        errs = [rel(y, yr), rel(gi, xr.grad), rel(gw, wr.grad), rel(gb, br.grad), rel(gb2, br.grad)]
        ok = all(e < tol for e in errs)
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {shape} k{KH}x{KW} s{s} d{d} M{M} {layout} {dtype}: "
              + " ".join(f"{e:.1e}" for e in errs), flush=True)
    bad += fused_cases()
    os.environ["DSCONV_FUSED_STAGE"] = "2"  # the same fused cases through the staging loops
    print("DSCONV_FUSED_STAGE=2:", flush=True)
    bad += fused_cases()
    total = len(CASES) + 2 * len(FUSED_CASES)
    print(f"{total - bad}/{total} cases within tolerance", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
