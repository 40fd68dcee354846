"""Whole models: a torchvision model as shipped (stock PyTorch) against a deepcopy converted with
dsconv_ext.convert, for inference latency (eval, no_grad) and one training step (forward, cross
entropy, backward, SGD step). Outputs are compared on the first (warm-up) call, before the timed
rounds: the eval outputs, and the loss of the first training step (both copies start from the
same weights and the same RNG seed, so dropout and stochastic depth draw the same masks)."""
from __future__ import annotations

import copy
import dataclasses
from typing import Callable, Dict, Iterator

import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext
from dsconv_ext import cost

from .check import agreement
from .layers import memory_format
from .suites import ModelCase
from .timing import TimingConfig, compare


def _tiny() -> nn.Module:
    """A two-block depthwise-separable net for the smoke test."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def build(name: str) -> nn.Module:
    """A model by name: 'tiny', or any torchvision.models builder (weights=None: nothing is downloaded)."""
    if name == "tiny":
        return _tiny()
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def _seeded_step(model: nn.Module, opt: torch.optim.Optimizer, x, target) -> Callable[[], torch.Tensor]:
    def step():
        torch.manual_seed(0)  # same dropout / stochastic-depth masks for both copies
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).float(), target)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def _inference(model: nn.Module, x) -> Callable[[], torch.Tensor]:
    def run():
        with torch.no_grad():
            return model(x)

    return run


def measure(case: ModelCase, dtype: torch.dtype, layout: str, device, cfg: TimingConfig) -> Iterator[Dict]:
    fmt = memory_format(layout)
    cfg = dataclasses.replace(cfg, first_call_sample_s=None)  # a model's first call is cold: never a sample
    torch.manual_seed(0)
    stock = build(case.model).to(device, dtype).to(memory_format=fmt)
    ours = dsconv_ext.convert(copy.deepcopy(stock))
    converted = sum(type(m) is dsconv_ext.DepthwiseConv2d for m in ours.modules())
    x = torch.randn(case.n, 3, case.size, case.size, generator=torch.Generator().manual_seed(0))
    x = x.to(device, dtype, memory_format=fmt)
    macs = cost.model_cost(stock, (1, 3, case.size, case.size)).macs * case.n
    base = {
        "model": case.model, "case": case.label, "n": case.n, "size": case.size,
        "dtype": str(dtype).replace("torch.", ""), "layout": layout,
        "converted_layers": converted, "macs": macs,
    }

    def row(mode: str, t: Dict, check: Dict) -> Dict:
        o, s = t["ours"].median_s, t["torch"].median_s
        r = dict(base, mode=mode, ours_ms=o * 1e3, torch_ms=s * 1e3, speedup=s / o,
                 ours_images_per_s=case.n / o, torch_images_per_s=case.n / s, rounds=len(t["ours"].samples_s))
        r.update(check)
        return r

    stock.eval(), ours.eval()
    t = compare({"ours": _inference(ours, x), "torch": _inference(stock, x)}, cfg, device)
    # compare() keeps each callable's first output (a warm-up call, made before the timed rounds)
    yield row("inference", t, agreement(t["ours"].output, t["torch"].output, dtype))
    classes = t["torch"].output.shape[-1]
    del t

    fuse = getattr(dsconv_ext, "fuse", None)
    if fuse is not None:
        # Inference with the fused depthwise-separable path: eval-mode copy, BN folded, DW+PW chains fused.
        fused = fuse(copy.deepcopy(ours).eval())
        if any(type(m).__name__ == "FusedSeparableConv2d" for m in fused.modules()):
            t = compare({"ours": _inference(fused, x), "torch": _inference(stock, x)}, cfg, device)
            yield row("inference-fused", t, agreement(t["ours"].output, t["torch"].output, dtype))
            del t
        del fused

    stock.train(), ours.train()
    target = torch.randint(0, classes, (case.n,), generator=torch.Generator().manual_seed(1)).to(device)
    steps = {
        "ours": _seeded_step(ours, torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9), x, target),
        "torch": _seeded_step(stock, torch.optim.SGD(stock.parameters(), lr=1e-3, momentum=0.9), x, target),
    }
    t = compare(steps, cfg, device)  # the warm-up outputs are the first steps' losses
    yield row("train-step", t, agreement(t["ours"].output, t["torch"].output, dtype))
