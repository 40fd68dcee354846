"""CUDA fused separable kernel (dsconv::separable_conv2d on CUDA, csrc/cuda/fused_*), checked
against the unfused composition computed in float64 on the CPU.

Skipped when torch.cuda.is_available() is False. Forward cases run under
torch.use_deterministic_algorithms(True), which makes PyTorch fill fresh allocations (our output
included) with NaN, so an element the kernel forgets to write shows up as NaN. 16-bit results are
also compared with the unfused CUDA composition (DSCONV_FUSED_CUDA=0), which rounds the
intermediate the same way: the fused error must not be much larger than the composition's.

Budget: well under a minute on an H100 (plus ~10 s for the 64-bit index case).
"""
import contextlib
import os
import zlib

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext
from dsconv_ext._fused_act import ACT_CODES, act_fn
from dsconv_ext._fused_fake import separable_memory_format

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ops = torch.ops.dsconv
ACTS = [None, "relu", "relu6", "silu", "hardswish", "gelu"]
# Relative error ||got - ref|| / ||ref|| vs float64. 16-bit: the intermediate is rounded to the
# dtype (as in the unfused composition), then the output.
TOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "view", "cl_view"]


@pytest.fixture(autouse=True)
def _no_tf32():
    """cuDNN's default TF32 would put ~1e-3 errors into the fp32 composition (unfused paths,
    the recomputing backward); the fused kernel's fp32 path is exact FMA."""
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev


@contextlib.contextmanager
def deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)


