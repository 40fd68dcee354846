"""Shared helpers for the dsconv_ext test-suite: seeded config sampling, input layouts and
comparison against the F.conv2d(groups=C) reference."""
from __future__ import annotations

import dataclasses
import random
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

# Input layouts. Every one yields a tensor of the same logical shape (N, C, H, W):
#   nchw         contiguous
#   cl           channels_last
#   step         a strided slice (step 2 along C and H, an offset along W: non-zero storage offset)
#   transposed   H and W transposed back (W is the slow dimension, H has unit stride)
#   permuted     a generic permutation of a contiguous (H, C, N, W) tensor
#   expanded     batch dimension expanded from 1 (stride 0)
LAYOUTS = ("nchw", "cl", "step", "transposed", "permuted", "expanded")
DENSE_LAYOUTS = ("nchw", "cl")
VIEW_LAYOUTS = ("step", "transposed", "permuted", "expanded")


def make_input(shape: Sequence[int], layout: str, dtype=torch.float64, generator=None) -> torch.Tensor:
    """Random normal tensor of logical shape (N, C, H, W) laid out as `layout`."""
    N, C, H, W = shape
    kw = dict(dtype=dtype, generator=generator)
    if layout == "nchw":
        return torch.randn(N, C, H, W, **kw)
    if layout == "cl":
        return torch.randn(N, C, H, W, **kw).contiguous(memory_format=torch.channels_last)
    if layout == "step":
        base = torch.randn(N, 2 * C, 2 * H, W + 3, **kw)
        return base[:, ::2, ::2, 1 : W + 1]
    if layout == "transposed":
        return torch.randn(N, C, W, H, **kw).transpose(2, 3)
    if layout == "permuted":
        return torch.randn(H, C, N, W, **kw).permute(2, 1, 0, 3)
    if layout == "expanded":
        return torch.randn(1, C, H, W, **kw).expand(N, C, H, W)
    raise ValueError(layout)


def apply_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The values of `t` (N, C, H, W) re-laid out as `layout` (a copy / view with equal values)."""
    N, C, H, W = t.shape
    if layout == "nchw":
        return t.contiguous()
    if layout == "cl":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "step":
        base = torch.zeros(N, 2 * C, 2 * H, W + 3, dtype=t.dtype)
        view = base[:, ::2, ::2, 1 : W + 1]
        view.copy_(t)
        return view
    if layout == "transposed":
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    if layout == "permuted":
        return t.permute(2, 1, 0, 3).contiguous().permute(2, 1, 0, 3)
    if layout == "expanded":
        raise ValueError("expanded layout can't hold arbitrary values")
    raise ValueError(layout)


Padding = Union[int, Tuple[int, int], str]


@dataclasses.dataclass
class Config:
    N: int
    C: int
    M: int  # channel multiplier
    H: int
    W: int
    k: Tuple[int, int]
    stride: Union[int, Tuple[int, int]]
    padding: Padding
    dilation: Union[int, Tuple[int, int]]
    bias: bool
    layout: str = "nchw"

    @property
    def weight_shape(self):
        return (self.C * self.M, 1, self.k[0], self.k[1])

    @property
    def taps(self) -> int:
        return self.k[0] * self.k[1]

    def id(self) -> str:
        def s(v):
            if isinstance(v, tuple):
                return f"{v[0]}x{v[1]}" if v[0] != v[1] else str(v[0])
            return str(v)

        return (
            f"n{self.N}c{self.C}m{self.M}_{self.H}x{self.W}_k{s(self.k)}_s{s(self.stride)}"
            f"_p{s(self.padding)}_d{s(self.dilation)}_{'b' if self.bias else 'nob'}_{self.layout}"
        )


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def out_size(cfg: Config) -> Tuple[int, int]:
    """Output (OH, OW), or (0, 0)-ish non-positive values when the config is invalid."""
    s, d = _pair(cfg.stride), _pair(cfg.dilation)
    if cfg.padding == "valid":
        p = [(0, 0), (0, 0)]
    elif cfg.padding == "same":
        p = []
        for k, dd in zip(cfg.k, d):
            tot = dd * (k - 1)
            p.append((tot // 2, tot - tot // 2))
    else:
        ph, pw = _pair(cfg.padding)
        p = [(ph, ph), (pw, pw)]
    res = []
    for size, k, st, dd, (a, b) in zip((cfg.H, cfg.W), cfg.k, s, d, p):
        eff = dd * (k - 1) + 1
        padded = size + a + b
        res.append((padded - eff) // st + 1 if padded >= eff else 0)
    return tuple(res)


def _maybe_pair(rng: random.Random, lo: int, hi: int):
    """An int, or (sometimes) a pair of possibly different ints in [lo, hi]."""
    if rng.random() < 0.35:
        return (rng.randint(lo, hi), rng.randint(lo, hi))
    return rng.randint(lo, hi)


def sample_configs(
    seed: int,
    n: int,
    layouts: Sequence[str] = LAYOUTS,
    max_hw: int = 40,
    max_k: int = 11,
    max_c: int = 6,
) -> List[Config]:
    """n valid random configurations (deterministic for a given seed)."""
    rng = random.Random(seed)
    out: List[Config] = []
    while len(out) < n:
        kh = rng.randint(1, max_k)
        kw = kh if rng.random() < 0.5 else rng.randint(1, max_k)
        stride = rng.choice([1, 1, 2, 3, (1, 2), (2, 1), (3, 2)])
        dilation = _maybe_pair(rng, 1, 3) if rng.random() < 0.6 else 1
        r = rng.random()
        if r < 0.15 and _pair(stride) == (1, 1):
            padding: Padding = "same"
        elif r < 0.25:
            padding = "valid"
        elif r < 0.65:
            padding = rng.randint(0, max(kh, kw) // 2 + 2)  # up to beyond k//2
        else:
            padding = (rng.randint(0, kh // 2 + 2), rng.randint(0, kw // 2 + 2))
        # Spatial sizes 1..max_hw, biased so that small sizes (smaller than the kernel) occur.
        if rng.random() < 0.3:
            H, W = rng.randint(1, 6), rng.randint(1, 6)
        else:
            H, W = rng.randint(1, max_hw), rng.randint(1, max_hw)
        cfg = Config(
            N=rng.randint(1, 3),
            C=rng.randint(1, max_c),
            M=rng.randint(1, 3),
            H=H,
            W=W,
            k=(kh, kw),
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=rng.random() < 0.6,
            layout=rng.choice(list(layouts)),
        )
        oh, ow = out_size(cfg)
        if oh <= 0 or ow <= 0:
            continue
        out.append(cfg)
    return out


def make_args(cfg: Config, dtype=torch.float64, generator=None):
    """(x, weight, bias) for a config; x in the config's layout, all random normal."""
    x = make_input((cfg.N, cfg.C, cfg.H, cfg.W), cfg.layout, dtype, generator)
    w = torch.randn(cfg.weight_shape, dtype=dtype, generator=generator)
    b = torch.randn(cfg.C * cfg.M, dtype=dtype, generator=generator) if cfg.bias else None
    return x, w, b


