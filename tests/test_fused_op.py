"""dsconv::separable_conv2d forward: differential tests against the unfused PyTorch composition
(F.conv2d groups=C -> act -> F.conv2d 1x1 -> act), every CPU code path (AVX-512, AVX2, generic),
layouts and views, dtypes, memory formats, fake/meta kernel and error messages."""
import random

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext
from dsconv_ext._fused_act import ACT_CODES, act_fn

ACTS = [None, "relu", "relu6", "silu", "hardswish", "gelu"]
LAYOUTS = ("nchw", "cl", "step", "transposed", "permuted", "expanded")
AVAILABLE_ISAS = []
for _isa in ("avx512", "avx2", "generic"):
    import os as _os

    _old = _os.environ.get("DSCONV_FUSED_ISA")
    _os.environ["DSCONV_FUSED_ISA"] = _isa
    if torch.ops.dsconv._separable_cpu_isa() == _isa:
        AVAILABLE_ISAS.append(_isa)
    if _old is None:
        del _os.environ["DSCONV_FUSED_ISA"]
    else:
        _os.environ["DSCONV_FUSED_ISA"] = _old


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_input(shape, layout, dtype=torch.float64):
    N, C, H, W = shape
    if layout == "nchw":
        return torch.randn(N, C, H, W, dtype=dtype)
    if layout == "cl":
        return torch.randn(N, C, H, W, dtype=dtype).contiguous(memory_format=torch.channels_last)
    if layout == "step":
        return torch.randn(N, 2 * C, 2 * H, W + 3, dtype=dtype)[:, ::2, ::2, 1 : W + 1]
    if layout == "transposed":
        return torch.randn(N, C, W, H, dtype=dtype).transpose(2, 3)
    if layout == "permuted":
        return torch.randn(H, C, N, W, dtype=dtype).permute(2, 1, 0, 3)
    if layout == "expanded":
        return torch.randn(1, C, H, W, dtype=dtype).expand(N, C, H, W)
    raise ValueError(layout)


def reference(x, dw, pw, db, pb, stride, padding, dilation, act, pw_act):
    y = F.conv2d(x, dw, db, stride, padding, dilation, groups=x.shape[-3])
    y = act_fn(ACT_CODES[act])(y)
    return act_fn(ACT_CODES[pw_act])(F.conv2d(y, pw, pb))


def random_config(rng, big=False):
    k = rng.choice([1, 3, 3, 3, 5, 7, (3, 5), (5, 3), 4, 2])
    kh, kw = (k, k) if isinstance(k, int) else k
    stride = rng.choice([1, 1, 2, 3, (1, 2), (2, 1)])
    dilation = rng.choice([1, 1, 2, (1, 2)])
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dilation, dilation) if isinstance(dilation, int) else dilation
    if s == (1, 1) and rng.random() < 0.3:
        padding = rng.choice(["same", "valid"])
    else:
        padding = rng.choice([0, 1, 2, (kh // 2 * d[0], kw // 2 * d[1]), (0, 1)])
    pad = (0, 0) if padding in ("same", "valid") else ((padding, padding) if isinstance(padding, int) else padding)
    C = rng.choice([1, 3, 8, 13, 17, 24] + ([40, 72] if big else []))
    Cout = rng.choice([1, 5, 16, 19, 33] + ([48, 70] if big else []))
    H = rng.randint(max(1, d[0] * (kh - 1) + 1 - 2 * pad[0]), 14 if not big else 30)
    W = rng.randint(max(1, d[1] * (kw - 1) + 1 - 2 * pad[1]), 14 if not big else 70)
    return dict(
        shape=(rng.choice([1, 2, 3]), C, H, W), Cout=Cout, k=(kh, kw), stride=stride, padding=padding,
        dilation=dilation, act=rng.choice(ACTS), pw_act=rng.choice(ACTS), bias=rng.random() < 0.6,
        layout=rng.choice(LAYOUTS),
    )


def make_args(cfg, dtype):
    x = make_input(cfg["shape"], cfg["layout"], dtype)
    C = cfg["shape"][1]
    dw = torch.randn(C, 1, *cfg["k"], dtype=dtype)
    pw = torch.randn(cfg["Cout"], C, 1, 1, dtype=dtype) / C**0.5
    db = torch.randn(C, dtype=dtype) if cfg["bias"] else None
    pb = torch.randn(cfg["Cout"], dtype=dtype) if cfg["bias"] else None
    return x, dw, pw, db, pb


def run(cfg, x, dw, pw, db, pb):
    return dsconv_ext.separable_conv2d(
        x, dw, pw, db, pb, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["act"], cfg["pw_act"]
    )


def ref_of(cfg, x, dw, pw, db, pb):
    return reference(x, dw, pw, db, pb, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["act"], cfg["pw_act"])


def check_block(N, C, Cout, H, W, cl, stride=1, act="relu6", pw_act=None):
    """float32 fused block (3x3, padding 1, biases) on random data against the float64 reference."""
    x = torch.randn(N, C, H, W)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    dw, pw = torch.randn(C, 1, 3, 3), torch.randn(Cout, C, 1, 1) / C**0.5
    db, pb = torch.randn(C), torch.randn(Cout)
    out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, stride, 1, 1, act, pw_act)
    ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), stride, 1, 1, act, pw_act)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5,
                               msg=lambda m: f"{N}x{C}x{H}x{W}->{Cout} stride {stride} cl={cl}: {m}")
    return out


