"""GPU benchmark: dsconv_ext vs F.conv2d(groups=C) on depthwise layers of real networks.

    python bench/gpu_bench.py [--out DIR] [--budget-s 240] [--checks FILE]

Per layer x dtype x memory format x (forward | forward+backward): ours and PyTorch's, timed
interleaved (ours, theirs, ours, ...) with CUDA events after a warm-up, medians reported. Inputs
rotate over enough copies to exceed twice the L2 cache, so small layers are not timed from L2.
A device-to-device copy measured in the same run gives the bandwidth ceiling; each row reports
the time, the achieved bandwidth over the fewest bytes the pass must move (each tensor read or
written once), that bandwidth as a share of the copy's, and the speedup. A correctness column
(relative error of ours vs PyTorch on the first input) guards against fast-but-wrong results.

Fused separable blocks (dsconv_ext.separable_conv2d: depthwise -> act -> pointwise 1x1 -> act in
one kernel) are timed the same way against PyTorch's composition F.conv2d(groups=C) -> act ->
F.conv2d 1x1 -> act (cuDNN; PyTorch's default allows TF32 in cuDNN convolutions, so its fp32 1x1
may run on tensor cores while ours uses exact fp32 FMA). Their bytes are input + output only (the
floor of the fused form). They run after the depthwise forward rows, before the fwd+bwd rows.

Writes results.md and results.json to --out (default: $OUT if set, else bench/results/).
"""
import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import dsconv_ext
from dsconv_ext._cuda_route import torch_depthwise_faster

LAYERS = [
    # name, (N, C, H, W), k, stride
    ("MobileNetV2 3x3 s1", (32, 144, 56, 56), 3, 1),
    ("MobileNetV2 3x3 s2", (32, 144, 56, 56), 3, 2),
    ("MobileNetV2 3x3 14x14", (32, 384, 14, 14), 3, 1),
    ("ConvNeXt 7x7", (32, 96, 56, 56), 7, 1),
    ("RepLKNet 31x31", (16, 256, 32, 32), 31, 1),
]
# name, (N, C, H, W), Cout, k, stride, act, pw_act  (the targets: MobileNetV2-like blocks, batch 16)
FUSED_LAYERS = [
    ("MBv2 144->24 56x56", (16, 144, 56, 56), 24, 3, 1, "relu6", None),
    ("MBv2 576->96 14x14", (16, 576, 14, 14), 96, 3, 1, "relu6", None),
    ("256->256 28x28", (16, 256, 28, 28), 256, 3, 1, "relu", "relu"),
    ("MBv2 144->32 56->28 s2", (16, 144, 56, 56), 32, 3, 2, "relu6", None),
]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
LAYOUTS = ["nchw", "channels_last"]
MODES = ["fwd", "fwd+bwd"]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({e})"


def safe(fn):
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({e!r})"


def copy_bandwidth():
    """Device-to-device copy, bytes read + written per second (median of 20)."""
    n = 256 * 2**20  # 1 GiB of fp32
    src = torch.empty(n, device="cuda").normal_()
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(20):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        dst.copy_(src)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    t = statistics.median(times)
    return 2 * n * 4 / t


def make_sets(shape, k, stride, dtype, layout, bwd, l2_bytes):
    N, C, H, W = shape
    pad = k // 2
    OH = (H + 2 * pad - k) // stride + 1
    OW = (W + 2 * pad - k) // stride + 1
    esize = torch.tensor([], dtype=dtype).element_size()
    per_set = (N * C * H * W + N * C * OH * OW) * esize * (2 if bwd else 1)
    nsets = int(min(8, max(1, math.ceil(2 * l2_bytes / per_set))))
    mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    sets = []
    for _ in range(nsets):
        x = torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=mf)
        go = torch.randn((N, C, OH, OW), device="cuda", dtype=dtype).contiguous(memory_format=mf) if bwd else None
        sets.append((x, go))
    w = (torch.randn(C, 1, k, k, device="cuda", dtype=torch.float32) / k).to(dtype)
    b = torch.randn(C, device="cuda", dtype=dtype)
    # Fewest bytes: forward reads x, writes y; backward reads go and x, writes grad_input
    # (weights and bias are negligible).
    xb, yb = N * C * H * W * esize, N * C * OH * OW * esize
    min_bytes = xb + yb + ((yb + xb + xb) if bwd else 0)
    return sets, w, b, pad, min_bytes


