"""The CUDA routing table of the public API (dsconv_ext/_cuda_route.py): which calls run PyTorch's
own kernels instead of dsconv's. Decisions are checked here on the CPU; tests/test_cuda.py checks
on a GPU that the routed calls run the kernels the table names."""
import pytest
import torch

import dsconv_ext
from dsconv_ext import _cuda_route as route

F32, F16, BF16, F64 = torch.float32, torch.float16, torch.bfloat16, torch.float64


@pytest.mark.parametrize(
    "dtype, k, cl, want",
    [
        (F32, 3, False, True), (F16, 3, True, True), (BF16, 3, False, True),  # 3x3: PyTorch faster
        (F32, 1, False, True),  # 1x1 depthwise (a per-channel scale): PyTorch's
        (F16, 7, True, True), (BF16, 7, True, True),  # 7x7 channels_last 16-bit: PyTorch faster
        (F32, 7, True, False), (F16, 7, False, False), (F32, 7, False, False),  # 7x7 otherwise: dsconv
        (F16, 31, True, False), (F32, 31, False, False),  # large kernels: dsconv
        (F32, 5, False, False),  # unmeasured: dsconv
        (F64, 3, False, False),  # float64: dsconv (exact, tested)
    ],
)
def test_depthwise_table(dtype, k, cl, want):
    assert route.torch_depthwise_faster(dtype, k, k, cl) is want


@pytest.mark.parametrize(
    "dtype, cl, stride, hw, want",
    [
        (F32, False, (1, 1), 56 * 56, False), (BF16, False, (1, 1), 112 * 112, False),  # dsconv faster
        (F16, False, (1, 1), 56 * 56, True),  # fp16: 1.07x forward but 0.64x with backward
        (F32, True, (1, 1), 56 * 56, True),  # channels_last: PyTorch's
        (F32, False, (2, 2), 56 * 56, True), (F32, False, (1, 1), 14 * 14, True),  # stride 2, small maps
    ],
)
def test_depthwise_table_3x3_stride1_large_maps(dtype, cl, stride, hw, want):
    assert route.torch_depthwise_faster(dtype, 3, 3, cl, stride, hw) is want
    if not want:  # the exception was measured without dilation only
        assert route.torch_depthwise_faster(dtype, 3, 3, cl, stride, hw, (2, 2)) is True


def test_modes_and_errors():
    assert dsconv_ext.cuda_kernels() == "dsconv"  # conftest's fixture: tests check dsconv's kernels
    for mode in ("auto", "torch", "dsconv"):
        dsconv_ext.set_cuda_kernels(mode)
        assert dsconv_ext.cuda_kernels() == mode
    with pytest.raises(ValueError, match="auto, dsconv, torch"):
        dsconv_ext.set_cuda_kernels("cudnn")


def test_env_variable(monkeypatch):
    monkeypatch.setenv("DSCONV_CUDA_KERNELS", " Torch ")
    assert route._mode_from_env() == "torch"
    monkeypatch.setenv("DSCONV_CUDA_KERNELS", "")
    assert route._mode_from_env() == "auto"
    monkeypatch.setenv("DSCONV_CUDA_KERNELS", "fast")
    with pytest.raises(ValueError, match="DSCONV_CUDA_KERNELS"):
        route._mode_from_env()


@pytest.mark.parametrize("mode", ["auto", "torch"])
def test_cpu_and_meta_never_routed(mode):
    dsconv_ext.set_cuda_kernels(mode)
    for dev in ("cpu", "meta"):
        x = torch.randn(2, 4, 8, 8, device=dev)
        w = torch.randn(4, 1, 3, 3, device=dev)
        assert not route.use_torch_depthwise(x, w, (1, 1, 1, 1))
        assert not route.use_torch_separable(x, w)