# --- float64: exact semantics (generic path) -----------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_float64_random_configs(seed):
    rng = random.Random(seed)
    for _ in range(15):
        cfg = random_config(rng)
        args = make_args(cfg, torch.float64)
        out, ref = run(cfg, *args), ref_of(cfg, *args)
        assert out.shape == ref.shape, cfg
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10, msg=lambda m: f"{cfg}: {m}")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("pw_act", ACTS)
def test_float64_each_activation_pair(act, pw_act):
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64) * 3
    dw = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    pw = torch.randn(5, 6, 1, 1, dtype=torch.float64)
    db, pb = torch.randn(6, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, act, pw_act)
    torch.testing.assert_close(out, reference(x, dw, pw, db, pb, 1, 1, 1, act, pw_act), rtol=1e-10, atol=1e-10)


# --- float32 / bfloat16 on every available code path ------------------------------------------------
@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request, monkeypatch):
    monkeypatch.setenv("DSCONV_FUSED_ISA", request.param)
    assert torch.ops.dsconv._separable_cpu_isa() == request.param
    return request.param


@pytest.mark.parametrize("tile_kb", [None, "1"])
def test_float32_random_configs(isa, tile_kb, monkeypatch):
    # tile_kb=1 forces many small bands: partial rows, bands crossing rows, halo rows.
    if tile_kb:
        monkeypatch.setenv("DSCONV_FUSED_TILE_KB", tile_kb)
        monkeypatch.setenv("DSCONV_FUSED_MIN_BAND", "1")
    rng = random.Random(100 + len(isa))
    for _ in range(40):
        cfg = random_config(rng, big=True)
        x, dw, pw, db, pb = make_args(cfg, torch.float64)
        ref = ref_of(cfg, x, dw, pw, db, pb)
        f32 = [t if t is None else t.float() for t in (x, dw, pw, db, pb)]
        out = run(cfg, *f32)
        assert out.dtype == torch.float32
        scale = ref.abs().max().item() + 1
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=2e-6 * scale, msg=lambda m: f"{cfg}: {m}")


def test_float32_mobilenet_shapes(isa):
    # Real block shapes (both layouts, stride 1 and 2), several bands per image.
    for (N, C, Cout, H, s) in [(2, 144, 24, 56, 1), (1, 96, 24, 112, 2), (2, 576, 96, 14, 1), (1, 32, 16, 112, 1)]:
        for cl in (False, True):
            out = check_block(N, C, Cout, H, H, cl, stride=s)
            assert out.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def test_float32_planes_one_band_per_image(isa):
    # NCHW images whose tile (C x H*W floats) fits in 2x the tile budget run as one band per image
    # once there are enough images for the threads (fused_cpu.cpp plan_band): batches on both sides
    # of that threshold, odd sizes, H*W not a multiple of the vector length.
    for (N, C, Cout, H, W) in [(8, 576, 96, 14, 14), (9, 960, 160, 7, 7), (6, 40, 9, 13, 11), (1, 64, 16, 14, 14)]:
        x = torch.randn(N, C, H, W)
        dw, pw = torch.randn(C, 1, 3, 3), torch.randn(Cout, C, 1, 1) / C**0.5
        db, pb = torch.randn(C), torch.randn(Cout)
        out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "relu6", None)
        ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), 1, 1, 1, "relu6", None)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{N}x{C}x{H}x{W}: {m}")