def runner(kind, mode, w, b, stride, pad, C):
    wg = w.detach().clone().requires_grad_(mode == "fwd+bwd")
    bg = b.detach().clone().requires_grad_(mode == "fwd+bwd")

    def conv(x):
        if kind == "ours":
            return dsconv_ext.depthwise_conv2d(x, wg, bg, stride, pad)
        return F.conv2d(x, wg, bg, stride, pad, 1, C)

    if mode == "fwd":

        def fn(x, go):
            with torch.no_grad():
                return conv(x)

    else:

        def fn(x, go):
            x = x.detach().requires_grad_(True)
            wg.grad = bg.grad = None
            y = conv(x)
            y.backward(go)
            return y

    return fn


def time_pair(f_ours, f_ref, sets, reps, warmup=3):
    for _ in range(warmup):
        for x, go in sets[:2]:
            f_ours(x, go)
            f_ref(x, go)
    torch.cuda.synchronize()
    t_ours, t_ref = [], []
    for r in range(reps):
        x, go = sets[r % len(sets)]
        for f, acc in ((f_ours, t_ours), (f_ref, t_ref)) if r % 2 == 0 else ((f_ref, t_ref), (f_ours, t_ours)):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            f(x, go)
            b.record()
            b.synchronize()
            acc.append(a.elapsed_time(b))
    return statistics.median(t_ours), statistics.median(t_ref), t_ours, t_ref


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


_ACTS = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6}


def fused_row(layer, dname, layout, l2):
    """One fused-block row: ours (fused op) vs torch (F.conv2d depthwise -> act -> 1x1 -> act)."""
    lname, shape, Cout, k, stride, act, pw_act = layer
    dtype = DTYPES[dname]
    N, C, H, W = shape
    pad = k // 2
    OH, OW = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    esize = torch.tensor([], dtype=dtype).element_size()
    xb, yb = N * C * H * W * esize, N * Cout * OH * OW * esize
    nsets = int(min(8, max(1, math.ceil(2 * l2 / (xb + yb)))))
    mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    sets = [(torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=mf), None) for _ in range(nsets)]
    dw = (torch.randn(C, 1, k, k, device="cuda") / k).to(dtype)
    pw = (torch.randn(Cout, C, 1, 1, device="cuda") / C**0.5).to(dtype)
    db = torch.randn(C, device="cuda").to(dtype)
    pb = torch.randn(Cout, device="cuda").to(dtype)
    fa, fp = _ACTS[act], _ACTS[pw_act]

    def ours(x, go):
        with torch.no_grad():
            return dsconv_ext.separable_conv2d(x, dw, pw, db, pb, stride, pad, 1, act, pw_act)

    def ref(x, go):
        with torch.no_grad():
            return fp(F.conv2d(fa(F.conv2d(x, dw, db, stride, pad, 1, C)), pw, pb))

    x0 = sets[0][0]
    err = rel_err(ours(x0, None), ref(x0, None))
    ref(x0, None)
    torch.cuda.synchronize()
    a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    ref(x0, None)
    e.record()
    e.synchronize()
    reps = int(max(10, min(60, 800.0 / max(a.elapsed_time(e), 1e-3))))
    t_o, t_r, all_o, all_r = time_pair(ours, ref, sets, reps)
    return dict(
        layer=lname, shape=list(shape), cout=Cout, k=k, stride=stride, dtype=dname, layout=layout, mode="fused fwd",
        ours_ms=t_o, torch_ms=t_r, speedup=t_r / t_o, min_bytes=xb + yb,
        ours_GBps=(xb + yb) / (t_o / 1e3) / 1e9, rel_err_vs_torch=err, reps=reps, sets=nsets,
        ours_spread_ms=[min(all_o), max(all_o)], torch_spread_ms=[min(all_r), max(all_r)],
    )


def routing_summary(rows):
    """Whether the API's 'auto' routing table (dsconv_ext/_cuda_route.py) picked the faster kernel
    in each timed row: the rows where it did not are the table's next edit."""
    done = [r for r in rows if "error" not in r and "auto_picks" in r]
    if not done:
        return []
    wrong = [r for r in done if (r["auto_picks"] == "torch") != (r["speedup"] < 1.0)]
    out = ["", f"Routing table vs this run: 'auto' picks the faster kernel in {len(done) - len(wrong)} of "
           f"{len(done)} rows."]
    if wrong:
        out.append("Rows where it does not: " + "; ".join(
            f"{r['layer']} {r['dtype']} {r['layout']} {r['mode']} (x{r['speedup']:.2f}, picks {r['auto_picks']})"
            for r in wrong))
    return out


