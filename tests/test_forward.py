"""Forward differential tests: dsconv_ext.depthwise_conv2d against F.conv2d(groups=C).

Values, shape, dtype and strides (memory format) must all match. float64 is compared tightly;
float32 / bfloat16 / float16 are compared against the float64 reference of the same rounded inputs.
"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext
from _utils import (
    F64_TOL,
    LAYOUTS,
    Config,
    apply_layout,
    assert_same_layout,
    lowp_tol,
    make_args,
    make_input,
    reference,
    sample_configs,
)


def _run(cfg: Config, x, w, b):
    out = dsconv_ext.depthwise_conv2d(x, w, b, cfg.stride, cfg.padding, cfg.dilation)
    ref = reference(x, w, b, cfg.stride, cfg.padding, cfg.dilation)
    return out, ref


# ---------------------------------------------------------------------------------------------
# float64, seeded random grid

GRID = sample_configs(seed=20240611, n=160)


@pytest.mark.parametrize("cfg", GRID, ids=[c.id() for c in GRID])
def test_grid_float64(cfg):
    x, w, b = make_args(cfg)
    out, ref = _run(cfg, x, w, b)
    assert_same_layout(out, ref)
    torch.testing.assert_close(out, ref, **F64_TOL)


# Hand-picked corner cases, each run in every layout.
EDGE = {
    "k1x1": Config(2, 3, 1, 7, 5, (1, 1), 1, 0, 1, True),
    "k1x1_s2_p1": Config(2, 3, 2, 7, 5, (1, 1), 2, 1, 1, False),
    "k11_p5": Config(1, 2, 1, 13, 12, (11, 11), 1, 5, 1, True),
    "k11x1_same": Config(2, 2, 1, 9, 6, (11, 1), 1, "same", 1, True),
    "k2_same": Config(2, 3, 1, 8, 7, (2, 2), 1, "same", 1, True),
    "k4x2_same_d3": Config(1, 3, 2, 10, 9, (4, 2), 1, "same", 3, False),
    "k2x5_same_d2x3": Config(2, 2, 1, 11, 13, (2, 5), 1, "same", (2, 3), True),
    "k3_valid": Config(3, 4, 1, 6, 9, (3, 3), 1, "valid", 1, True),
    "k6_valid_exact": Config(1, 2, 3, 6, 6, (6, 6), 1, "valid", 1, True),
    "hw1_k3_p1": Config(2, 3, 1, 1, 1, (3, 3), 1, 1, 1, True),
    "hw1_k5_p2_s3": Config(2, 3, 2, 1, 1, (5, 5), 3, 2, 1, True),
    "h2_k7_p3": Config(1, 4, 1, 2, 3, (7, 7), 1, 3, 1, False),
    "small_k5_d2_p4": Config(2, 2, 1, 3, 2, (5, 5), 1, 4, 2, True),
    "pad_beyond_k2": Config(2, 2, 1, 5, 4, (3, 3), 1, 4, 1, True),
    "pad_pair_asym": Config(2, 3, 1, 9, 8, (3, 5), 1, (0, 3), 1, True),
    "s3_d3_p_pair": Config(2, 2, 2, 17, 19, (3, 4), (3, 2), (2, 1), (3, 2), True),
    "s2x1_even_k": Config(3, 5, 1, 12, 11, (4, 2), (2, 1), 1, 1, False),
    "c1": Config(2, 1, 1, 9, 9, (3, 3), 1, 1, 1, True),
    "c1_m3": Config(2, 1, 3, 9, 9, (3, 3), 2, 1, 1, True),
    "c24_cl_block": Config(2, 24, 1, 9, 8, (3, 3), 1, 1, 1, True),
    "c7_m3_block": Config(1, 7, 3, 9, 8, (5, 3), 2, 2, 1, True),
    "wide_40x40": Config(1, 3, 1, 40, 40, (7, 7), 1, 3, 1, True),
    "odd_39x17_s2": Config(2, 3, 2, 39, 17, (3, 3), 2, 1, 1, True),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(EDGE))
def test_edge_cases_float64(name, layout):
    cfg = EDGE[name]
    cfg = Config(**{**cfg.__dict__, "layout": layout})
    x, w, b = make_args(cfg)
    out, ref = _run(cfg, x, w, b)
    assert_same_layout(out, ref)
    torch.testing.assert_close(out, ref, **F64_TOL)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_layout_equivalence(layout, bias):
    """The same values in every layout give the same result (and F.conv2d's strides)."""
    x = torch.randn(2, 5, 13, 11, dtype=torch.float64)
    w = torch.randn(10, 1, 3, 4, dtype=torch.float64)
    b = torch.randn(10, dtype=torch.float64) if bias else None
    expected = reference(x, w, b, 1, (1, 2), 1)
    if layout == "expanded":
        x = x[:1].expand(2, -1, -1, -1)
        expected = reference(x, w, b, 1, (1, 2), 1)
    xl = apply_layout(x, layout) if layout != "expanded" else x
    out = dsconv_ext.depthwise_conv2d(xl, w, b, 1, (1, 2), 1)
    assert_same_layout(out, reference(xl, w, b, 1, (1, 2), 1))
    torch.testing.assert_close(out, expected, **F64_TOL)


# ---------------------------------------------------------------------------------------------
# Unbatched input, weight layouts, argument forms


@pytest.mark.parametrize("view", ["contiguous", "step", "transposed"])
@pytest.mark.parametrize(
    "k,stride,padding,dilation",
    [((3, 3), 1, 1, 1), ((4, 2), 1, "same", 2), ((5, 3), 2, (2, 0), 1), ((2, 2), 1, "valid", 1)],
    ids=["k3p1", "k4x2same_d2", "k5x3s2", "k2valid"],
)
def test_unbatched(view, k, stride, padding, dilation):
    C, H, W = 3, 10, 9
    if view == "contiguous":
        x = torch.randn(C, H, W, dtype=torch.float64)
    elif view == "step":
        x = torch.randn(2 * C, H, 2 * W, dtype=torch.float64)[::2, :, ::2]
    else:
        x = torch.randn(C, W, H, dtype=torch.float64).transpose(1, 2)
    w = torch.randn(2 * C, 1, *k, dtype=torch.float64)
    b = torch.randn(2 * C, dtype=torch.float64)
    out = dsconv_ext.depthwise_conv2d(x, w, b, stride, padding, dilation)
    ref = F.conv2d(x, w, b, stride, padding, dilation, groups=C)
    assert out.dim() == 3
    assert_same_layout(out, ref)
    torch.testing.assert_close(out, ref, **F64_TOL)


@pytest.mark.parametrize("wlayout", ["channels_last", "cl_strided", "step", "transposed", "oc_inner"])
@pytest.mark.parametrize("xlayout", ["nchw", "cl"])
def test_weight_layouts(wlayout, xlayout):
    x = make_input((2, 4, 11, 10), xlayout)
    w = torch.randn(8, 1, 3, 5, dtype=torch.float64)
    if wlayout == "channels_last":
        w = w.contiguous(memory_format=torch.channels_last)
    elif wlayout == "cl_strided":  # non-contiguous, suggests channels_last: the output follows it
        w = torch.randn(8, 3, 5, 2, dtype=torch.float64)[..., :1].permute(0, 3, 1, 2)
        assert w.stride() == (30, 1, 10, 2)
    elif wlayout == "oc_inner":
        w = torch.randn(3, 5, 1, 8, dtype=torch.float64).permute(3, 2, 0, 1)
    elif wlayout == "step":
        w = apply_layout(w, "step")
    else:
        w = w.transpose(2, 3).contiguous().transpose(2, 3)
    b = torch.randn(8, dtype=torch.float64)
    out = dsconv_ext.depthwise_conv2d(x, w, b, 1, 1, 1)
    ref = reference(x, w, b, 1, 1, 1)
    assert_same_layout(out, ref)
    torch.testing.assert_close(out, ref, **F64_TOL)


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(2, 1, 9, 8, dtype=torch.float64).expand(2, 4, 9, 8),
        lambda: torch.randn(2, 4, 9, 1, dtype=torch.float64).expand(2, 4, 9, 8),
        lambda: torch.randn(2, 4, 1, 1, dtype=torch.float64).expand(2, 4, 9, 8),
        lambda: torch.randn(1, 1, 1, 1, dtype=torch.float64).expand(2, 4, 9, 8),
        lambda: torch.randn(2, 9, 4, 8, dtype=torch.float64).transpose(1, 2),
        lambda: torch.randn(8, 9, 4, 2, dtype=torch.float64).permute(3, 2, 1, 0),
    ],
    ids=["expanded_c", "expanded_w", "expanded_hw", "expanded_all", "c_h_swapped", "reversed_dims"],
)
@pytest.mark.parametrize("m", [1, 2])
def test_unusual_input_strides(make, m):
    x = make()
    w = torch.randn(4 * m, 1, 3, 2, dtype=torch.float64)
    b = torch.randn(4 * m, dtype=torch.float64)
    out = dsconv_ext.depthwise_conv2d(x, w, b, (2, 1), (1, 0), (1, 2))
    ref = reference(x, w, b, (2, 1), (1, 0), (1, 2))
    assert_same_layout(out, ref)
    torch.testing.assert_close(out, ref, **F64_TOL)