def test_float32_weight_packing_and_workspace_reuse(isa):
    # The packed pointwise weight (fused_simd_body.h pack_pw_blocks / pack_pw_rows: L x L register
    # transposes) lives in a per-thread workspace kept between calls: shapes that shrink and grow
    # again, channel counts on both sides of the vector length and of the GEMM blocks (6 rows in
    # NCHW, 1-4 vectors in channels_last), both layouts; stale packed values must never be read.
    shapes = [(2, 960, 160, 7), (1, 17, 5, 9), (2, 96, 70, 8), (1, 33, 7, 5), (2, 576, 96, 6), (1, 16, 1, 4),
              (2, 200, 49, 5), (1, 7, 33, 6)]
    for (N, C, Cout, H) in shapes + shapes[::-1]:
        for cl in (False, True):
            check_block(N, C, Cout, H, H + 1, cl, act="relu")


@pytest.mark.parametrize("threads", [2, 3])
def test_float32_output_channel_split(isa, threads):
    # Fewer (image, band) tasks than threads, Cout >= 64: fused_cpu.cpp splits the output channels
    # across the threads (Band::co_lo / co_hi; each part recomputes the band's depthwise). Split
    # points on the GEMM blocks (6 rows NCHW, 16-64 channels channels_last), Cout not a multiple of
    # them, narrow NCHW images (the transposed tail kernel is off in a split), bias, activations.
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for (N, C, Cout, H, W) in [(1, 960, 160, 7, 7), (1, 40, 70, 5, 6), (1, 24, 97, 3, 11), (2, 16, 64, 4, 4),
                                   (1, 33, 130, 7, 7)]:
            for cl in (False, True):
                check_block(N, C, Cout, H, W, cl, pw_act="silu")
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("tile_kb", [None, "2"])
def test_float32_planes_narrow_tail_columns(isa, tile_kb, monkeypatch):
    # NCHW bands ending in a partial vector of a few columns run the transposed tail kernel
    # (fused_simd_body.h planes_tail): band widths leaving 1-8 columns, output channel counts that
    # are not multiples of its 2-vector channel blocks, bias and a pointwise activation.
    if tile_kb:
        monkeypatch.setenv("DSCONV_FUSED_TILE_KB", tile_kb)
    for (N, C, Cout, H, W) in [(4, 24, 37, 7, 7), (4, 16, 70, 5, 10), (4, 9, 5, 6, 6), (5, 33, 64, 5, 8),
                               (4, 12, 17, 1, 23), (4, 40, 96, 14, 14)]:
        x = torch.randn(N, C, H, W)
        dw, pw = torch.randn(C, 1, 3, 3), torch.randn(Cout, C, 1, 1) / C**0.5
        db, pb = torch.randn(C), torch.randn(Cout)
        out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "relu", "gelu")
        ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), 1, 1, 1, "relu", "gelu")
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{N}x{C}x{H}x{W}->{Cout}: {m}")


