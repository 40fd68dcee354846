"""Train a small MobileNet-style network on scikit-learn's handwritten digits with dsconv_ext.

    python examples/train_digits.py              # dsconv_ext only
    python examples/train_digits.py --compare    # and the same network in pure PyTorch

The data set (sklearn.datasets.load_digits: 1797 8x8 grey-scale digits) ships with scikit-learn,
so nothing is downloaded. The network is a stem convolution, four depthwise-separable blocks
(dsconv_ext.DepthwiseSeparableConv2d: depthwise 3x3 + BatchNorm + ReLU, pointwise 1x1 + BatchNorm
+ ReLU), global average pooling, dropout and a linear classifier, trained with AdamW, a one-cycle
schedule and +-1 pixel random shifts. The default 12 epochs reach about 98-99% test accuracy in
about 5 s on one CPU core (the test split is 450 images; 97% is 13 mistakes).

With --compare a pure PyTorch twin (the same weights, nn.Conv2d(groups=C) in place of every
DepthwiseConv2d, plain modules in place of the separable blocks) trains on the same batches with
the same dropout masks, and both curves are printed side by side. In float64 (--dtype float64)
they agree to rounding at every step. In float32 they agree for the first few dozen steps, then
last-bit differences between the two implementations grow, as they do between any two float32
runs of a network that differ in summation order: the curves stay close, not identical.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

try:
    import dsconv_ext
except ImportError:  # run from a source checkout with the extension built in place
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import dsconv_ext
from dsconv_ext import DepthwiseConv2d


def _separable_block(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Module:
    """Depthwise k x k + BatchNorm + ReLU, then pointwise 1x1 + BatchNorm + ReLU (the MobileNet v1
    block) from plain modules, with dsconv_ext.DepthwiseSeparableConv2d's signature (the part used
    here) and submodule names, for dsconv_ext versions that don't have that class."""
    return nn.Sequential(
        OrderedDict(
            dw=DepthwiseConv2d(in_channels, in_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            dw_bn=nn.BatchNorm2d(in_channels),
            dw_act=nn.ReLU(),
            pw=nn.Conv2d(in_channels, out_channels, 1, bias=False),
            pw_bn=nn.BatchNorm2d(out_channels),
            pw_act=nn.ReLU(),
        )
    )


# The library's block when this dsconv_ext version has it (in eval mode it folds BatchNorm and
# runs the fused depthwise-separable kernel), else the equivalent plain-module block above.
SeparableBlock = getattr(dsconv_ext, "DepthwiseSeparableConv2d", None) or _separable_block


def build_model(width: int = 32, num_classes: int = 10) -> nn.Module:
    """8x8 input: stem (stride 1) -> 8x8 -> 4x4 -> 4x4 -> 2x2 -> pool -> linear."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(inplace=True),
        SeparableBlock(w, 2 * w, 3, stride=1),
        SeparableBlock(2 * w, 4 * w, 3, stride=2),
        SeparableBlock(4 * w, 4 * w, 3, stride=1),
        SeparableBlock(4 * w, 8 * w, 3, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(8 * w, num_classes),
    )


def pure_pytorch_twin(model: nn.Module) -> nn.Module:
    """A deep copy of `model` that runs on PyTorch's own layers only, with the same weights: every
    DepthwiseSeparableConv2d becomes an nn.Sequential of its submodules (dw, dw_bn, dw_act, pw,
    pw_bn, pw_act: what it runs in train mode, so the state_dict keys stay the same), and every
    DepthwiseConv2d the nn.Conv2d it extends (the inverse of dsconv_ext.convert)."""
    twin = copy.deepcopy(model)
    separable = getattr(dsconv_ext, "DepthwiseSeparableConv2d", None)
    if separable is not None:
        for parent in list(twin.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, separable):
                    parts = ("dw", "dw_bn", "dw_act", "pw", "pw_bn", "pw_act")
                    setattr(parent, name, nn.Sequential(OrderedDict((p, getattr(child, p)) for p in parts)))
    for m in twin.modules():
        if isinstance(m, DepthwiseConv2d):
            m.__class__ = nn.Conv2d
    return twin


def _count_dsconv_calls(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "dsconv":
                calls.append(func)
            return func(*args, **(kwargs or {}))

    was_training = model.training
    model.eval()
    with Count(), torch.no_grad():
        model(x)
    model.train(was_training)
    return len(calls)


def load_data(test_size: float = 0.25, seed: int = 0):
    """(x_train, y_train, x_test, y_test): float32 (N, 1, 8, 8) images scaled to [0, 1] and
    standardised with the training set's mean and std; a stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=test_size, random_state=seed, stratify=y.numpy()
    )
    idx_train, idx_test = torch.from_numpy(idx_train), torch.from_numpy(idx_test)
    mean, std = x[idx_train].mean(), x[idx_train].std()
    x = (x - mean) / std
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Data augmentation: each image translated by up to max_shift pixels in each direction
    (borders replicated: the digits' borders are background)."""
    n, _, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4, mode="replicate")
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).float().mean().item()


