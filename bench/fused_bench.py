"""Benchmark of the fused depthwise-separable block (dsconv_ext.separable_conv2d) on the CPU.

    python bench/fused_bench.py [--threads N] [--repeat R] [--quick] [--clock wall|thread]

1. fused vs unfused forward on MobileNetV2 blocks (depthwise 3x3 + ReLU6, then the linear 1x1
   projection), batch 16, float32, NCHW and channels_last:
     fused          dsconv_ext.separable_conv2d (intermediate kept in an L1/L2 tile)
     unfused        dsconv's own depthwise op + F.conv2d 1x1 (the intermediate goes to memory)
     torch          F.conv2d(groups=C) + F.conv2d 1x1 (stock PyTorch)
   target: fused >= 1.5x faster than unfused.
2. the separable block vs a standard 3x3 convolution, C_in = C_out = 256 at 28x28, batch 16:
   speedup measured against the theoretical 1 / (1/C_out + 1/k^2) = 8.7x (multiply-adds);
   target: >= 90% of it.
3. training: activation memory saved for the backward (bytes of tensors autograd keeps) by the
   fused op (which recomputes the depthwise output in its backward) vs the unfused composition,
   and the forward+backward time of both.
4. batch-1 latency (inference): the fused op against stock PyTorch on single images of MobileNetV2
   blocks, where the op's fixed per-call costs (weight packing, dispatch) weigh most. No target:
   shows whether dsconv_ext.fuse() helps or costs at batch 1.

Times are medians over `repeat` runs, with the contenders interleaved run by run in one process,
so that load from other processes hits them alike. On a machine shared with other jobs,
`--clock thread` (implies --threads 1) measures the thread's CPU time instead of wall-clock time,
which time-slicing by other processes does not inflate. Standalone: needs only torch and dsconv_ext.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dsconv_ext  # noqa: E402
from bench.malloc_state import steady_malloc  # noqa: E402


CLOCK = time.perf_counter


def interleaved(fns, repeat, warmup=2):
    """Median and min seconds (CLOCK) of each fn, runs interleaved."""
    for f in fns:
        for _ in range(warmup):
            f()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t = CLOCK()
            f()
            times[i].append(CLOCK() - t)
    return [(statistics.median(t), min(t)) for t in times]


def fmt_ms(t):
    return f"{t[0] * 1e3:8.2f} ms (min {t[1] * 1e3:6.2f})"


def layouts(x):
    yield "NCHW", x.contiguous()
    yield "channels_last", x.contiguous(memory_format=torch.channels_last)


def section_fused_vs_unfused(args):
    print("\n== 1. fused vs unfused forward: MobileNetV2 blocks (dw 3x3 + ReLU6 -> 1x1 projection), float32 ==")
    blocks = [("144->24 @56x56", 144, 24, 56), ("576->96 @14x14", 576, 96, 14)]
    N = 16 if not args.quick else 4
    ratios = []
    for name, C, Cout, H in blocks:
        dw = torch.randn(C, 1, 3, 3)
        db = torch.randn(C)
        pw = torch.randn(Cout, C, 1, 1) / C**0.5
        pb = torch.randn(Cout)
        for lname, x in layouts(torch.randn(N, C, H, H)):
            fused = lambda: dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "relu6", None)  # noqa: E731
            unfused = lambda: F.conv2d(F.relu6(dsconv_ext.depthwise_conv2d(x, dw, db, 1, 1)), pw, pb)  # noqa: E731
            torch_ = lambda: F.conv2d(F.relu6(F.conv2d(x, dw, db, 1, 1, groups=C)), pw, pb)  # noqa: E731
            torch.testing.assert_close(fused(), torch_(), rtol=1e-4, atol=1e-4)
            tf, tu, tt = interleaved([fused, unfused, torch_], args.repeat)
            ratios.append(tu[0] / tf[0])
            print(f"  N={N} {name} {lname:13s} fused {fmt_ms(tf)} | unfused {fmt_ms(tu)} | torch {fmt_ms(tt)}"
                  f" | fused vs unfused {tu[0] / tf[0]:5.2f}x, vs torch {tt[0] / tf[0]:5.2f}x")
    print(f"  fused vs unfused (dsconv dw + F.conv2d 1x1): min {min(ratios):.2f}x (target >= 1.5x)")


def section_vs_standard(args):
    C, Cout, H, k = 256, 256, 28, 3
    N = 16 if not args.quick else 4
    theory = 1.0 / (1.0 / Cout + 1.0 / k**2)
    print(f"\n== 2. separable (fused) vs standard {k}x{k} conv, {C}->{Cout} @{H}x{H}, N={N}, float32 ==")
    print(f"  theoretical speedup 1/(1/C_out + 1/k^2) = {theory:.2f}x (multiply-adds)")
    w = torch.randn(Cout, C, k, k) / (C * k * k) ** 0.5
    dw = torch.randn(C, 1, k, k)
    pw = torch.randn(Cout, C, 1, 1) / C**0.5
    macs_std = N * H * H * C * Cout * k * k
    macs_sep = N * H * H * (C * k * k + C * Cout)
    for lname, x in layouts(torch.randn(N, C, H, H)):
        std = lambda: F.conv2d(x, w, None, 1, 1)  # noqa: E731
        sep = lambda: dsconv_ext.separable_conv2d(x, dw, pw, None, None, 1, 1, 1)  # noqa: E731
        ts, tp = interleaved([std, sep], args.repeat)
        speedup = ts[0] / tp[0]
        print(f"  {lname:13s} standard {fmt_ms(ts)} ({2 * macs_std / ts[0] / 1e9:6.1f} GFLOP/s) | separable {fmt_ms(tp)}"
              f" ({2 * macs_sep / tp[0] / 1e9:6.1f} GFLOP/s) | speedup {speedup:5.2f}x = {100 * speedup / theory:5.1f}%"
              f" of {theory:.2f}x (target >= 90%)")


def saved_bytes(fn):
    """Bytes of the distinct storages autograd saves for the backward while running fn."""
    seen = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def section_training(args):
    print("\n== 3. training: activation memory kept for the backward, and forward+backward time ==")
    N = 16 if not args.quick else 4
    for name, C, Cout, H in [("144->24 @56x56", 144, 24, 56), ("256->256 @28x28", 256, 256, 28)]:
        x = torch.randn(N, C, H, H, requires_grad=True)
        dw = torch.randn(C, 1, 3, 3, requires_grad=True)
        pw = (torch.randn(Cout, C, 1, 1) / C**0.5).requires_grad_()
        db = torch.randn(C, requires_grad=True)
        pb = torch.randn(Cout, requires_grad=True)
        params_bytes = sum(t.numel() * 4 for t in (x, dw, pw, db, pb))
        fused = lambda: dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "relu6", "relu6")  # noqa: E731
        unfused = lambda: F.relu6(F.conv2d(F.relu6(dsconv_ext.depthwise_conv2d(x, dw, db, 1, 1)), pw, pb))  # noqa: E731
        out_f, mem_f = saved_bytes(fused)
        out_u, mem_u = saved_bytes(unfused)
        act_f, act_u = mem_f - params_bytes, mem_u - params_bytes
        print(f"  N={N} {name}: saved for backward: fused {mem_f / 2**20:7.1f} MiB (input + weights;"
              f" {act_f / 2**20:.1f} MiB of activations) | unfused {mem_u / 2**20:7.1f} MiB ({act_u / 2**20:.1f} MiB of"
              f" activations) | saved {(mem_u - mem_f) / 2**20:.1f} MiB")
        g = torch.randn_like(out_f)

        def step(fn):
            def run():
                for t in (x, dw, pw, db, pb):
                    t.grad = None
                fn().backward(g)
            return run

        tf, tu = interleaved([step(fused), step(unfused)], max(3, args.repeat // 3))
        print(f"      forward+backward: fused (recompute) {fmt_ms(tf)} | unfused {fmt_ms(tu)}")


def section_batch1(args):
    print("\n== 4. batch-1 latency: fused vs stock PyTorch (dw 3x3 + ReLU6 -> 1x1 projection), float32 ==")
    blocks = [("32->16 @112x112", 32, 16, 112), ("144->24 @56x56", 144, 24, 56), ("192->32 @28x28", 192, 32, 28),
              ("576->96 @14x14", 576, 96, 14), ("576->160 @7x7", 576, 160, 7), ("960->160 @7x7", 960, 160, 7)]
    ratios = []
    for name, C, Cout, H in blocks:
        dw, db = torch.randn(C, 1, 3, 3), torch.randn(C)
        pw, pb = torch.randn(Cout, C, 1, 1) / C**0.5, torch.randn(Cout)
        for lname, x in layouts(torch.randn(1, C, H, H)):
            fused = lambda: dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "relu6", None)  # noqa: E731
            torch_ = lambda: F.conv2d(F.relu6(F.conv2d(x, dw, db, 1, 1, groups=C)), pw, pb)  # noqa: E731
            tf, tt = interleaved([fused, torch_], max(5, args.repeat * 5))
            ratios.append(tt[0] / tf[0])
            print(f"  N=1 {name:16s} {lname:13s} fused {tf[0] * 1e6:8.1f} us (min {tf[1] * 1e6:7.1f}) | torch"
                  f" {tt[0] * 1e6:8.1f} us (min {tt[1] * 1e6:7.1f}) | {tt[0] / tf[0]:5.2f}x")
    print(f"  fused vs torch at batch 1: min {min(ratios):.2f}x, geomean "
          f"{statistics.geometric_mean(ratios):.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--quick", action="store_true", help="batch 4, 7 repeats")
    ap.add_argument("--sections", default="1234")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="wall: time.perf_counter; thread: time.thread_time, single thread (for busy machines)")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "thread":
        CLOCK = time.thread_time
        args.threads = 1
    if args.quick:
        args.repeat = min(args.repeat, 7)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # PyTorch's convolutions in their steady allocation state, whatever ran before in this process
    # (bench/malloc_state.py: without it the NCHW standard conv of section 2 took 43-45 ms in a
    # fresh process and 33 ms after section 1, which moved section 2's NCHW ratio by 25 points).
    steady_malloc()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, clock {args.clock}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, dsconv fused path: {torch.ops.dsconv._separable_cpu_isa()}")
    with torch.no_grad():
        if "1" in args.sections:
            section_fused_vs_unfused(args)
        if "2" in args.sections:
            section_vs_standard(args)
        if "4" in args.sections:
            section_batch1(args)
    if "3" in args.sections:
        section_training(args)


if __name__ == "__main__":
    main()
