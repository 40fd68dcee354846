"""One depthwise layer, ours against F.conv2d(groups=C): forward (no_grad) and forward+backward
(grads of input, weight and bias), in one dtype and layout."""
from __future__ import annotations

import functools
from typing import Callable, Dict, Iterator

import torch
import torch.nn.functional as F

import dsconv_ext

from . import traffic
from .check import agreement
from .suites import Layer
from .timing import TimingConfig, compare, copy_buffer_bytes


def memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def make_tensors(layer: Layer, dtype: torch.dtype, layout: str, device) -> Dict[str, torch.Tensor]:
    """Input, weight (scaled to keep outputs O(1)) and bias, in the layout (a model converted with
    .to(memory_format=channels_last) has channels_last weights too), plus an output gradient."""
    fmt = memory_format(layout)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(layer.n, layer.c, layer.h, layer.w, generator=g).to(device, dtype, memory_format=fmt)
    w = (torch.randn(layer.oc, 1, layer.k, layer.k, generator=g) / layer.k).to(device, dtype, memory_format=fmt)
    b = torch.randn(layer.oc, generator=g).to(device, dtype) if layer.bias else None
    dy = torch.randn(layer.n, layer.oc, layer.oh, layer.ow, generator=g).to(device, dtype, memory_format=fmt)
    return {"x": x, "w": w, "b": b, "dy": dy}


def ops(layer: Layer) -> Dict[str, Callable]:
    """name -> f(x, w, b) computing the layer."""
    args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    return {
        "ours": functools.partial(dsconv_ext.depthwise_conv2d, **args),
        "torch": functools.partial(F.conv2d, groups=layer.c, **args),
    }


def callables(layer: Layer, t: Dict[str, torch.Tensor], pass_: str) -> Dict[str, Callable]:
    x, w, b, dy = t["x"], t["w"], t["b"], t["dy"]
    if pass_ == "fwd":

        def forward(op):
            with torch.no_grad():
                return op(x, w, b)

        return {name: functools.partial(forward, op) for name, op in ops(layer).items()}

    xg, wg = x.detach().requires_grad_(), w.detach().requires_grad_()
    bg = b.detach().requires_grad_() if b is not None else None
    inputs = [v for v in (xg, wg, bg) if v is not None]

    def forward_backward(op):
        return torch.autograd.grad(op(xg, wg, bg), inputs, dy)

    return {name: functools.partial(forward_backward, op) for name, op in ops(layer).items()}


@functools.lru_cache(maxsize=1)
def _copy_buffers(device: str):
    src = torch.ones(copy_buffer_bytes(torch.device(device)) // 4, dtype=torch.float32, device=device)
    return src, torch.empty_like(src)


def copy_callable(device) -> Callable:
    """The run reference's copy_ (copy_buffer_bytes: at least 4x the last-level cache, so it streams
    from and to memory), on buffers kept for every layer: the bandwidth reference timed in the same
    rounds as ours and PyTorch's. This VM's bandwidth drifts during a run (copy_ 42 GB/s at times,
    75 at others), so a layer's share of it is reported against the copy timed beside it as well as
    against the run's reference. Returns (callable, bytes moved per call)."""
    src, dst = _copy_buffers(str(device))
    return (lambda: dst.copy_(src)), 2 * src.numel() * src.element_size()


def measure(layer: Layer, dtype: torch.dtype, layout: str, device, cfg: TimingConfig, passes=traffic.PASSES) -> Iterator[Dict]:
    """One row per pass: times of ours and PyTorch's, bytes, FLOPs and agreement (yielded as
    each pass finishes; the tensors are made once for all passes). Forward passes also time a
    memory-bound copy in the same rounds (copy_local_gbps)."""
    t = make_tensors(layer, dtype, layout, device)
    for pass_ in passes:
        fns = callables(layer, t, pass_)
        if pass_ == "fwd":  # rounds of ours, copy, PyTorch's: ours still runs right after PyTorch's
            copy, copy_bytes = copy_callable(device)
            fns = {"ours": fns["ours"], "copy": copy, "torch": fns["torch"]}
        timings = compare(fns, cfg, device)
        ours, ref = timings["ours"], timings["torch"]
        copy_gbps = copy_bytes / timings["copy"].median_s / 1e9 if "copy" in timings else None
        row = {
            "layer": layer.label,
            "n": layer.n, "c": layer.c, "h": layer.h, "w": layer.w, "k": layer.k, "stride": layer.stride,
            "dilation": layer.dilation, "multiplier": layer.multiplier, "bias": layer.bias, "count": layer.count,
            "dtype": str(dtype).replace("torch.", ""), "layout": layout, "pass": pass_,
            "ours_ms": ours.median_s * 1e3, "torch_ms": ref.median_s * 1e3,
            "speedup": ref.median_s / ours.median_s,
            "bytes": traffic.bytes_moved(layer, t["x"].element_size(), pass_),
            "flops": traffic.flops(layer, pass_),
            "rounds": len(ours.samples_s), "calls_per_round": ours.calls_per_round,
            "ours_spread": ours.spread, "torch_spread": ref.spread,
            "copy_local_gbps": copy_gbps,
        }
        row.update(agreement(ours.output, ref.output, dtype))
        del timings, ours, ref
        yield row


def add_rates(row: Dict, copy_gbps: float) -> Dict:
    """GB/s (1e9 B/s), % of the copy bandwidth and GFLOP/s of ours and PyTorch's."""
    local = row.get("copy_local_gbps")
    for who in ("ours", "torch"):
        s = row[f"{who}_ms"] / 1e3
        row[f"{who}_gbps"] = row["bytes"] / s / 1e9
        row[f"{who}_pct_copy"] = 100 * row[f"{who}_gbps"] / copy_gbps if copy_gbps else None
        row[f"{who}_pct_local_copy"] = 100 * row[f"{who}_gbps"] / local if local else None
        row[f"{who}_gflops"] = row["flops"] / s / 1e9
    return row