def test_cpu_results_unchanged_by_mode():
    x, w = torch.randn(2, 4, 9, 9), torch.randn(4, 1, 3, 3)
    dsconv_ext.set_cuda_kernels("dsconv")
    a = dsconv_ext.depthwise_conv2d(x, w, None, 1, 1)
    dsconv_ext.set_cuda_kernels("torch")
    b = dsconv_ext.depthwise_conv2d(x, w, None, 1, 1)
    assert torch.equal(a, b)


# End to end on fake CUDA tensors (no GPU needed): which ops the public API dispatches.
from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _dispatched(fn, *shapes, dtype=F32, cl=False, grad=False):
    with FakeTensorMode():
        ts = []
        for s in shapes:
            t = torch.empty(s, device="cuda", dtype=dtype) if s is not None else None
            if t is not None and cl and t.dim() == 4 and t.shape[1] != 1:
                t = t.contiguous(memory_format=torch.channels_last)
            ts.append(t.requires_grad_(grad) if t is not None else None)
        with _Ops() as rec:
            out = fn(*ts)
    return rec.names, out


@pytest.mark.parametrize(
    "mode, k, dtype, cl, pad, want",
    [
        ("auto", 3, F32, False, 1, "aten.convolution"),
        ("auto", 7, F32, False, 3, "dsconv.depthwise_conv2d"),
        ("auto", 7, F16, True, 3, "aten.convolution"),
        ("auto", 3, F32, False, "same4", "dsconv.depthwise_conv2d"),  # asymmetric padding
        ("dsconv", 3, F32, False, 1, "dsconv.depthwise_conv2d"),
        ("torch", 31, F32, False, 15, "aten.convolution"),
    ],
)
def test_depthwise_dispatch(mode, k, dtype, cl, pad, want):
    dsconv_ext.set_cuda_kernels(mode)
    kk = (k, k + 1) if pad == "same4" else (k, k)
    padding = "same" if pad == "same4" else pad
    names, out = _dispatched(lambda x, w: dsconv_ext.depthwise_conv2d(x, w, None, 1, padding),
                             (2, 8, 16, 16), (8, 1) + kk, dtype=dtype, cl=cl)
    assert want in names, names
    assert out.shape == (2, 8, 16, 16)
    assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("cl", [False, True])
def test_separable_dispatch(grad, cl):
    dsconv_ext.set_cuda_kernels("auto")

    def f(x, dw, pw, db, pb):
        return dsconv_ext.separable_conv2d(x, dw, pw, db, pb, padding=1, activation="relu6")

    names, out = _dispatched(f, (2, 8, 10, 10), (8, 1, 3, 3), (12, 8, 1, 1), (8,), (12,), cl=cl, grad=grad)
    if grad:  # training keeps the fused op (its backward recomputes instead of storing)
        # (a build without CUDA kernels runs the unfused composition there instead)
        assert ("dsconv.separable_conv2d" in names) == dsconv_ext.has_separable_kernel("cuda"), names
    else:  # inference: PyTorch's composition
        assert "dsconv.separable_conv2d" not in names and names.count("aten.convolution") == 2, names
    assert out.shape == (2, 12, 10, 10)
    assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def test_separable_inference_with_a_dsconv_depthwise_class():
    """Inference with a 7x7 float32 NCHW depthwise stage: dsconv's CUDA depthwise kernel where
    the build has one, else PyTorch's (a CPU-only build given CUDA tensors)."""
    dsconv_ext.set_cuda_kernels("auto")

    def f(x, dw, pw):
        return dsconv_ext.separable_conv2d(x, dw, pw, padding=3, activation="relu")

    names, out = _dispatched(f, (2, 8, 10, 10), (8, 1, 7, 7), (12, 8, 1, 1))
    if dsconv_ext.has_kernel("cuda"):
        assert "dsconv.depthwise_conv2d" in names and names.count("aten.convolution") == 1, names
    else:
        assert names.count("aten.convolution") == 2, names
    assert out.shape == (2, 12, 10, 10)