def reference(x, w, b, stride=1, padding=0, dilation=1):
    return F.conv2d(x, w, b, stride, padding, dilation, groups=x.shape[-3])


def assert_same_layout(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Shape, dtype, device and strides as F.conv2d's."""
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert out.dtype == ref.dtype, f"dtype {out.dtype} != reference {ref.dtype}"
    assert out.device == ref.device
    assert out.stride() == ref.stride(), f"strides {out.stride()} != reference {ref.stride()} (shape {tuple(ref.shape)})"
    for fmt in (torch.contiguous_format, torch.channels_last):
        if out.dim() == 4:
            assert out.is_contiguous(memory_format=fmt) == ref.is_contiguous(memory_format=fmt), fmt


# float64 results differ from F.conv2d's only by summation order.
F64_TOL = dict(rtol=1e-10, atol=1e-10)


def lowp_tol(dtype: torch.dtype, taps: int) -> dict:
    """Tolerance of a float32 / bfloat16 / float16 result against the float64 reference computed
    from the same (rounded) inputs. 16-bit types accumulate in float32, so the error is the final
    rounding (relative to the output) plus a float32 accumulation term growing with the kernel."""
    if dtype == torch.float64:
        return F64_TOL
    if dtype == torch.float32:
        return dict(rtol=1e-5, atol=2e-6 * taps)
    if dtype == torch.bfloat16:
        return dict(rtol=1e-2, atol=1e-2 + 1e-4 * taps)
    if dtype == torch.float16:
        return dict(rtol=2e-3, atol=2e-3 + 2e-5 * taps)
    raise ValueError(dtype)


def grad_output_like(y: torch.Tensor, generator=None) -> torch.Tensor:
    """A random grad_output with y's shape and strides."""
    g = torch.randn(y.shape, dtype=y.dtype, generator=generator)
    return torch.empty_strided(y.shape, y.stride(), dtype=y.dtype).copy_(g)


def supported_isas() -> List[str]:
    """The CPU instruction sets dsconv can be forced to on this machine (dsconv_ext.set_cpu_isa),
    best first; each ISA-parametrised test runs on all of them."""
    import dsconv_ext

    prev = dsconv_ext.cpu_isa()
    out = []
    for isa in ("avx512", "avx2", "generic"):
        try:
            dsconv_ext.set_cpu_isa(isa)
            out.append(isa)
        except RuntimeError:
            pass
    dsconv_ext.set_cpu_isa(prev)
    return out