def write_results(out, meta, checks, rows, skipped, bw, l2, t_start, fused_rows=()):
    """(Re)writes results.json and results.md; called after every row so a kill keeps what ran."""
    meta["bench_seconds"] = time.time() - t_start
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "checks": checks, "rows": rows, "fused_rows": list(fused_rows), "skipped": skipped},
                  f, indent=1)
    lines = [
        "# dsconv_ext GPU check",
        "",
        f"- device: {meta['device']} ({meta['nvidia_smi']}), {meta['sms']} SMs, L2 {l2 / 2**20:.0f} MiB",
        f"- date: {meta['date']}, git commit: {meta['git_commit']}",
        f"- torch {meta['torch']}, CUDA {meta['cuda']}, cuDNN {meta['cudnn']}, Python {meta['python']}",
        f"- device-to-device copy: {bw / 1e9:.0f} GB/s (bytes read + written)",
        "",
    ]
    if checks:
        lines += ["## Checks", ""] + [f"- {c}" for c in checks] + [""]
    lines += [
        "## Timings (medians, CUDA events, interleaved)",
        "",
        "GB/s = fewest bytes the pass must move / time; % = that over the copy bandwidth; "
        "speedup = torch time / ours.",
        "",
        "| layer | dtype | layout | pass | ours ms | torch ms | speedup | ours GB/s | ours % copy | torch % copy | rel err | API 'auto' runs |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['layer']} | {r['dtype']} | {r['layout']} | {r['mode']} | ERROR: {r['error']} ||||||")
            continue
        lines.append(
            f"| {r['layer']} | {r['dtype']} | {r['layout']} | {r['mode']} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} | "
            f"{r['speedup']:.2f} | {r['ours_GBps']:.0f} | {r['ours_pct_copy']:.1f} | {r['torch_pct_copy']:.1f} | "
            f"{r['rel_err_vs_torch']:.1e} | {r.get('auto_picks', '?')} |"
        )
    lines += routing_summary(rows)
    if fused_rows:
        lines += [
            "",
            "## Fused separable block (forward) vs PyTorch's depthwise + 1x1 composition",
            "",
            "GB/s = (input + output bytes) / time, the fused form's floor; target: speedup >= 1.5.",
            "",
            "| block | dtype | layout | ours ms | torch ms | speedup | ours GB/s | ours % copy | rel err |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in fused_rows:
            if "error" in r:
                lines.append(f"| {r['layer']} | {r['dtype']} | {r['layout']} | ERROR: {r['error']} ||||||")
                continue
            lines.append(
                f"| {r['layer']} | {r['dtype']} | {r['layout']} | {r['ours_ms']:.3f} | {r['torch_ms']:.3f} | "
                f"{r['speedup']:.2f} | {r['ours_GBps']:.0f} | {100 * r['ours_GBps'] * 1e9 / bw:.1f} | "
                f"{r['rel_err_vs_torch']:.1e} |"
            )
    if skipped:
        lines += ["", f"Not run (time budget): {', '.join(skipped)}"]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop starting new rows after this long")
    ap.add_argument("--checks", default=None, help="file of 'name: result' lines from gpu_check.sh")
    ap.add_argument("--quick", action="store_true", help="first dtype/layout only (smoke test)")
    ap.add_argument("--fused-only", action="store_true", help="only the fused separable blocks")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    assert torch.cuda.is_available(), "needs a CUDA device"
    t_start = time.time()
    torch.backends.cudnn.benchmark = False
    # "ours" is dsconv's own CUDA kernels: the public API's 'auto' mode would hand the classes where
    # PyTorch measured faster to PyTorch's kernels (dsconv_ext/_cuda_route.py) and time torch twice.
    dsconv_ext.set_cuda_kernels("dsconv")
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 * 2**20)
    bw = copy_bandwidth()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(0),
        "nvidia_smi": sh("nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader"),
        "sms": props.multi_processor_count,
        "l2_bytes": l2,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": safe(torch.backends.cudnn.version),
        "python": platform.python_version(),
        "git_commit": os.environ.get("DSCONV_COMMIT") or sh("git rev-parse HEAD 2>/dev/null") or "unknown",
        "copy_bandwidth_GBps": bw / 1e9,
    }
    checks = []
    if args.checks and os.path.exists(args.checks):
        with open(args.checks) as f:
            checks = [line.rstrip("\n") for line in f if line.strip()]
    print(f"# {meta['device']}  copy bandwidth {bw / 1e9:.0f} GB/s (read+write)", flush=True)

    rows = []
    fused_rows = []
    skipped = []
    order = [(m, lay, dn, layer) for m in MODES for layer in LAYERS for dn in DTYPES for lay in LAYOUTS]
    fused = [("fused", lay, dn, layer) for layer in FUSED_LAYERS for dn in DTYPES for lay in LAYOUTS]
    n_fwd = sum(1 for o in order if o[0] == "fwd")
    order = order[:n_fwd] + fused + order[n_fwd:]  # fused blocks after the depthwise forward rows
    if args.quick:
        order = [o for o in order if o[1] == "nchw" and o[2] == "fp16"]
    if args.fused_only:
        order = [o for o in order if o[0] == "fused"]
    for mode, layout, dname, layer in order:
        if time.time() - t_start > args.budget_s:
            skipped.append(f"{layer[0]} {dname} {layout} {mode}")
            continue
        if mode == "fused":
            try:
                r = fused_row(layer, dname, layout, l2)
                print(f"{r['layer']:24s} {dname} {layout:13s} fused   ours {r['ours_ms']:8.3f} ms  torch "
                      f"{r['torch_ms']:8.3f} ms  x{r['speedup']:.2f}  err {r['rel_err_vs_torch']:.1e}", flush=True)
            except Exception as ex:  # noqa: BLE001  (report, keep going)
                r = dict(layer=layer[0], dtype=dname, layout=layout, mode="fused fwd", error=repr(ex)[:300])
                print(f"{layer[0]:24s} {dname} {layout:13s} fused ERROR {ex!r}"[:300], flush=True)
            fused_rows.append(r)
            torch.cuda.empty_cache()
            write_results(args.out, meta, checks, rows, skipped, bw, l2, t_start, fused_rows)
            continue
        lname, shape, k, stride = layer
        dtype = DTYPES[dname]
        bwd = mode == "fwd+bwd"
        sets, w, b, pad, min_bytes = make_sets(shape, k, stride, dtype, layout, bwd, l2)
        C = shape[1]
        f_ours = runner("ours", mode, w, b, stride, pad, C)
        f_ref = runner("torch", mode, w, b, stride, pad, C)
        x0, go0 = sets[0]
        try:
            # one timed call to size the repetitions
            a, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            f_ours(x0, go0)
            f_ref(x0, go0)
            torch.cuda.synchronize()
            a.record()
            f_ref(x0, go0)
            e.record()
            e.synchronize()
            t_probe = a.elapsed_time(e)
            reps = int(max(6, min(40, 800.0 / max(t_probe, 1e-3))))
            with torch.no_grad():
                err = rel_err(dsconv_ext.depthwise_conv2d(x0, w, b, stride, pad), F.conv2d(x0, w, b, stride, pad, 1, C))
            t_o, t_r, all_o, all_r = time_pair(f_ours, f_ref, sets, reps)
        except Exception as ex:  # noqa: BLE001  (report, keep going)
            rows.append(dict(layer=lname, dtype=dname, layout=layout, mode=mode, error=repr(ex)[:300]))
            print(f"{lname:24s} {dname} {layout:13s} {mode:7s} ERROR {ex!r}"[:300], flush=True)
            write_results(args.out, meta, checks, rows, skipped, bw, l2, t_start, fused_rows)
            continue
        row = dict(
            layer=lname, shape=list(shape), k=k, stride=stride, dtype=dname, layout=layout, mode=mode,
            ours_ms=t_o, torch_ms=t_r, speedup=t_r / t_o,
            ours_GBps=min_bytes / (t_o / 1e3) / 1e9, torch_GBps=min_bytes / (t_r / 1e3) / 1e9,
            ours_pct_copy=100 * min_bytes / (t_o / 1e3) / bw, torch_pct_copy=100 * min_bytes / (t_r / 1e3) / bw,
            rel_err_vs_torch=err, reps=reps, sets=len(sets),
            auto_picks="torch" if torch_depthwise_faster(dtype, k, k, layout == "channels_last", (stride, stride),
                                                         shape[2] * shape[3]) else "dsconv",
            ours_spread_ms=[min(all_o), max(all_o)], torch_spread_ms=[min(all_r), max(all_r)],
        )
        rows.append(row)
        print(
            f"{lname:24s} {dname} {layout:13s} {mode:7s} ours {t_o:8.3f} ms ({row['ours_pct_copy']:5.1f}% copy)  "
            f"torch {t_r:8.3f} ms ({row['torch_pct_copy']:5.1f}%)  x{row['speedup']:.2f}  err {err:.1e}",
            flush=True,
        )
        del sets, f_ours, f_ref
        torch.cuda.empty_cache()
        write_results(args.out, meta, checks, rows, skipped, bw, l2, t_start, fused_rows)

    write_results(args.out, meta, checks, rows, skipped, bw, l2, t_start, fused_rows)
    print(f"wrote {args.out}/results.md and results.json in {time.time() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