@pytest.mark.parametrize("nt", ["1", "0"])
def test_float32_streaming_stores(isa, nt, monkeypatch):
    # DSCONV_FUSED_NT=1 forces the non-temporal output stores (taken by default only for outputs of
    # 16 MiB or more) where rows are vector-aligned: Cout and H*W multiples of 16 or not, padded
    # tail blocks, bias and activations in the register epilogue, several bands per image.
    monkeypatch.setenv("DSCONV_FUSED_NT", nt)
    monkeypatch.setenv("DSCONV_FUSED_TILE_KB", "4")
    monkeypatch.setenv("DSCONV_FUSED_MIN_BAND", "1")
    for (N, C, Cout, H, W, act, pw_act) in [(2, 32, 64, 8, 8, "relu", None), (1, 24, 48, 16, 12, None, "silu"),
                                             (2, 17, 19, 7, 9, "relu6", "gelu"), (1, 40, 256, 12, 16, None, "relu6"),
                                             (3, 16, 33, 8, 6, "hardswish", "hardswish")]:
        for cl in (False, True):
            x = torch.randn(N, C, H, W)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            dw, pw = torch.randn(C, 1, 3, 3), torch.randn(Cout, C, 1, 1) / C**0.5
            db, pb = torch.randn(C), torch.randn(Cout)
            out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, act, pw_act)
            ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), 1, 1, 1, act, pw_act)
            torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5, msg=lambda m: f"{C}->{Cout} {cl}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_planes_direct_depthwise_edges(isa, dtype, monkeypatch):
    # NCHW depthwise read straight from the input (column stride 1): masked row pieces at the left /
    # right borders, zero rows above / below, widths around the vector length, bands starting and
    # ending mid-row (tiny tile budget), 3x3 (row reuse) and 5x5 / 7x7 / dilated rows.
    monkeypatch.setenv("DSCONV_FUSED_TILE_KB", "1")
    monkeypatch.setenv("DSCONV_FUSED_MIN_BAND", "1")
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for W in (1, 5, 8, 16, 17, 33):
        for H in (1, 4, 7):
            for k, pad, dil in ((3, 1, 1), (3, 0, 1), (3, 2, (2, 1)), (5, 2, 1), (7, 3, 1), (7, 1, 1)):
                if (H + 2 * pad - (k - 1) * (dil if isinstance(dil, int) else dil[0]) - 1) < 0 or W + 2 * pad - k < 0:
                    continue
                x = torch.randn(2, 5, H, W).to(dtype)
                dw, pw = torch.randn(5, 1, k, k).to(dtype), (torch.randn(7, 5, 1, 1) / 3).to(dtype)
                db, pb = torch.randn(5).to(dtype), torch.randn(7).to(dtype)
                out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, pad, dil, "relu", None)
                ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), 1, pad, dil, "relu", None)
                torch.testing.assert_close(out.double(), ref, **tol, msg=lambda m: f"W={W} H={H} k={k} pad={pad}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pixels_3x3_blocks_edges(isa, dtype, monkeypatch):
    # channels_last 3x3 stride 1 (the sliding window on AVX-512): row groups of 4 / 3 / 2 / 1 rows,
    # window rows over the padding (the zero row) and columns over it (no load), channel counts
    # around the vector length (partial last vector), bands starting and ending mid-row, padding
    # 0 / 1 / 2, rows shorter than the kernel, every activation (those applied on the registers and
    # those applied in a pass), and pixels further apart than C (a column-strided view).
    monkeypatch.setenv("DSCONV_FUSED_TILE_KB", "2")
    monkeypatch.setenv("DSCONV_FUSED_MIN_BAND", "1")
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    acts = iter(ACTS * 100)
    for C in (3, 16, 17, 40):
        for H, W in ((1, 1), (2, 7), (5, 4), (9, 11), (7, 20)):
            for pad in (0, 1, 2):
                if H + 2 * pad < 3 or W + 2 * pad < 3:
                    continue
                act = next(acts)
                x = torch.randn(2, C, H, W).to(dtype).contiguous(memory_format=torch.channels_last)
                if pad == 1 and W > 5:
                    x = torch.randn(2, C, H, 2 * W).to(dtype).contiguous(memory_format=torch.channels_last)[..., ::2]
                dw, pw = torch.randn(C, 1, 3, 3).to(dtype), (torch.randn(6, C, 1, 1) / C**0.5).to(dtype)
                db, pb = torch.randn(C).to(dtype), torch.randn(6).to(dtype)
                out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, pad, 1, act, "silu")
                ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), 1, pad, 1, act, "silu")
                torch.testing.assert_close(out.double(), ref, **tol,
                                           msg=lambda m: f"C={C} H={H} W={W} pad={pad} act={act}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pixels_gemm_large_c_row_block_order(isa, dtype, monkeypatch):
    # channels_last with C * (GEMM column block) * 4 bytes over the L1 panel budget: the GEMM runs
    # row block by row block over all column blocks. Partial column blocks (Cout 40, 100), row
    # blocks cut by the band end (35 pixels per image, bands of any length), and bias/activations.
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for tile_kb, min_band in ((None, None), ("1", "1"), ("1", "17")):
        if tile_kb:
            monkeypatch.setenv("DSCONV_FUSED_TILE_KB", tile_kb)
            monkeypatch.setenv("DSCONV_FUSED_MIN_BAND", min_band)
        for C, Cout in ((400, 40), (336, 96), (576, 100)):
            x = torch.randn(2, C, 5, 7).to(dtype).contiguous(memory_format=torch.channels_last)
            dw, pw = torch.randn(C, 1, 3, 3).to(dtype), (torch.randn(Cout, C, 1, 1) / C**0.5).to(dtype)
            db, pb = torch.randn(C).to(dtype), torch.randn(Cout).to(dtype)
            out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "relu6", "silu")
            ref = reference(x.double(), dw.double(), pw.double(), db.double(), pb.double(), 1, 1, 1, "relu6", "silu")
            torch.testing.assert_close(out.double(), ref, **tol, msg=lambda m: f"C={C} Cout={Cout} band {min_band}: {m}")
            assert out.is_contiguous(memory_format=torch.channels_last)