@contextlib.contextmanager
def env(name, value):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def make(shape, layout, dtype, gen):
    """A random CUDA tensor of `shape` in one of several memory layouts (views stay views)."""
    N, C, H, W = shape
    if layout == "nchw":
        t = torch.randn(shape, generator=gen, dtype=torch.float64)
    elif layout == "channels_last":
        t = torch.randn(shape, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    elif layout == "view":  # strided, offset view of a larger NCHW tensor
        big = torch.randn(N + 1, C + 2, 2 * H + 1, W + 3, generator=gen, dtype=torch.float64)
        t = big[1:, 1 : C + 1, 1::2, 2 : W + 2]
    elif layout == "cl_view":  # channels innermost, odd strides / offset
        big = torch.randn(N, H, W + 1, C + 1, generator=gen, dtype=torch.float64)
        t = big[:, :, 1:, :C].permute(0, 3, 1, 2)
    else:
        raise ValueError(layout)
    base = t._base if t._base is not None else t
    return base.to("cuda", dtype).as_strided(t.shape, t.stride(), t.storage_offset())


def reference(x, dw, pw, db, pb, stride, pad, dil, act, pw_act):
    """The composition in float64 on the CPU; pad = (top, bottom, left, right). Float64 CPU leaves
    that require grad are used as they are (backward reference)."""
    def d(t):
        if t is None or (t.dtype == torch.float64 and t.device.type == "cpu" and t.requires_grad):
            return t
        return t.detach().double().cpu()

    y = F.conv2d(F.pad(d(x), (pad[2], pad[3], pad[0], pad[1])), d(dw), d(db), stride, 0, dil, groups=x.shape[1])
    y = act_fn(ACT_CODES[act])(y)
    return act_fn(ACT_CODES[pw_act])(F.conv2d(y, d(pw), d(pb)))


def rel_err(got, ref):
    got, ref = got.double().cpu(), ref.double().cpu()
    assert not torch.isnan(got).any(), "NaN in the result (an element left unwritten?)"
    den = ref.norm().item()
    return (got - ref).norm().item() / (den if den > 0 else 1.0)


def run(x, dw, pw, db, pb, stride, pad, dil, act, pw_act):
    return ops.separable_conv2d(x, dw, db, pw, pb, list(stride), list(pad), list(dil), ACT_CODES[act], ACT_CODES[pw_act])


def weights(C, Cout, k, dtype, gen, bias=True):
    dw = (torch.randn(C, 1, *k, generator=gen, dtype=torch.float64) / (k[0] * k[1]) ** 0.5).to("cuda", dtype)
    pw = (torch.randn(Cout, C, 1, 1, generator=gen, dtype=torch.float64) / C**0.5).to("cuda", dtype)
    db = torch.randn(C, generator=gen, dtype=torch.float64).to("cuda", dtype) if bias else None
    pb = torch.randn(Cout, generator=gen, dtype=torch.float64).to("cuda", dtype) if bias else None
    return dw, pw, db, pb


def check(shape, Cout, k, stride, pad, dil, act, pw_act, layout, dtype, bias=True, key=""):
    gen = torch.Generator().manual_seed(zlib.crc32(f"{shape}{Cout}{k}{stride}{pad}{dil}{act}{layout}{key}".encode()))
    x = make(shape, layout, dtype, gen)
    dw, pw, db, pb = weights(shape[1], Cout, k, dtype, gen, bias)
    ref = reference(x, dw, pw, db, pb, stride, pad, dil, act, pw_act)
    with deterministic():
        out = run(x, dw, pw, db, pb, stride, pad, dil, act, pw_act)
    assert out.shape == ref.shape and out.dtype == dtype and out.device == x.device
    assert out.is_contiguous(memory_format=separable_memory_format(x, dw, pw))  # the composition's rule
    err = rel_err(out, ref)
    assert err < TOL[dtype], f"rel err {err:.2e}"
    if dtype in (torch.float16, torch.bfloat16):
        with env("DSCONV_FUSED_CUDA", "0"):
            unfused = run(x, dw, pw, db, pb, stride, pad, dil, act, pw_act)
        assert err <= 2.0 * rel_err(unfused, ref) + 1e-3, "fused much less accurate than the composition"
    return out


# (N, C, H, W), Cout, (KH, KW), stride, pad (t, b, l, r), dil
CASES = [
    ((2, 16, 13, 17), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # bands cross rows, Cout < 32
    ((2, 40, 12, 11), 72, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),  # stride 2, channel chunk tail
    ((1, 64, 9, 9), 300, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # 2 output-channel blocks (all dtypes)
    ((1, 33, 15, 14), 96, (5, 5), (2, 2), (2, 1, 2, 1), (1, 1)),  # asymmetric pad
    ((2, 24, 11, 19), 40, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1)),
    ((1, 20, 16, 15), 17, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),
    ((1, 12, 14, 13), 20, (3, 5), (2, 1), (1, 2, 0, 3), (1, 2)),  # runtime kernel, dilation
    ((1, 8, 10, 12), 8, (4, 2), (1, 1), (1, 2, 0, 1), (1, 1)),  # even kernel ('same')
    ((1, 6, 26, 25), 10, (13, 13), (1, 1), (6, 6, 6, 6), (1, 1)),  # > 64 taps: composition fallback
    ((1, 3, 1, 1), 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # 1x1 image
    ((1, 5, 6, 7), 3, (3, 3), (1, 1), (4, 0, 3, 5), (1, 1)),  # padding larger than the kernel
    ((3, 1, 9, 70), 33, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # C = 1, rows longer than a band
]


# Shapes the tile mode takes (K x K in 3/5/7, equal strides 1/2, dilation 1, OW <= 64), for
# test_band_and_tile_modes.
TILE_CASES = [c for c in CASES if c[2][0] == c[2][1] and c[2][0] in (3, 5, 7) and c[3][0] == c[3][1]
              and c[5] == (1, 1)] + [((1, 40, 6, 64), 48, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1))]  # OW = 64


def case_id(c):
    shape, Cout, k, s, p, d = c
    return f"{'x'.join(map(str, shape))}-o{Cout}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-p{''.join(map(str, p))}-d{d[0]}{d[1]}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_matches_composition(case, layout, dtype):
    shape, Cout, k, s, p, d = case
    check(shape, Cout, k, s, p, d, "relu6", None, layout, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("tile,stage", [("0", "2"), ("1", "2"), ("3", "2"), ("3", "3"), ("64", "3")],
                         ids=["bands", "tile1", "tile3", "tile3-pipe", "tile64-pipe"])
def test_band_and_tile_modes(tile, stage, dtype):
    """DSCONV_FUSED_TILE: the band mode forced on shapes the tile mode would take, and the tile
    mode with at most 1 / 3 / 64 output rows per block (the default picks the rows by the SM
    count); DSCONV_FUSED_STAGE: 2 the tile's staging loop, 3 (the default) the cp.async pipeline
    on the shapes whose alignment allows it."""
    with env("DSCONV_FUSED_TILE", tile), env("DSCONV_FUSED_STAGE", stage):
        for case in TILE_CASES:
            shape, Cout, k, s, p, d = case
            for layout in LAYOUTS:
                check(shape, Cout, k, s, p, d, "relu6", None, layout, dtype, key=tile)


def kernel_launches(calls, name):
    """Launches of CUDA kernels whose name contains `name` while running calls."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for c in calls:
            c()
        torch.cuda.synchronize()
    return sum(e.count for e in prof.key_averages() if name in e.key)


@pytest.mark.parametrize("nfmax,nf", [("0", ""), ("1", ""), ("1", "3")], ids=["nf8", "nfmax2", "nfmax4"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_pipeline_mode(dtype, nfmax, nf):
    """DSCONV_FUSED_STAGE=3: the cp.async pipeline kernel runs where its alignment holds (C % 8,
    even W and strides for NCHW; multiples of 8 for channels_last), matches the composition, and
    leaves the other shapes to the staging loops. nfmax: DSCONV_FUSED_NFMAX=1, the variant with
    fewer accumulators (2 fragments; with DSCONV_FUSED_NF=3, 4)."""
    gen = torch.Generator().manual_seed(5)
    with env("DSCONV_FUSED_STAGE", "3"), env("DSCONV_FUSED_TILE", "64"), env("DSCONV_FUSED_NFMAX", nfmax), \
            env("DSCONV_FUSED_NF", nf):
        for layout in ("nchw", "channels_last"):
            for k in (3, 5, 7):
                for s in (1, 2):
                    for shape, Cout in (((2, 72, 14, 14), 40), ((1, 264, 10, 12), 300)):
                        check(shape, Cout, (k, k), (s, s), (k // 2,) * 4, (1, 1), "relu6", "relu", layout, dtype,
                              key=f"pipe{k}{s}")
                        x = make(shape, layout, dtype, gen)
                        dw, pw, db, pb = weights(shape[1], Cout, (k, k), dtype, gen)
                        call = lambda: run(x, dw, pw, db, pb, (s, s), (k // 2,) * 4, (1, 1), "relu6", None)  # noqa: E731
                        assert kernel_launches([call], "fused_kernel_pipe") == 1, (layout, k, s, shape)
        # not eligible: C % 8 != 0, odd W (NCHW), fp32
        for shape, layout, dt in (((1, 36, 10, 10), "nchw", dtype), ((1, 40, 9, 9), "nchw", dtype),
                                  ((1, 40, 10, 10), "nchw", torch.float32)):
            x = make(shape, layout, dt, gen)
            dw, pw, db, pb = weights(shape[1], 24, (3, 3), dt, gen)
            call = lambda: run(x, dw, pw, db, pb, (1, 1), (1,) * 4, (1, 1), "relu6", None)  # noqa: E731
            assert kernel_launches([call], "fused_kernel_pipe") == 0, shape
            assert kernel_launches([call], "fused_kernel") == 1, shape


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_graph_capture(layout):
    """The fused op inside a CUDA graph (torch.compile's "reduce-overhead" mode captures one):
    pipeline, staging-loop tile and band plans; replays on new input data match eager calls."""
    gen = torch.Generator().manual_seed(9)
    cases = (((2, 64, 14, 14), 48, torch.float16, "3"),  # pipeline
             ((2, 64, 14, 14), 48, torch.bfloat16, "2"),  # staging-loop tiles
             ((1, 40, 30, 70), 24, torch.float16, "3"),  # bands (70 columns)
             ((2, 24, 9, 10), 16, torch.float32, "3"))  # fp32 tiles
    for shape, Cout, dtype, stage in cases:
        with env("DSCONV_FUSED_STAGE", stage):
            x = make(shape, layout, dtype, gen)
            dw, pw, db, pb = weights(shape[1], Cout, (3, 3), dtype, gen)
            call = lambda: run(x, dw, pw, db, pb, (1, 1), (1,) * 4, (1, 1), "relu6", None)  # noqa: E731
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                call()  # warm-up outside the capture
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = call()
            x.copy_(make(shape, layout, dtype, gen))
            g.replay()
            torch.cuda.synchronize()
            ref = call()
            assert torch.equal(out, ref), (shape, dtype, stage)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("pw_act", ACTS)
@pytest.mark.parametrize("act", ACTS)
def test_activations(act, pw_act, dtype):
    check((2, 20, 9, 10), 36, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), act, pw_act, "channels_last", dtype)
    check((1, 20, 9, 10), 36, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), act, pw_act, "nchw", dtype)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_float64_composition(layout):
    check((2, 16, 9, 10), 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "silu", "gelu", layout, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_no_bias(dtype):
    check((2, 16, 9, 10), 24, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), "relu", "relu", "nchw", dtype, bias=False)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_mobilenet_sizes(dtype):
    """The benchmark's blocks, scaled down in batch: many bands and chunks, full tiles."""
    for shape, Cout in (((2, 144, 56, 56), 24), ((2, 576, 14, 14), 96), ((1, 256, 28, 28), 256)):
        for layout in ("nchw", "channels_last"):
            check(shape, Cout, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), "relu6", None, layout, dtype, key="mb")


def test_uses_fused_kernel():
    """Common blocks (3/5/7, stride 1/2, both layouts, 16/32-bit) launch the fused kernel (once per
    call); > 64 taps and float64 take the composition."""
    from torch.profiler import ProfilerActivity, profile

    def fused_launches(calls):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for c in calls:
                c()
            torch.cuda.synchronize()
        return sum(e.count for e in prof.key_averages() if "fused_kernel" in e.key)

    gen = torch.Generator().manual_seed(2)
    calls = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for layout in ("nchw", "channels_last"):
            for k in (3, 5, 7):
                for s in (1, 2):
                    x = make((2, 32, 20, 20), layout, dtype, gen)
                    dw, pw, _, _ = weights(32, 48, (k, k), dtype, gen)
                    calls.append(lambda x=x, dw=dw, pw=pw, s=s, k=k: run(x, dw, pw, None, None, (s, s), (k // 2,) * 4,
                                                                         (1, 1), "relu", None))
    assert fused_launches(calls) == len(calls)
    x = make((1, 8, 30, 30), "nchw", torch.float16, gen)
    dw, pw, _, _ = weights(8, 8, (9, 9), torch.float16, gen)
    x64 = make((1, 8, 30, 30), "nchw", torch.float64, gen)
    dw64, pw64, _, _ = weights(8, 8, (3, 3), torch.float64, gen)
    other = [lambda: run(x, dw, pw, None, None, (1, 1), (4,) * 4, (1, 1), None, None),
             lambda: run(x64, dw64, pw64, None, None, (1, 1), (1,) * 4, (1, 1), None, None)]
    assert fused_launches(other) == 0


@pytest.mark.parametrize("dtype", DTYPES + [torch.float64], ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "view"])
def test_backward(layout, dtype):
    """Autograd through the fused op (backward recomputes with the CUDA depthwise kernels)."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"bwd{layout}{dtype}".encode()))
    x = make((2, 12, 9, 11), layout, dtype, gen)
    dw, pw, db, pb = weights(12, 20, (3, 3), dtype, gen)
    leaves = [t.detach().requires_grad_(True) for t in (x, dw, pw, db, pb)]
    out = dsconv_ext.separable_conv2d(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], stride=2, padding=1,
                                      activation="silu", pw_activation="hardswish")
    go = torch.randn(out.shape, generator=gen, dtype=torch.float64).to("cuda", dtype)
    out.backward(go)
    refs = [t.detach().double().cpu().requires_grad_(True) for t in (x, dw, pw, db, pb)]
    r = reference(refs[0], refs[1], refs[2], refs[3], refs[4], (2, 2), (1, 1, 1, 1), (1, 1), "silu", "hardswish")
    r.backward(go.double().cpu())
    tol = TOL[dtype] * (2 if dtype != torch.float64 else 1)
    assert rel_err(out, r) < tol
    for name, leaf, ref in zip(("input", "dw_weight", "pw_weight", "dw_bias", "pw_bias"), leaves, refs):
        assert leaf.grad is not None and leaf.grad.shape == leaf.shape, name
        assert rel_err(leaf.grad, ref.grad) < tol, name


def test_unbatched_and_module():
    gen = torch.Generator().manual_seed(3)
    x = make((1, 16, 10, 9), "nchw", torch.float32, gen)[0]
    dw, pw, db, pb = weights(16, 8, (3, 3), torch.float32, gen)
    out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, padding=1, activation="relu")
    ref = reference(x[None], dw, pw, db, pb, (1, 1), (1, 1, 1, 1), (1, 1), "relu", None)[0]
    assert out.shape == ref.shape and rel_err(out, ref) < TOL[torch.float32]
    block = dsconv_ext.DepthwiseSeparableConv2d(16, 24, 3, activation="relu6", pw_activation=None).cuda()
    with torch.no_grad():
        for bn in (block.dw_bn, block.pw_bn):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    block.eval()
    xb = torch.randn(2, 16, 12, 12, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert rel_err(block(xb), block.forward_unfused(xb)) < 1e-5


def test_empty_and_errors():
    gen = torch.Generator().manual_seed(4)
    dw, pw, _, _ = weights(4, 6, (3, 3), torch.float32, gen)
    out = run(torch.empty(0, 4, 5, 5, device="cuda"), dw, pw, None, None, (1, 1), (1, 1, 1, 1), (1, 1), None, None)
    assert out.shape == (0, 6, 5, 5)
    with pytest.raises(RuntimeError, match="device"):
        run(torch.randn(1, 4, 5, 5), dw, pw, None, None, (1, 1), (1, 1, 1, 1), (1, 1), None, None)
    with pytest.raises(RuntimeError, match="act"):
        ops.separable_conv2d(torch.randn(1, 4, 5, 5, device="cuda"), dw, None, pw, None, [1, 1], [1, 1, 1, 1],
                             [1, 1], 9, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck(layout, dtype):
    gen = torch.Generator().manual_seed(5)
    x = make((2, 6, 7, 6), layout, dtype, gen).requires_grad_(dtype == torch.float32)
    dw, pw, db, pb = weights(6, 10, (3, 2), dtype, gen)
    torch.library.opcheck(ops.separable_conv2d, (x, dw, db, pw, pb, [2, 1], [1, 0, 1, 1], [1, 2], 1, 3))
    x3 = make((2, 6, 9, 8), layout, dtype, gen)
    dw3, pw3, db3, pb3 = weights(6, 10, (3, 3), dtype, gen)
    torch.library.opcheck(ops.separable_conv2d, (x3, dw3, db3, pw3, pb3, [1, 1], [1, 1, 1, 1], [1, 1], 2, 0))


def test_deterministic_repeat():
    gen = torch.Generator().manual_seed(6)
    x = make((2, 64, 20, 20), "channels_last", torch.float16, gen)
    dw, pw, db, pb = weights(64, 96, (3, 3), torch.float16, gen)
    a = run(x, dw, pw, db, pb, (1, 1), (1, 1, 1, 1), (1, 1), "relu", None)
    b = run(x, dw, pw, db, pb, (1, 1), (1, 1, 1, 1), (1, 1), "relu", None)
    assert torch.equal(a, b)


@pytest.mark.parametrize("geom", ["wide", "tall"])  # band mode (W > 64), tile mode (W = 64)
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_64bit_offsets(layout, geom):
    """Input and output of > 2^31 elements (fp16, ~4.3 GB each): offsets past int32 range."""
    free, _ = torch.cuda.mem_get_info()
    if free < 12 * 2**30:
        pytest.skip("needs ~12 GiB of free GPU memory")
    N, C, H, W, Cout = (1, 8, 16400, 16400, 8) if geom == "wide" else (1, 8, 4194400, 64, 8)
    gen = torch.Generator(device="cuda").manual_seed(7)
    mf = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.empty(N, C, H, W, device="cuda", dtype=torch.float16, memory_format=mf)
    x.normal_(generator=gen)
    g = torch.Generator().manual_seed(7)
    dw, pw, db, pb = weights(C, Cout, (3, 3), torch.float16, g)
    out = run(x, dw, pw, db, pb, (1, 1), (1, 1, 1, 1), (1, 1), "relu", None)
    assert out.numel() > 2**31
    # The last 5 output rows from a crop of the last 6 input rows (top padding 0 there).
    crop = x[:, :, H - 6 :, :]
    ref = reference(crop, dw, pw, db, pb, (1, 1), (0, 1, 1, 1), (1, 1), "relu", None)
    assert rel_err(out[:, :, H - 5 :, :], ref) < TOL[torch.float16]
    ref0 = reference(x[:, :, :6, :], dw, pw, db, pb, (1, 1), (1, 0, 1, 1), (1, 1), "relu", None)
    assert rel_err(out[:, :, :5, :], ref0) < TOL[torch.float16]
    del x, out
    torch.cuda.empty_cache()


def test_api_routing():
    """The public API in 'auto' mode (dsconv_ext/_cuda_route.py): inference runs PyTorch's
    composition (no fused kernel launch, same values), training keeps the fused op."""
    from torch.profiler import ProfilerActivity, profile

    def fused_launches(fn):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        return sum(e.count for e in prof.key_averages() if "fused_kernel" in e.key)

    gen = torch.Generator().manual_seed(12)
    x = make((2, 32, 20, 20), "channels_last", torch.float16, gen)
    dw, pw, db, pb = weights(32, 48, (3, 3), torch.float16, gen)
    dsconv_ext.set_cuda_kernels("auto")

    def call(*t):
        return dsconv_ext.separable_conv2d(*t, padding=1, activation="relu6")

    with torch.no_grad():
        assert fused_launches(lambda: call(x, dw, pw, db, pb)) == 0
        y = call(x, dw, pw, db, pb)
    assert y.is_contiguous(memory_format=torch.channels_last)
    ref = reference(x, dw, pw, db, pb, (1, 1), (1, 1, 1, 1), (1, 1), "relu6", None)
    assert rel_err(y, ref) < 2 * TOL[torch.float16]
    xg = x.detach().requires_grad_(True)
    assert fused_launches(lambda: call(xg, dw, pw, db, pb)) == 1
