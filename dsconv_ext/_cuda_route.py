"""Which kernel runs a CUDA call of the public API: dsconv's own or PyTorch's.

The first GPU run (NVIDIA H200, 2026-11-26; bench/results/gpu-h200-2026-11-26.md) found dsconv's
CUDA kernels correct but, on several common shapes, slower than PyTorch's own:

  - depthwise 3x3: 0.31-1.19x PyTorch's time ratio (below 1 in 26 of its 30 rows); 7x7 in
    channels_last with 16-bit types: 0.69-0.88x. Faster: 7x7 NCHW (1.5-1.9x), 7x7 fp32
    channels_last (1.7-3.4x), 31x31 (2.2-11x).
  - the fused separable kernel: 0.40-0.88x of PyTorch's depthwise + cuDNN 1x1 composition.

A drop-in must not make a layer slower than the nn.Conv2d it replaces. So in the default 'auto'
mode the calls in the slower classes run PyTorch's own F.conv2d(groups=C) (cuDNN or its native
depthwise kernel, with PyTorch's autograd), and inference calls of separable_conv2d run
PyTorch's composition. Everything else, and every CPU call, runs dsconv's kernels. Calls that
need grad keep the fused op: its backward recomputes instead of storing the intermediate.

Modes: 'auto' (default), 'dsconv' (always dsconv's CUDA kernels: what the GPU benchmark times),
'torch' (PyTorch's wherever it can express the call). Set with the environment variable
DSCONV_CUDA_KERNELS at import, or set_cuda_kernels() at run time. The second H200 run (same day,
after the plane kernels' tile loader lost its per-element divisions: 1.9x fewer instructions)
measured NCHW 3x3 stride 1 on 56x56 maps at 1.07x (fp16), 1.53x (bf16), 1.55x (fp32) forward
against PyTorch, while 3x3 stride 2 and 14x14 maps stayed at 0.59-0.79x: fp32 / bf16 NCHW 3x3
stride-1 calls on maps of at least 56x56 now run dsconv's kernel. Against that run the table then
picks the faster kernel in 58 of 60 rows (misses: fp16 NCHW 3x3 s1 forward at 1.07x, fp32
forward+backward at 1.01x). bench/gpu_bench.py reports this agreement on every run
('Routing table vs this run'); the third run (same kernels, bench/results/gpu-h200-2026-11-26-c.md)
agreed in 56 of 60 rows, missing only forward rows at 1.00-1.17x whose forward+backward is
slower with dsconv (fp16 NCHW 56x56 forward 1.11x, forward+backward 0.67x). Unmeasured classes (5x5,
float64, asymmetric padding, which F.conv2d can't take without an extra F.pad pass) stay with
dsconv. Revisit the table after each GPU benchmark run.
"""
import os

import torch

_MODES = ("auto", "dsconv", "torch")


def _mode_from_env() -> str:
    mode = os.environ.get("DSCONV_CUDA_KERNELS", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"dsconv: DSCONV_CUDA_KERNELS must be one of {', '.join(_MODES)}, got {mode!r}")
    return mode


_mode = _mode_from_env()


def set_cuda_kernels(mode: str) -> None:
    """Which CUDA kernels the public API uses: 'auto' (PyTorch's where they measured faster),
    'dsconv' (always dsconv's) or 'torch' (PyTorch's wherever possible)."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"dsconv: set_cuda_kernels: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    _mode = mode


def cuda_kernels() -> str:
    """The current mode of set_cuda_kernels()."""
    return _mode


_SIXTEEN_BIT = (torch.float16, torch.bfloat16)


def torch_depthwise_faster(dtype: torch.dtype, kh: int, kw: int, channels_last: bool, stride=None,
                           hw=None, dilation=(1, 1)) -> bool:
    """Whether PyTorch's own depthwise kernel measured faster than dsconv's on the H200 for this
    class of call (see the module docstring). stride: (sh, sw) or None; hw: input H * W or None
    (unknown: the 3x3 rule's exception does not apply); dilation: (dh, dw)."""
    if dtype not in (torch.float32,) + _SIXTEEN_BIT:
        return False
    taps = kh * kw
    if (kh, kw) == (3, 3) and not channels_last and dtype in (torch.float32, torch.bfloat16) and stride is not None \
            and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and hw is not None and hw >= 56 * 56:
        # Second H200 run (plane tile loader without per-element division): NCHW 3x3 stride 1 on
        # 56x56 maps, dsconv 1.53x (bf16) / 1.55x (fp32) forward, 1.18x / 1.01x forward+backward.
        return False
    if taps <= 9:
        return True
    return channels_last and dtype in _SIXTEEN_BIT and taps <= 49


def use_torch_depthwise(input: torch.Tensor, weight: torch.Tensor, padding, stride=None, dilation=(1, 1)) -> bool:
    """For a CUDA call of depthwise_conv2d: run F.conv2d instead of dsconv's kernel?
    padding: (top, bottom, left, right); stride: (sh, sw); dilation: (dh, dw)."""
    if _mode == "dsconv" or input.device.type != "cuda":
        return False
    top, bottom, left, right = padding
    if top != bottom or left != right:
        return False  # F.conv2d would need an F.pad pass first
    if _mode == "torch":
        return True
    from ._layout import output_memory_format

    cl = output_memory_format(input if input.dim() == 4 else input.unsqueeze(0), weight) == torch.channels_last
    hw = input.shape[-2] * input.shape[-1]
    return torch_depthwise_faster(input.dtype, weight.shape[-2], weight.shape[-1], cl, stride, hw, dilation)


def use_torch_separable(input: torch.Tensor, *tensors) -> bool:
    """For a CUDA call of separable_conv2d: run PyTorch's composition instead of the fused op?
    Only for inference (no tensor needs grad): training keeps the fused op, whose backward
    recomputes the depthwise output instead of storing it."""
    if _mode == "dsconv" or input.device.type != "cuda":
        return False
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (input,) + tensors):
        return False
    return _mode == "torch" or input.dtype in (torch.float32,) + _SIXTEEN_BIT