def test_bfloat16_random_configs(isa):
    rng = random.Random(7)
    for _ in range(25):
        cfg = random_config(rng, big=True)
        x, dw, pw, db, pb = make_args(cfg, torch.bfloat16)
        out = run(cfg, x, dw, pw, db, pb)
        assert out.dtype == torch.bfloat16
        # Exact composition of the same (bf16-valued) inputs; the kernel keeps the depthwise
        # intermediate in float32, so only the output rounding and bf16 inputs differ from it.
        ref = ref_of(cfg, *[t if t is None else t.double() for t in (x, dw, pw, db, pb)])
        scale = ref.abs().max().item() + 1
        torch.testing.assert_close(out.double(), ref, rtol=1.6e-2, atol=4e-3 * scale, msg=lambda m: f"{cfg}: {m}")


def test_bfloat16_close_to_pytorch_bf16():
    x = torch.randn(2, 32, 20, 20, dtype=torch.bfloat16)
    dw, pw = torch.randn(32, 1, 3, 3, dtype=torch.bfloat16), torch.randn(40, 32, 1, 1, dtype=torch.bfloat16) / 6
    out = dsconv_ext.separable_conv2d(x, dw, pw, None, None, 1, 1, 1, "silu", "gelu")
    exact = reference(x.double(), dw.double(), pw.double(), None, None, 1, 1, 1, "silu", "gelu")
    torch_bf16 = reference(x, dw, pw, None, None, 1, 1, 1, "silu", "gelu")
    # at least as accurate as PyTorch's own bf16 composition (up to a rounding step)
    assert (out.double() - exact).abs().max() <= (torch_bf16.double() - exact).abs().max() * 1.5 + 1e-2


def test_float16_generic_path():
    x = torch.randn(2, 8, 10, 10, dtype=torch.float16)
    dw, pw = torch.randn(8, 1, 3, 3, dtype=torch.float16), torch.randn(4, 8, 1, 1, dtype=torch.float16)
    out = dsconv_ext.separable_conv2d(x, dw, pw, padding=1, activation="relu")
    ref = reference(x.double(), dw.double(), pw.double(), None, None, 1, 1, 1, "relu", None)
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=2e-2)


def test_paths_agree_bitwise_across_thread_counts(isa):
    x = torch.randn(3, 40, 33, 29)
    dw, pw = torch.randn(40, 1, 3, 3), torch.randn(24, 40, 1, 1)
    outs = []
    for t in (1, 2):
        torch.set_num_threads(t)
        outs.append(dsconv_ext.separable_conv2d(x, dw, pw, padding=1, activation="silu", pw_activation="relu"))
    assert torch.equal(outs[0], outs[1])


def test_special_values(isa):
    # activations of large / NaN values behave as PyTorch's
    x = torch.tensor([0.0, 1.0, -1.0, 50.0, -50.0, 100.0, -100.0, float("nan")]).view(1, 8, 1, 1)
    dw = torch.ones(8, 1, 1, 1)
    pw = torch.eye(8).view(8, 8, 1, 1)
    for act in ACTS:
        out = dsconv_ext.separable_conv2d(x[:, :7], dw[:7], pw[:7, :7], activation=act, pw_activation=act)
        ref = act_fn(ACT_CODES[act])(act_fn(ACT_CODES[act])(x[:, :7]))
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        # a NaN input channel reaches every output channel, as in the composition
        out = dsconv_ext.separable_conv2d(x, dw, pw, activation=act)
        assert out.isnan().all()


