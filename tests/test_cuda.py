"""CUDA kernels of dsconv_ext, checked against F.conv2d (float64 on the CPU as the reference).

Skipped when torch.cuda.is_available() is False. Every case runs under
torch.use_deterministic_algorithms(True), which makes PyTorch fill fresh allocations (our outputs
included) with NaN, so an element a kernel forgets to write shows up as NaN.

Budget: about 2-3 minutes on an H100.
"""
import contextlib
import zlib

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext
from dsconv_ext._layout import output_memory_format

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ops = torch.ops.dsconv

# Relative error ||got - ref|| / ||ref|| allowed per dtype (fp32 accumulation inside).
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}
DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "view", "cl_view"]


@contextlib.contextmanager
def deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


def make(shape, layout, dtype, gen, device="cuda"):
    """A random tensor of `shape` in one of several memory layouts."""
    N, C, H, W = shape
    if layout == "nchw":
        t = torch.randn(shape, generator=gen, dtype=torch.float64)
    elif layout == "channels_last":
        t = torch.randn(shape, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    elif layout == "view":  # strided, offset view of a larger NCHW tensor (odd strides everywhere)
        big = torch.randn(N + 1, C + 2, 2 * H + 1, W + 3, generator=gen, dtype=torch.float64)
        t = big[1:, 1 : C + 1, 1::2, 2 : W + 2]
    elif layout == "cl_view":  # channels innermost, but strides / offset not 4-aligned
        big = torch.randn(N, H, W + 1, C + 1, generator=gen, dtype=torch.float64)
        t = big[:, :, 1:, :C].permute(0, 3, 1, 2)
    else:
        raise ValueError(layout)
    # Move and cast while keeping the strides (a view stays a view of a larger device tensor).
    base = t._base if t._base is not None else t
    dev_base = base.to(device=device, dtype=dtype)
    return dev_base.as_strided(t.shape, t.stride(), t.storage_offset())


def rel_err(got, ref):
    got, ref = got.double().cpu(), ref.double().cpu()
    assert not torch.isnan(got).any(), "NaN in the result (an element left unwritten?)"
    den = ref.norm().item()
    return (got - ref).norm().item() / (den if den > 0 else 1.0)


def reference(x, w, b, go, stride, pad, dil):
    """Forward output and (grad_input, grad_weight, grad_bias) in float64 on the CPU."""
    C = x.shape[1]
    xr = x.detach().double().cpu().requires_grad_(True)
    wr = w.detach().double().cpu().requires_grad_(True)
    br = b.detach().double().cpu().requires_grad_(True) if b is not None else None
    out = F.conv2d(F.pad(xr, (pad[2], pad[3], pad[0], pad[1])), wr, br, stride, 0, dil, groups=C)
    out.backward(go.detach().double().cpu())
    return out.detach(), xr.grad, wr.grad, (br.grad if br is not None else None)


def out_size(n, k, s, p0, p1, d):
    return (n + p0 + p1 - d * (k - 1) - 1) // s + 1


# (N, C, H, W), (KH, KW), stride, padding (t, b, l, r), dilation, multiplier
CASES = [
    ((2, 5, 9, 11), (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 16, 13, 17), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((2, 16, 13, 17), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((2, 8, 12, 15), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    ((1, 8, 14, 13), (3, 3), (1, 2), (2, 2, 2, 2), (2, 2), 1),
    ((2, 8, 15, 12), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
    ((2, 8, 15, 12), (5, 5), (2, 2), (2, 1, 2, 1), (1, 1), 2),
    ((2, 12, 19, 23), (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 1),
    ((2, 12, 19, 23), (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1),
    ((1, 8, 20, 21), (9, 9), (1, 1), (4, 4, 4, 4), (1, 1), 1),
    ((1, 8, 26, 25), (13, 13), (1, 1), (6, 6, 6, 6), (1, 1), 1),
    ((1, 4, 26, 25), (13, 13), (2, 2), (6, 6, 6, 6), (1, 1), 2),
    ((1, 8, 33, 35), (31, 31), (1, 1), (15, 15, 15, 15), (1, 1), 1),
    ((2, 8, 11, 19), (1, 7), (1, 1), (0, 0, 3, 3), (1, 1), 1),
    ((2, 8, 19, 11), (7, 1), (1, 1), (3, 3, 0, 0), (1, 1), 1),
    ((1, 6, 13, 14), (3, 5), (2, 1), (1, 2, 0, 3), (1, 2), 1),
    ((1, 4, 10, 12), (4, 2), (1, 1), (1, 2, 0, 1), (1, 1), 2),  # padding='same' with even kernels
    ((3, 3, 7, 130), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # several tiles along x, C % 4 != 0
    ((1, 4, 1, 1), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # 1x1 image
    ((1, 4, 5, 6), (3, 3), (1, 1), (5, 0, 4, 0), (1, 1), 1),  # padding larger than the kernel
]


def case_id(c):
    shape, k, s, p, d, m = c
    return f"{'x'.join(map(str, shape))}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-p{''.join(map(str, p))}-d{d[0]}{d[1]}-m{m}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward_matches_conv2d(case, layout, dtype):
    shape, (KH, KW), stride, pad, dil, M = case
    gen = torch.Generator().manual_seed(zlib.crc32(f"{case_id(case)}/{layout}".encode()))
    N, C, H, W = shape
    x = make(shape, layout, dtype, gen)
    w = torch.randn(C * M, 1, KH, KW, generator=gen, dtype=torch.float64).to("cuda", dtype)
    b = torch.randn(C * M, generator=gen, dtype=torch.float64).to("cuda", dtype)
    OH = out_size(H, KH, stride[0], pad[0], pad[1], dil[0])
    OW = out_size(W, KW, stride[1], pad[2], pad[3], dil[1])
    go = make((N, C * M, OH, OW), "channels_last" if layout in ("channels_last", "cl_view") else layout, dtype, gen)
    ref_out, ref_gi, ref_gw, ref_gb = reference(x, w, b, go, stride, pad, dil)
    tol = TOL[dtype]
    with deterministic():
        out = ops.depthwise_conv2d(x, w, b, list(stride), list(pad), list(dil))
        gi, gw, gb = ops.depthwise_conv2d_backward(go, x, w, list(stride), list(pad), list(dil), [True, True, True])
    assert out.shape == ref_out.shape and out.dtype == dtype and out.device == x.device
    # Memory format follows F.conv2d's rule.
    assert out.is_contiguous(memory_format=output_memory_format(x, w))
    assert rel_err(out, ref_out) < tol, "forward"
    assert rel_err(gi, ref_gi) < tol, "grad input"
    assert rel_err(gw, ref_gw) < tol, "grad weight"
    assert rel_err(gb, ref_gb) < tol, "grad bias"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_no_bias_and_partial_masks(dtype):
    gen = torch.Generator().manual_seed(1)
    x = make((2, 8, 11, 13), "nchw", dtype, gen)
    w = torch.randn(8, 1, 3, 3, generator=gen).to("cuda", dtype)
    go = make((2, 8, 11, 13), "nchw", dtype, gen)
    ref_out, ref_gi, ref_gw, ref_gb = reference(x, w, None, go, (1, 1), (1, 1, 1, 1), (1, 1))
    with deterministic():
        out = ops.depthwise_conv2d(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1])
        gi, gw, gb = ops.depthwise_conv2d_backward(go, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [False, False, True])
        _, gw2, _ = ops.depthwise_conv2d_backward(go, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [False, True, False])
    tol = TOL[dtype]
    assert rel_err(out, ref_out) < tol
    assert gi.numel() == 0 and gw.numel() == 0
    assert rel_err(gb, go.double().sum((0, 2, 3))) < tol
    assert rel_err(gw2, ref_gw) < tol


def test_expanded_grad_output():
    """out.sum().backward() hands the backward a grad_output with all-zero strides."""
    gen = torch.Generator().manual_seed(2)
    for layout in ("nchw", "channels_last"):
        x = make((2, 8, 9, 10), layout, torch.float32, gen).requires_grad_(True)
        w = torch.randn(8, 1, 3, 3, generator=gen).cuda().requires_grad_(True)
        b = torch.randn(8, generator=gen).cuda().requires_grad_(True)
        dsconv_ext.depthwise_conv2d(x, w, b, 1, 1).sum().backward()
        xr, wr, br = (t.detach().double().cpu().requires_grad_(True) for t in (x, w, b))
        F.conv2d(xr, wr, br, 1, 1, groups=8).sum().backward()
        assert rel_err(x.grad, xr.grad) < 1e-5
        assert rel_err(w.grad, wr.grad) < 1e-5
        assert rel_err(b.grad, br.grad) < 1e-5


def test_module_autograd_matches_conv2d():
    """The functional API end to end with autograd, against nn.Conv2d on the same device."""
    gen = torch.Generator().manual_seed(3)
    for layout, k, s, d in [("nchw", 3, 1, 1), ("channels_last", 5, 2, 1), ("nchw", 31, 1, 1), ("channels_last", 3, 1, 2)]:
        x = make((2, 16, 33, 34), layout, torch.float32, gen).requires_grad_(True)
        w = (0.1 * torch.randn(32, 1, k, k, generator=gen)).cuda().requires_grad_(True)
        b = torch.randn(32, generator=gen).cuda().requires_grad_(True)
        pad = d * (k - 1) // 2
        y = dsconv_ext.depthwise_conv2d(x, w, b, s, pad, d)
        xr, wr, br = (t.detach().double().cpu().requires_grad_(True) for t in (x, w, b))
        yr = F.conv2d(xr, wr, br, s, pad, d, groups=16)
        g = torch.randn(yr.shape, generator=gen, dtype=torch.float64)
        y.backward(g.to("cuda", torch.float32))
        yr.backward(g)
        assert rel_err(y, yr) < 1e-5
        for got, ref in ((x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad)):
            assert rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize(
    "k,stride,pad,dil,M",
    [((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1), ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2),
     ((5, 3), (1, 2), (2, 1, 0, 2), (2, 1), 1), ((9, 9), (1, 1), (4, 4, 4, 4), (1, 1), 1)],
)
def test_gradcheck_gradgradcheck_fp64(layout, k, stride, pad, dil, M):
    gen = torch.Generator().manual_seed(4)
    C = 4
    x = make((2, C, 9, 10), layout, torch.float64, gen).requires_grad_(True)
    w = torch.randn(C * M, 1, *k, generator=gen, dtype=torch.float64).cuda().requires_grad_(True)
    b = torch.randn(C * M, generator=gen, dtype=torch.float64).cuda().requires_grad_(True)

    def fn(x, w, b):
        return ops.depthwise_conv2d(x, w, b, list(stride), list(pad), list(dil))

    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck(layout):
    gen = torch.Generator().manual_seed(5)
    x = make((2, 8, 9, 10), layout, torch.float32, gen).requires_grad_(True)
    w = torch.randn(16, 1, 3, 3, generator=gen).cuda().requires_grad_(True)
    b = torch.randn(16, generator=gen).cuda().requires_grad_(True)
    torch.library.opcheck(ops.depthwise_conv2d.default, (x, w, b, [2, 1], [1, 0, 1, 2], [1, 1]))
    go = torch.randn(2, 16, 4, 11, generator=gen).cuda()  # OH = (9+1+0-3)//2+1, OW = 10+1+2-3+1
    if layout == "channels_last":
        go = go.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(
        ops.depthwise_conv2d_backward.default,
        (go, x.detach(), w.detach(), [2, 1], [1, 0, 1, 2], [1, 1], [True, True, True]),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "layout,k,stride", [("nchw", 3, 1), ("channels_last", 3, 2), ("nchw", 7, 1), ("channels_last", 31, 1), ("nchw", 31, 1)]
)
def test_grad_weight_is_deterministic(dtype, layout, k, stride):
    gen = torch.Generator().manual_seed(6)
    x = make((8, 64, 40, 40), layout, dtype, gen)
    w = torch.randn(64, 1, k, k, generator=gen).to("cuda", dtype)
    OH = out_size(40, k, stride, k // 2, k // 2, 1)
    go = make((8, 64, OH, OH), layout, dtype, gen)
    args = ([stride, stride], [k // 2] * 4, [1, 1], [True, True, True])
    with deterministic():
        r1 = ops.depthwise_conv2d_backward(go, x, w, *args)
        r2 = ops.depthwise_conv2d_backward(go, x, w, *args)
    for a, b in zip(r1, r2):
        assert torch.equal(a, b)


def test_other_device_and_stream():
    """Launches go to the current stream of the input's device (no host sync needed)."""
    gen = torch.Generator().manual_seed(7)
    x = make((2, 8, 16, 16), "nchw", torch.float32, gen)
    w = torch.randn(8, 1, 3, 3, generator=gen).cuda()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = ops.depthwise_conv2d(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1])
    torch.cuda.current_stream().wait_stream(s)
    assert rel_err(y, F.conv2d(x.double().cpu(), w.double().cpu(), None, 1, 1, groups=8)) < 1e-5
    if torch.cuda.device_count() > 1:
        x1, w1 = x.to("cuda:1"), w.to("cuda:1")
        y1 = ops.depthwise_conv2d(x1, w1, None, [1, 1], [1, 1, 1, 1], [1, 1])
        assert y1.device == x1.device and torch.allclose(y1.cpu(), y.cpu())


def test_cuda_graph_capture():
    gen = torch.Generator().manual_seed(8)
    x = make((4, 32, 28, 28), "channels_last", torch.float16, gen).requires_grad_(True)
    w = torch.randn(32, 1, 3, 3, generator=gen).to("cuda", torch.float16).requires_grad_(True)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm up the caching allocator outside the capture
        for _ in range(2):
            dsconv_ext.depthwise_conv2d(x, w, None, 1, 1).float().square().sum().backward()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    x.grad = w.grad = None
    with torch.cuda.graph(g):
        y = dsconv_ext.depthwise_conv2d(x, w, None, 1, 1)
        y.float().square().sum().backward()
    g.replay()
    torch.cuda.synchronize()
    ref = F.conv2d(x.detach().double().cpu(), w.detach().double().cpu(), None, 1, 1, groups=32)
    assert rel_err(y, ref) < 2e-3


def _free_gib():
    free, _ = torch.cuda.mem_get_info()
    return free / 2**30


def test_large_tensor_64bit_offsets():
    """Offsets past 2^31 elements: the tiled kernels (fp16) and the generic 64-bit kernel (fp64)."""
    if _free_gib() < 40:
        pytest.skip("needs about 40 GiB of free device memory")
    torch.manual_seed(9)
    # fp16, N*C*H*W = 3 * 2^30 elements: the last image starts past 2^31.
    for layout in ("nchw", "channels_last"):
        shape = (3, 4, 16384, 16384)
        x = torch.empty(shape, dtype=torch.float16, device="cuda")
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x.normal_()
        w = torch.randn(4, 1, 3, 3, device="cuda", dtype=torch.float16)
        y = ops.depthwise_conv2d(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1])
        rows = slice(16384 - 40, 16384)
        ref = F.conv2d(F.pad(x[2:, :, rows.start - 1 :].double().cpu(), (1, 1, 0, 1)), w.double().cpu(), groups=4)
        assert rel_err(y[2:, :, rows], ref) < TOL[torch.float16]
        gi = ops.depthwise_conv2d_backward(y, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [True, False, False])[0]
        ref_gi = F.conv_transpose2d(
            F.pad(y[2:, :, rows.start - 1 :].double().cpu(), (0, 0, 0, 1)), w.double().cpu(), groups=4, padding=1
        )
        assert rel_err(gi[2:, :, rows], ref_gi[:, :, 1:-1]) < TOL[torch.float16]
        del x, y, gi
        torch.cuda.empty_cache()
    # fp64 (generic kernels), 2^30 + elements: 64-bit indices.
    x = torch.randn(1, 1, 32800, 32800, dtype=torch.float64, device="cuda")
    w = torch.randn(1, 1, 3, 3, dtype=torch.float64, device="cuda")
    y = ops.depthwise_conv2d(x, w, None, [1, 1], [1, 1, 1, 1], [1, 1])
    ref = F.conv2d(F.pad(x[:, :, -20:].cpu(), (1, 1, 0, 1)), w.cpu())
    assert rel_err(y[:, :, -19:], ref) < 1e-12


def test_api_routing():
    """The public API in 'auto' mode (dsconv_ext/_cuda_route.py): 3x3 runs PyTorch's own kernel
    (the same result as F.conv2d), 7x7 NCHW float32 runs dsconv's; 'dsconv' mode always dsconv's."""
    from torch.profiler import ProfilerActivity, profile

    def dsconv_kernels(fn):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return [e.key for e in prof.key_averages() if "dsconv" in e.key]

    gen = torch.Generator().manual_seed(11)
    x = make((2, 16, 20, 20), "nchw", torch.float32, gen)
    w3 = torch.randn(16, 1, 3, 3, generator=gen).cuda()
    w7 = torch.randn(16, 1, 7, 7, generator=gen).cuda()
    dsconv_ext.set_cuda_kernels("auto")
    y = dsconv_ext.depthwise_conv2d(x, w3, None, 1, 1)
    assert rel_err(y, F.conv2d(x, w3, None, 1, 1, 1, 16)) < 1e-6
    assert not dsconv_kernels(lambda: dsconv_ext.depthwise_conv2d(x, w3, None, 1, 1))
    assert dsconv_kernels(lambda: dsconv_ext.depthwise_conv2d(x, w7, None, 1, 3))
    dsconv_ext.set_cuda_kernels("dsconv")
    assert dsconv_kernels(lambda: dsconv_ext.depthwise_conv2d(x, w3, None, 1, 1))
