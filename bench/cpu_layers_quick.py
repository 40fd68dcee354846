"""Quick CPU benchmark: dsconv_ext vs F.conv2d(groups=C), interleaved in one process.

    python bench/cpu_layers_quick.py [--threads 2] [--rounds 5] [--dtype float32] [--only k3s1,...]
                                     [--bwd] [--layouts nchw,cl]

Reports medians over rounds (each round times both implementations back to back), the bytes
moved by the forward (input + output) as GB/s and as a share of the measured copy bandwidth
(a large tensor clone), and GFLOP/s (2 * N * OC * OH * OW * kH * kW / time).
"""
import argparse
import os
import statistics
import sys
import time

# Memory regime (--alloc): every call allocates its output, and fresh multi-MB allocations
# page-fault (4 KiB pages, ~0.2-0.4 ms per MB here), which can swamp the kernels.
#   default  as a user gets it (what bench/ and the copy reference `clone` see)
#   thp      torch's allocator asks for huge pages (THP_MEM_ALLOC_ENABLE=1)
#   reuse    glibc keeps freed memory (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_): no faults,
#            kernel time only; the process re-executes itself to set this before glibc starts.
def _alloc_mode():
    for i, a in enumerate(sys.argv):
        if a == "--alloc" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--alloc="):
            return a.split("=", 1)[1]
    return "default"


if _alloc_mode() == "thp":
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
elif _alloc_mode() == "reuse" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 40)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(1 << 40)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dsconv_ext  # noqa: E402

SHAPES = {
    # name: (N, C, H, W, k, stride)
    "mbv2_k3s1": (32, 144, 56, 56, 3, 1),
    "mbv2_k3s2": (32, 144, 56, 56, 3, 2),
    "mbv2_k3_14": (32, 384, 14, 14, 3, 1),
    "effb0_k5s1": (32, 240, 28, 28, 5, 1),
    "effb0_k5s2": (32, 240, 28, 28, 5, 2),
    "convnext_k7": (32, 96, 56, 56, 7, 1),
    "replk_k31": (16, 256, 32, 32, 31, 1),
    "replk_k13": (16, 512, 16, 16, 13, 1),
}


def timeit(fn, reps):
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def copy_bandwidth(dtype):
    x = torch.empty(64 * 2**20, dtype=torch.float32).normal_().to(dtype)  # 256 MB in fp32
    y = torch.empty_like(x)
    tc = [timeit(lambda: x.clone(), 3) for _ in range(5)]
    tp = [timeit(lambda: y.copy_(x), 3) for _ in range(5)]
    nb = 2 * x.numel() * x.element_size()
    return nb / statistics.median(tc) / 1e9, nb / statistics.median(tp) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=0, help="calls per timing (0: auto)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--only", default="")
    ap.add_argument("--layouts", default="nchw,cl")
    ap.add_argument("--bwd", action="store_true", help="also time forward+backward")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--alloc", default="default", choices=["default", "thp", "reuse"])
    ap.add_argument("--isa", default="", help="force dsconv_ext.set_cpu_isa")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.isa:
        dsconv_ext.set_cpu_isa(args.isa)
    dtype = getattr(torch, args.dtype)
    bw, bw_prealloc = copy_bandwidth(dtype)
    print(f"threads={args.threads} dtype={args.dtype} isa={dsconv_ext.cpu_isa()} "
          f"alloc={args.alloc} "
          f"copy bandwidth: clone {bw:.1f} GB/s, copy_ into a preallocated tensor {bw_prealloc:.1f} GB/s")
    names = [n for n in SHAPES if not args.only or any(o in n for o in args.only.split(","))]
    fwd_ratio, fb_ratio = {"nchw": [], "cl": []}, {"nchw": [], "cl": []}
    for name in names:
        N, C, H, W, k, s = SHAPES[name]
        for layout in args.layouts.split(","):
            mf = torch.channels_last if layout == "cl" else torch.contiguous_format
            x = torch.randn(N, C, H, W).to(dtype).contiguous(memory_format=mf)
            w = torch.randn(C, 1, k, k).to(dtype)
            b = torch.randn(C).to(dtype)
            pad = k // 2
            ours = lambda: dsconv_ext.depthwise_conv2d(x, w, b, s, pad)
            ref = lambda: F.conv2d(x, w, b, s, pad, 1, C)
            y = ours()
            nbytes = (x.numel() + y.numel()) * x.element_size()
            flops = 2 * y.numel() * k * k
            t1 = timeit(ours, 1)
            reps = args.reps or max(1, min(50, int(0.3 / max(t1, 1e-6))))
            to, tr = [], []
            for _ in range(args.rounds):
                to.append(timeit(ours, reps))
                if not args.no_torch:
                    tr.append(timeit(ref, reps))
            mo = statistics.median(to)
            line = (f"{name:12s} {layout:4s} fwd ours {mo*1e3:8.2f} ms {nbytes/mo/1e9:6.1f} GB/s "
                    f"({100*nbytes/mo/1e9/bw:5.1f}% copy) {flops/mo/1e9:7.1f} GFLOP/s")
            if tr:
                mr = statistics.median(tr)
                fwd_ratio[layout].append(mr / mo)
                line += f" | torch {mr*1e3:8.2f} ms  x{mr/mo:5.2f}"
            if args.bwd:
                xg = x.detach().requires_grad_()
                wg = w.detach().requires_grad_()
                bg = b.detach().requires_grad_()
                gy = torch.randn_like(y)

                def fb_ours():
                    dsconv_ext.depthwise_conv2d(xg, wg, bg, s, pad).backward(gy)

                def fb_ref():
                    F.conv2d(xg, wg, bg, s, pad, 1, C).backward(gy)

                fo, fr = [], []
                r2 = max(1, reps // 3)
                for _ in range(args.rounds):
                    fo.append(timeit(fb_ours, r2))
                    if not args.no_torch:
                        fr.append(timeit(fb_ref, r2))
                mfo = statistics.median(fo)
                line += f" || fwd+bwd ours {mfo*1e3:8.2f} ms {3*flops/mfo/1e9:7.1f} GFLOP/s"
                if fr:
                    mfr = statistics.median(fr)
                    fb_ratio[layout].append(mfr / mfo)
                    line += f" torch {mfr*1e3:8.2f} ms x{mfr/mfo:5.2f}"
            print(line, flush=True)
    for layout in fwd_ratio:
        for label, r in (("fwd", fwd_ratio[layout]), ("fwd+bwd", fb_ratio[layout])):
            if r:
                g = statistics.geometric_mean(r)
                print(f"geomean speedup {layout:4s} {label:8s} x{g:.2f} over {len(r)} layers")


if __name__ == "__main__":
    main()