# --- memory format, shapes, special inputs -------------------------------------------------------
@pytest.mark.parametrize("x_cl", [False, True])
@pytest.mark.parametrize("dw_cl", [False, True])
@pytest.mark.parametrize("pw_cl", [False, True])
def test_memory_format_follows_composition(x_cl, dw_cl, pw_cl):
    x = torch.randn(2, 6, 7, 8)
    dw, pw = torch.randn(6, 1, 3, 3), torch.randn(5, 6, 1, 1)
    if x_cl:
        x = x.contiguous(memory_format=torch.channels_last)
    if dw_cl:
        dw = dw.contiguous(memory_format=torch.channels_last)
    if pw_cl:
        pw = torch.randn(5, 1, 1, 6).permute(0, 3, 1, 2)  # strides of a channels_last (Cout, C, 1, 1)
    out = dsconv_ext.separable_conv2d(x, dw, pw, padding=1)
    ref = reference(x, dw, pw, None, None, 1, 1, 1, None, None)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out.stride() == ref.stride()
    meta = torch.ops.dsconv.separable_conv2d(
        x.to("meta"), dw.to("meta"), None, pw.to("meta"), None, [1, 1], [1, 1, 1, 1], [1, 1], 0, 0
    )
    assert meta.shape == ref.shape and meta.stride() == ref.stride()


def test_unbatched_and_empty():
    x = torch.randn(6, 9, 9)
    dw, pw = torch.randn(6, 1, 3, 3), torch.randn(4, 6, 1, 1)
    out = dsconv_ext.separable_conv2d(x, dw, pw, padding="same", activation="relu")
    torch.testing.assert_close(out, reference(x, dw, pw, None, None, 1, "same", 1, "relu", None))
    assert out.shape == (4, 9, 9)
    empty = dsconv_ext.separable_conv2d(torch.randn(0, 6, 9, 9), dw, pw, padding=1)
    assert empty.shape == (0, 4, 9, 9)


def test_same_padding_even_kernel_is_asymmetric():
    x = torch.randn(2, 5, 10, 11, dtype=torch.float64)
    dw, pw = torch.randn(5, 1, 4, 2, dtype=torch.float64), torch.randn(3, 5, 1, 1, dtype=torch.float64)
    out = dsconv_ext.separable_conv2d(x, dw, pw, padding="same", dilation=(1, 3))
    torch.testing.assert_close(out, reference(x, dw, pw, None, None, 1, "same", (1, 3), None, None))
    x32, dw32, pw32 = x.float(), dw.float(), pw.float()
    out32 = dsconv_ext.separable_conv2d(x32, dw32, pw32, padding="same", dilation=(1, 3))
    torch.testing.assert_close(out32.double(), out, rtol=1e-5, atol=1e-5)


def test_fake_tensor_and_compile_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.randn(2, 8, 15, 15).contiguous(memory_format=torch.channels_last)
        out = dsconv_ext.separable_conv2d(x, torch.randn(8, 1, 5, 5), torch.randn(12, 8, 1, 1), stride=2, padding=2)
        assert out.shape == (2, 12, 8, 8)
        assert out.is_contiguous(memory_format=torch.channels_last)