def train(
    models: Dict[str, nn.Module],
    data,
    epochs: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    augment: bool = True,
    log=print,
) -> Dict[str, Dict[str, List[float]]]:
    """Train every model on identical batches (one shuffling generator, the same dropout masks:
    the RNG is re-seeded per model and step), AdamW with a one-cycle schedule. Returns per-model
    curves: mean train loss per epoch, test accuracy per epoch, per-step train loss."""
    x_train, y_train, x_test, y_test = data
    steps_per_epoch = (len(y_train) + batch_size - 1) // batch_size
    opts, scheds = {}, {}
    for name, model in models.items():
        opts[name] = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scheds[name] = torch.optim.lr_scheduler.OneCycleLR(
            opts[name], max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
        )
    curves = {name: {"loss": [], "acc": [], "step_loss": []} for name in models}
    shuffle = torch.Generator().manual_seed(seed)
    step = 0
    names = list(models)
    header = "epoch " + " ".join(f"{'loss ' + n:>16} {'acc ' + n:>12}" for n in names)
    log(header)
    for epoch in range(epochs):
        perm = torch.randperm(len(y_train), generator=shuffle)
        sums = dict.fromkeys(names, 0.0)
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if augment:
                xb = random_shift(xb, shuffle)
            for name in names:
                model = models[name]
                model.train()
                torch.manual_seed(seed * 1_000_003 + step)  # same dropout masks for every model
                loss = F.cross_entropy(model(xb), yb)
                opts[name].zero_grad(set_to_none=True)
                loss.backward()
                opts[name].step()
                scheds[name].step()
                curves[name]["step_loss"].append(loss.item())
                sums[name] += loss.item() * len(idx)
            step += 1
        for name in names:
            curves[name]["loss"].append(sums[name] / len(y_train))
            curves[name]["acc"].append(evaluate(models[name], x_test, y_test))
        log(f"{epoch + 1:5d} " + " ".join(f"{curves[n]['loss'][-1]:16.5f} {curves[n]['acc'][-1]:12.4f}" for n in names))
    return curves


def main(argv: Optional[Sequence[str]] = None, log=print) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle schedule)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--no-augment", action="store_true", help="no random +-1 pixel shifts")
    parser.add_argument("--width", type=int, default=32, help="stem channels; the blocks use 2x, 4x, 4x, 8x")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compare", action="store_true", help="also train the pure PyTorch twin and compare curves")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    data = [t.to(dtype) if t.is_floating_point() else t for t in load_data(seed=args.seed)]
    torch.manual_seed(args.seed)
    model = dsconv_ext.convert(build_model(args.width)).to(dtype)
    n_dw = sum(isinstance(m, DepthwiseConv2d) for m in model.modules())
    models = {"dsconv": model}
    if args.compare:
        # identical initial weights: a copy taken before any training, its layers back to nn.Conv2d
        twin = pure_pytorch_twin(model)
        if _count_dsconv_calls(twin, data[0][:2]) != 0:
            raise RuntimeError("the pure PyTorch twin still calls dsconv ops; --compare can't build it")
        models["pytorch"] = twin
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"digits: {len(data[1])} train / {len(data[3])} test images of 8x8; model: {n_params} parameters, "
        f"{n_dw} DepthwiseConv2d layers in {SeparableBlock.__name__} blocks; {torch.get_num_threads()} threads"
    )
    start = time.perf_counter()
    curves = train(
        models, data, args.epochs, args.batch_size, args.lr, args.weight_decay, args.seed, not args.no_augment, log=log
    )
    elapsed = time.perf_counter() - start
    final = {name: c["acc"][-1] for name, c in curves.items()}
    log(f"done in {elapsed:.1f} s; final test accuracy: " + ", ".join(f"{n} {a:.4f}" for n, a in final.items()))
    if args.compare:
        a, b = curves["dsconv"]["step_loss"], curves["pytorch"]["step_loss"]
        max_rel = max(abs(u - v) / max(abs(v), 1e-12) for u, v in zip(a, b))
        log(f"largest relative difference between the per-step train losses: {max_rel:.2e}")
    return {"curves": curves, "final_accuracy": final, "seconds": elapsed, "depthwise_layers": n_dw}


if __name__ == "__main__":
    main()