@pytest.mark.parametrize(
    "stride,padding,dilation",
    [
        ((2,), (1,), (1,)),
        ([2, 1], [1, 2], [1, 2]),
        ((1, 3), (3, 0), (2, 1)),
    ],
    ids=["len1_tuples", "lists", "tuples"],
)
def test_argument_forms(stride, padding, dilation):
    x = torch.randn(2, 3, 12, 13, dtype=torch.float64)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    out = dsconv_ext.depthwise_conv2d(x, w, None, stride, padding, dilation)
    ref = F.conv2d(x, w, None, stride, padding, dilation, groups=3)
    assert_same_layout(out, ref)
    torch.testing.assert_close(out, ref, **F64_TOL)


@pytest.mark.parametrize(
    "pad4",
    [(0, 1, 2, 0), (3, 0, 0, 1), (1, 2, 3, 4), (0, 0, 5, 0), (4, 4, 0, 0)],
    ids=lambda p: "tblr" + "_".join(map(str, p)),
)
@pytest.mark.parametrize("layout", ["nchw", "cl", "step"])
def test_op_four_sided_padding(pad4, layout):
    """The op's (top, bottom, left, right) padding equals explicit zero padding + valid conv."""
    t, bo, le, r = pad4
    x = make_input((2, 3, 7, 6), layout)
    w = torch.randn(6, 1, 3, 4, dtype=torch.float64)
    b = torch.randn(6, dtype=torch.float64)
    out = torch.ops.dsconv.depthwise_conv2d(x, w, b, [1, 2], list(pad4), [2, 1])
    ref = F.conv2d(F.pad(x, (le, r, t, bo)), w, b, (1, 2), 0, (2, 1), groups=3)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, **F64_TOL)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_empty_batch(layout):
    x = make_input((0, 3, 8, 8), layout)
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    out = dsconv_ext.depthwise_conv2d(x, w, torch.randn(6, dtype=torch.float64), 2, 1)
    ref = F.conv2d(x, w, None, 2, 1, groups=3)
    assert out.shape == ref.shape == (0, 6, 4, 4)
    assert out.dtype == torch.float64