# --- errors --------------------------------------------------------------------------------------------
def test_errors():
    x = torch.randn(2, 6, 9, 9)
    dw, pw = torch.randn(6, 1, 3, 3), torch.randn(4, 6, 1, 1)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        dsconv_ext.separable_conv2d(x, dw, pw, activation="tanh")
    with pytest.raises(ValueError, match="unknown pw_activation"):
        dsconv_ext.separable_conv2d(x, dw, pw, pw_activation="swish")
    with pytest.raises(ValueError, match="channel multiplier 1"):
        dsconv_ext.separable_conv2d(x, torch.randn(12, 1, 3, 3), pw)
    with pytest.raises(ValueError, match=r"pw_weight must have shape \(Cout, 6, 1, 1\)"):
        dsconv_ext.separable_conv2d(x, dw, torch.randn(4, 5, 1, 1))
    with pytest.raises(ValueError, match=r"pw_weight must have shape"):
        dsconv_ext.separable_conv2d(x, dw, torch.randn(4, 6, 3, 3))
    with pytest.raises(ValueError, match=r"dw_weight must have shape \(C, 1, kH, kW\)"):
        dsconv_ext.separable_conv2d(x, torch.randn(6, 3, 3), pw)
    with pytest.raises(ValueError, match=r"dw_bias must have shape \(6,\)"):
        dsconv_ext.separable_conv2d(x, dw, pw, dw_bias=torch.randn(4))
    with pytest.raises(ValueError, match=r"pw_bias must have shape \(4,\)"):
        dsconv_ext.separable_conv2d(x, dw, pw, pw_bias=torch.randn(6))
    with pytest.raises(ValueError, match="3-D .* or 4-D"):
        dsconv_ext.separable_conv2d(torch.randn(6, 9), dw, pw)
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        dsconv_ext.separable_conv2d(x, dw, pw, stride=2, padding="same")
    with pytest.raises(TypeError, match="pw_weight must be a Tensor"):
        dsconv_ext.separable_conv2d(x, dw, None)
    with pytest.raises(RuntimeError, match="pw_weight dtype"):
        dsconv_ext.separable_conv2d(x, dw, pw.double())
    with pytest.raises(RuntimeError, match="smaller than the dilated kernel"):
        dsconv_ext.separable_conv2d(torch.randn(1, 6, 2, 2), dw, pw)
    op = torch.ops.dsconv.separable_conv2d
    with pytest.raises(RuntimeError, match="act code 9"):
        op(x, dw, None, pw, None, [1, 1], [0, 0, 0, 0], [1, 1], 9, 0)
    with pytest.raises(RuntimeError, match="channel multiplier 1"):
        op(x, torch.randn(12, 1, 3, 3), None, pw, None, [1, 1], [0, 0, 0, 0], [1, 1], 0, 0)
    with pytest.raises(RuntimeError, match=r"pw_bias must have shape \(4,\)"):
        op(x, dw, None, pw, torch.randn(3), [1, 1], [0, 0, 0, 0], [1, 1], 0, 0)


# --- memory safety: inputs placed against a PROT_NONE page ------------------------------------------
def _guarded_input(shape, dtype, cl, before, keep):
    """A tensor whose storage ends right before (or starts right after) an inaccessible page:
    any read past its last (before its first) element faults."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    numel = shape[0] * shape[1] * shape[2] * shape[3]
    nbytes = numel * torch.empty(0, dtype=dtype).element_size()
    npages = (nbytes + page - 1) // page + 2
    m = mmap.mmap(-1, npages * page)
    buf = (ctypes.c_char * (npages * page)).from_buffer(m)
    addr = ctypes.addressof(buf)
    libc = ctypes.CDLL(None)
    guard = addr if before else addr + (npages - 1) * page
    assert libc.mprotect(ctypes.c_void_p(guard), page, 0) == 0
    off = page if before else (npages - 1) * page - nbytes
    keep.append((m, buf))
    t = torch.frombuffer(m, dtype=torch.uint8, count=nbytes, offset=off).view(dtype)
    N, C, H, W = shape
    t = t.view(N, H, W, C).permute(0, 3, 1, 2) if cl else t.view(N, C, H, W)
    t.copy_(torch.randn(shape).to(dtype))
    return t


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="mprotect guard pages: Linux")
def test_no_reads_outside_the_input(isa):
    if isa == "generic":
        pytest.skip("the generic path reads only in-range elements by construction")
    rng = random.Random(3)
    keep = []
    for _ in range(8):
        C, Cout = rng.choice([1, 3, 17, 40]), rng.choice([1, 24, 33])
        k, s = rng.choice([3, 5, 7]), rng.choice([1, 2])
        H, W = rng.randint(k, 12), rng.randint(k, 30)
        for dtype in (torch.float32, torch.bfloat16):
            for cl in (False, True):
                for before in (False, True):
                    x = _guarded_input((2, C, H, W), dtype, cl, before, keep)
                    dw, pw = torch.randn(C, 1, k, k).to(dtype), torch.randn(Cout, C, 1, 1).to(dtype)
                    out = dsconv_ext.separable_conv2d(x, dw, pw, stride=s, padding=k // 2, activation="relu")
                    ref = reference(x.double(), dw.double(), pw.double(), None, None, s, k // 2, 1, "relu", None)
                    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2 * (ref.abs().max().item() + 1))