# ---------------------------------------------------------------------------------------------
# Reduced precision against the float64 reference

LOWP_DTYPES = [torch.float32, torch.bfloat16, torch.float16]
LOWP_GRID = sample_configs(seed=777, n=30)


@pytest.mark.parametrize("dtype", LOWP_DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("cfg", LOWP_GRID, ids=[c.id() for c in LOWP_GRID])
def test_grid_low_precision(cfg, dtype):
    x64, w64, b64 = make_args(cfg)
    x, w = x64.to(dtype), w64.to(dtype)
    b = b64.to(dtype) if b64 is not None else None
    out = dsconv_ext.depthwise_conv2d(x, w, b, cfg.stride, cfg.padding, cfg.dilation)
    # Layout and dtype as F.conv2d in the same dtype...
    assert_same_layout(out, reference(x, w, b, cfg.stride, cfg.padding, cfg.dilation))
    # ...values as the exact (float64) convolution of the same rounded inputs.
    ref = reference(x.double(), w.double(), b.double() if b is not None else None, cfg.stride, cfg.padding, cfg.dilation)
    torch.testing.assert_close(out.double(), ref, **lowp_tol(dtype, cfg.taps))


@pytest.mark.parametrize("dtype", LOWP_DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("k", [3, 7, 11])
def test_low_precision_accumulates_in_float32(dtype, k):
    """Long reductions (k*k taps plus a large bias) in 16-bit types keep float32 accuracy."""
    x64 = torch.randn(2, 4, 16, 16, dtype=torch.float64)
    w64 = torch.randn(8, 1, k, k, dtype=torch.float64) / k
    b64 = torch.randn(8, dtype=torch.float64) * 10
    x, w, b = x64.to(dtype), w64.to(dtype), b64.to(dtype)
    out = dsconv_ext.depthwise_conv2d(x, w, b, 1, "same")
    ref = reference(x.double(), w.double(), b.double(), 1, "same")
    # The only 16-bit rounding is the final one: at most half an ulp of the output.
    eps = torch.finfo(dtype).eps
    bound = ref.abs() * eps + 1e-5 * k * k
    assert ((out.double() - ref).abs() <= bound).all(), (out.double() - ref).abs().max()


def test_autocast_output_dtype_like_conv2d():
    x = torch.randn(2, 4, 9, 9)
    w = torch.randn(8, 1, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = reference(x, w, None, 1, 1)
        out = dsconv_ext.depthwise_conv2d(x, w, None, 1, 1)
    assert out.dtype == ref.dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------------
# Thread-count independence (bitwise)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("layout", ["nchw", "cl", "step"])
def test_bitwise_identical_across_thread_counts(layout, dtype):
    x = make_input((3, 20, 24, 23), layout, dtype)
    w = torch.randn(40, 1, 5, 5, dtype=dtype)
    b = torch.randn(40, dtype=dtype)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(dsconv_ext.depthwise_conv2d(x, w, b, (1, 2), 2, (2, 1)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], results[1])
    assert results[0].stride() == results[1].stride()


@pytest.mark.skipif(not (sys.platform.startswith("linux") and torch._C.has_openmp), reason="Linux + OpenMP torch only")
def test_single_openmp_runtime():
    """The extension's at::parallel_for shares torch's OpenMP runtime (one libgomp / libiomp
    mapped), so torch.set_num_threads governs its thread pool too. Checked in a fresh process:
    other test modules may load libraries that bring their own OpenMP copy (scikit-learn does)."""
    code = (
        "import os, torch, dsconv_ext\n"
        "dsconv_ext.depthwise_conv2d(torch.randn(2, 8, 16, 16), torch.randn(8, 1, 3, 3))\n"
        "paths = {l.split()[-1] for l in open('/proc/self/maps') if '/' in l}\n"
        "print(sorted(p for p in paths if os.path.basename(p).startswith(('libgomp', 'libiomp', 'libomp'))))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    runtimes = eval(out.strip().splitlines()[-1])
    assert len(runtimes) <= 1, runtimes
