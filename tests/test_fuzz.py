"""Hypothesis-driven differential fuzzing of every dsconv op against PyTorch (issue 8).

Each example draws a whole problem: N, C, channel multiplier, H, W (often smaller than the
kernel), a non-square kernel (occasionally up to 31 wide), stride, dilation, padding (int, pair,
'same', 'valid', or four-sided through the raw op), dtype, input layout (contiguous,
channels_last, sliced/strided views, a transposed or permuted view, a batch expanded with stride
0, an unbatched 3-D input), weight/bias layouts, requires_grad combinations, the thread count and
every CPU instruction set this machine runs. The result is compared with a float64 reference
computed by PyTorch from the very same (rounded) values:

  * depthwise_conv2d: F.conv2d(F.pad(x), w, b, groups=C), forward and every gradient through
    autograd; the raw ops with four-sided padding and a random output_mask / grad_output layout.
  * separable_conv2d: the unfused composition conv -> act -> 1x1 conv -> act, forward and backward.
  * bad arguments (wrong ranks, dtypes, shapes, zero sizes, stride/dilation 0 or negative,
    negative padding, 'same' with a stride, ...): dsconv raises exactly when F.conv2d does, with a
    "dsconv: " message, and its fake (meta) kernel raises the same message as the CPU op.

Tolerances are error *bounds*, not guesses: for a result that sums n terms, the kernel may be off
by the output's rounding (relative to the result) plus n * eps_acc * sum(|terms|), where
sum(|terms|) is computed by running the same reference on absolute values (eps_acc = 2^-23 for
types that accumulate in float32, 2^-52 for float64). A wrong tap, index or border moves a result
by about one term, far outside the bound; a correct kernel can never leave it, whatever its
summation order, so the fuzzing cannot flake.

Budget: a settings profile picked by the environment variable DSCONV_FUZZ_PROFILE:
  ci   (default) a fixed, derandomized set of 730 examples (160 depthwise autograd, 150 raw ops,
       120 separable, 300 bad arguments), ~75 s on the 2-core machine with other jobs running;
  long 1000 fresh random examples per test, 4000 in all (DSCONV_FUZZ_PROFILE=long python -m
       pytest tests/test_fuzz.py -q): ~28 min on that machine (2026-11-26, all passed).
DSCONV_FUZZ_EXAMPLES=<n> overrides the per-test count of either profile.
A failure prints the reproducing blob (@reproduce_failure). DSCONV_FUZZ_REPORT=<path> writes the
number of examples each test ran to a JSON file at the end of the module.
"""
import collections
import contextlib
import json
import os
import time

import pytest
import torch
import torch.nn.functional as F
from torch._prims_common import suggest_memory_format
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dsconv_ext
from _utils import supported_isas
from dsconv_ext._args import conv_args
from dsconv_ext._fused_act import ACT_CODES, act_fn

# ---------------------------------------------------------------------------------------------
# Budget

PROFILE = os.environ.get("DSCONV_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"DSCONV_FUZZ_PROFILE must be 'ci' or 'long', got {PROFILE!r}")
_OVERRIDE = int(os.environ.get("DSCONV_FUZZ_EXAMPLES", "0"))


def fuzz_settings(ci: int, long: int):
    """Settings for one fuzz test: `ci` examples (derandomized: the same ones on every run) or
    `long` random ones."""
    n = _OVERRIDE or (ci if PROFILE == "ci" else long)
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=PROFILE == "ci",
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


# Examples that ran to the end (all checks passed), per test; rejected ones (assume) not counted.
COUNTS = collections.Counter()
_T0 = time.time()


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    summary = {"profile": PROFILE, "seconds": round(time.time() - _T0, 1), "examples": dict(COUNTS),
               "total": sum(COUNTS.values())}
    print(f"\ndsconv fuzz: {json.dumps(summary)}")
    path = os.environ.get("DSCONV_FUZZ_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(summary, f, indent=1)


ISAS = supported_isas()


@contextlib.contextmanager
def cpu_isa(isa: str, threads: int):
    """Depthwise ISA (dsconv_ext.set_cpu_isa), fused-op ISA cap (DSCONV_FUSED_ISA, read per call)
    and thread count for the duration of one example."""
    prev = dsconv_ext.set_cpu_isa(isa)
    prev_env = os.environ.get("DSCONV_FUSED_ISA")
    prev_threads = torch.get_num_threads()
    os.environ["DSCONV_FUSED_ISA"] = isa
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        dsconv_ext.set_cpu_isa(prev)
        if prev_env is None:
            del os.environ["DSCONV_FUSED_ISA"]
        else:
            os.environ["DSCONV_FUSED_ISA"] = prev_env
        torch.set_num_threads(prev_threads)


# ---------------------------------------------------------------------------------------------
# Error bounds

F64 = torch.float64
DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
# Rounding of the result to its dtype (twice the unit roundoff: also covers the rounding of an
# already slightly-off accumulator).
ROUND = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-10}
# Per-operation error of the accumulation (float32 for the 32- and 16-bit types).
EPS_ACC = {torch.float64: 2.0**-52, torch.float32: 2.0**-23, torch.bfloat16: 2.0**-23, torch.float16: 2.0**-23}
# Absolute floor: the spacing of the dtype's subnormals (float16 results may be subnormal).
TINY = {torch.float64: 1e-300, torch.float32: 1e-40, torch.bfloat16: 1e-40, torch.float16: 2.0**-24}


def assert_within(got, ref, absref, n_terms, dtype, what, extra_rel=0.0):
    """|got - ref| <= ROUND*|ref| + (n_terms + 2) * EPS_ACC * absref (+ extra_rel * absref),
    elementwise; got in `dtype`, ref / absref float64 (absref = the sum of |terms|)."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    g = got.detach().double()
    bound = ROUND[dtype] * ref.abs() + ((n_terms + 2) * EPS_ACC[dtype] + extra_rel) * absref + TINY[dtype]
    err = (g - ref).abs()
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        i = int(torch.argmax(torch.where(bad, err / bound, torch.zeros_like(err)).flatten().nan_to_num(float("inf"))))
        idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), ref.shape))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {ref.numel()} elements outside the error bound; worst at {idx}: "
            f"got {g.flatten()[i].item()!r}, reference {ref.flatten()[i].item()!r}, "
            f"bound {bound.flatten()[i].item():.3g} (n_terms={n_terms})"
        )


def slow_path_layout_is_ambiguous(x):
    """A float64 or float16 input of 1x1 images (channels_last-like strides are then ambiguous):
    PyTorch's oneDNN-free path for these dtypes picks NCHW outputs for batches of 2 or more and
    channels_last for a batch of 1 (float32/bfloat16 keep channels_last), a choice dsconv does
    not mimic (it follows the input's suggested memory format, as PyTorch does in every other
    case). The values are still checked as everywhere else."""
    return x.dtype in (torch.float64, torch.float16) and x.shape[-1] == 1 and x.shape[-2] == 1


def assert_same_layout(got, want, what):
    """Same strides as PyTorch's result where they matter: along dimensions of size > 1 (PyTorch
    itself is not consistent about the strides of size-1 dimensions, e.g. its CPU and meta
    convolutions differ there), and the same contiguity in both memory formats."""
    for d, (n, a, b) in enumerate(zip(got.shape, got.stride(), want.stride())):
        assert n == 1 or a == b, f"{what}: strides {got.stride()} != PyTorch's {want.stride()} (shape {tuple(got.shape)})"
    for fmt in (torch.contiguous_format, torch.channels_last):
        assert got.is_contiguous(memory_format=fmt) == want.is_contiguous(memory_format=fmt), f"{what}: {fmt}"


# ---------------------------------------------------------------------------------------------
# Layouts: a leaf "base" tensor and a view function base -> logical (N, C, H, W) tensor.


def _view_fn(layout, shape):
    N, C, H, W = shape
    if layout == "nchw":
        return (N, C, H, W), lambda b: b
    if layout == "cl":
        return (N, H, W, C), lambda b: b.permute(0, 3, 1, 2)
    if layout == "cl_slice":  # channels_last with a gap between pixels (channel stride 1, offset 1)
        return (N, H, W, C + 2), lambda b: b.permute(0, 3, 1, 2)[:, 1 : C + 1]
    if layout == "step":  # every other channel and row, an offset along W
        return (N, 2 * C, 2 * H, W + 3), lambda b: b[:, ::2, ::2, 1 : W + 1]
    if layout == "transposed":  # H has unit stride
        return (N, C, W, H), lambda b: b.transpose(2, 3)
    if layout == "permuted":
        return (H, C, N, W), lambda b: b.permute(2, 1, 0, 3)
    if layout == "expanded":  # batch of stride 0
        return (1, C, H, W), lambda b: b.expand(N, C, H, W)
    if layout == "all_zero_strides":  # one value broadcast everywhere
        return (1, 1, 1, 1), lambda b: b.expand(N, C, H, W)
    raise ValueError(layout)


IN_LAYOUTS = ("nchw", "cl", "cl_slice", "step", "transposed", "permuted", "expanded")
GO_LAYOUTS = ("nchw", "cl", "step", "transposed", "expanded", "all_zero_strides")


def _weight_view_fn(layout, shape):
    OC, _, KH, KW = shape
    if layout == "contig":
        return (OC, 1, KH, KW), lambda b: b
    if layout == "cl":
        return (OC, KH, KW, 1), lambda b: b.permute(0, 3, 1, 2)
    if layout == "transposed":
        return (OC, 1, KW, KH), lambda b: b.transpose(2, 3)
    if layout == "step":
        return (2 * OC, 1, KH, KW), lambda b: b[::2]
    raise ValueError(layout)


def make_leaf(base_shape, dtype, requires_grad):
    """Random normal, never all zeros; float64 twin with the same values."""
    b = torch.randn(base_shape, dtype=F64).to(dtype)
    b64 = b.detach().double()
    return b.requires_grad_(requires_grad), b64.requires_grad_(requires_grad)


# ---------------------------------------------------------------------------------------------
# Problem strategy

kernel_sizes = st.one_of(st.integers(1, 7), st.integers(1, 7), st.integers(1, 7), st.integers(8, 31))


@st.composite
def problems(draw, asymmetric: bool, multiplier: bool = True, max_hw_extra: int = 20):
    """A valid depthwise problem. padding is (top, bottom, left, right) plus the Python API form
    that gives it (None when only the raw op can express it)."""
    kh = draw(kernel_sizes)
    kw = draw(st.one_of(st.just(kh), kernel_sizes))
    big = max(kh, kw) > 7
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = tuple(1 if k > 7 else draw(st.sampled_from([1, 1, 2, 3])) for k in (kh, kw))
    eff = (dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1)
    modes = ["int", "pair", "valid"] + (["same"] if stride == (1, 1) else []) + (["asym"] * 2 if asymmetric else [])
    mode = draw(st.sampled_from(modes))
    if mode == "int":
        p = draw(st.integers(0, max(eff) // 2 + 2))
        api, pad4 = p, (p, p, p, p)
    elif mode == "pair":
        ph, pw = draw(st.integers(0, eff[0] // 2 + 2)), draw(st.integers(0, eff[1] // 2 + 2))
        api, pad4 = (ph, pw), (ph, ph, pw, pw)
    elif mode == "valid":
        api, pad4 = "valid", (0, 0, 0, 0)
    elif mode == "same":
        th, tw = eff[0] - 1, eff[1] - 1
        api, pad4 = "same", (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        pad4 = tuple(draw(st.integers(0, e // 2 + 2)) for e in (eff[0], eff[0], eff[1], eff[1]))
        api = None
    # Spatial sizes from the smallest valid one (often below the kernel size, when padded).
    hmin = max(1, eff[0] - pad4[0] - pad4[1])
    wmin = max(1, eff[1] - pad4[2] - pad4[3])
    extra = 6 if big else max_hw_extra
    H = draw(st.one_of(st.integers(hmin, hmin + 3), st.integers(hmin, hmin + extra)))
    W = draw(st.one_of(st.integers(wmin, wmin + 3), st.integers(wmin, wmin + extra)))
    N = draw(st.integers(1, 3))
    C = draw(st.one_of(st.integers(1, 6), st.sampled_from([7, 8, 9, 15, 16, 17, 24, 33])))
    if big:
        C = min(C, 4)
    M = draw(st.sampled_from([1, 1, 1, 2, 3])) if multiplier else 1
    OH = (H + pad4[0] + pad4[1] - eff[0]) // stride[0] + 1
    OW = (W + pad4[2] + pad4[3] - eff[1]) // stride[1] + 1
    return dict(N=N, C=C, M=M, H=H, W=W, k=(kh, kw), stride=list(stride), dil=list(dil), pad4=list(pad4),
                api_padding=api, OH=OH, OW=OW)


def _conv64(x, w, b, stride, pad4, dil):
    t, bo, l, r = pad4
    # dense bias: see the PyTorch crash noted in test_fuzz_depthwise
    return F.conv2d(F.pad(x, (l, r, t, bo)), w, None if b is None else b.contiguous(), stride, 0, dil, groups=x.shape[1])


def _bias_terms(pb):
    return pb["N"] * pb["OH"] * pb["OW"]


# ---------------------------------------------------------------------------------------------
# depthwise_conv2d through the Python API and autograd


@fuzz_settings(ci=160, long=1000)
@given(
    pb=problems(asymmetric=False),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(IN_LAYOUTS),
    wlayout=st.sampled_from(["contig", "contig", "cl", "transposed", "step"]),
    bias=st.sampled_from([None, "contig", "step"]),
    grads=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    go_layout=st.sampled_from(["like", "nchw", "cl", "step"]),
    unbatched=st.booleans(),
    isa=st.sampled_from(ISAS),
    threads=st.sampled_from([1, 2]),
)
def test_fuzz_depthwise(pb, dtype, layout, wlayout, bias, grads, go_layout, unbatched, isa, threads):
    N, C, M, H, W = pb["N"], pb["C"], pb["M"], pb["H"], pb["W"]
    OC, (KH, KW) = C * M, pb["k"]
    rx, rw, rb = grads
    rb = rb and bias is not None
    unbatched = unbatched and N == 1 and layout not in ("expanded",)
    xs, xf = _view_fn(layout, (N, C, H, W))
    xb, xb64 = make_leaf(xs, dtype, rx)
    ws, wf = _weight_view_fn(wlayout, (OC, 1, KH, KW))
    wb, wb64 = make_leaf(ws, dtype, rw)
    x, x64, w, w64 = xf(xb), xf(xb64), wf(wb), wf(wb64)
    b = b64 = bb = bb64 = None
    if bias is not None:
        bb, bb64 = make_leaf((OC,) if bias == "contig" else (2 * OC,), dtype, rb)
        b, b64 = (bb, bb64) if bias == "contig" else (bb[::2], bb64[::2])
    if unbatched:
        x = x[0]
    stride, pad4, dil = pb["stride"], pb["pad4"], pb["dil"]

    with cpu_isa(isa, threads):
        y = dsconv_ext.depthwise_conv2d(x, w, b, stride, pb["api_padding"], dil)
    # Shape, dtype and memory format as F.conv2d's (in the same dtype), on dense copies in each
    # operand's suggested memory format (what PyTorch's layout choice looks at): torch 2.14.1's
    # CPU conv2d itself segfaults on some strided operands (e.g. x (2, 2, 11, 1), w (4, 1, 5, 1)
    # strides (5, 1, 1, 1), b = b8[::2], stride (2, 3), dilation 2; reproduced without dsconv
    # imported). The values are checked against the float64 reference below.
    def dense(t):
        return None if t is None else t.detach().contiguous(memory_format=suggest_memory_format(t))

    with torch.no_grad():
        y_pt = F.conv2d(dense(x), dense(w), dense(b), stride, pb["api_padding"], dil, groups=C)
    assert y.shape == y_pt.shape and y.dtype == dtype
    if not unbatched and not slow_path_layout_is_ambiguous(x):
        assert_same_layout(y, y_pt, "forward")
    if unbatched:
        y = y.unsqueeze(0)

    ref = _conv64(x64, w64, b64, stride, pad4, dil)
    with torch.no_grad():
        absref = _conv64(x64.abs(), w64.abs(), None if b64 is None else b64.abs(), stride, pad4, dil)
    assert_within(y, ref.detach(), absref, KH * KW + 1, dtype, "forward")

    leaves = [(t, t64, name) for t, t64, name, r in ((xb, xb64, "x", rx), (wb, wb64, "w", rw), (bb, bb64, "b", rb)) if r and t is not None]
    if leaves:
        gos, gof = _view_fn("nchw" if go_layout == "like" else go_layout, tuple(y.shape))
        g0, g64 = make_leaf(gos, dtype, False)
        go, go64 = gof(g0), gof(g64)
        if go_layout == "like":
            go = torch.empty_like(y).copy_(go)
        with cpu_isa(isa, threads):
            got = torch.autograd.grad(y.squeeze(0) if unbatched else y, [t for t, _, _ in leaves],
                                      go.squeeze(0) if unbatched else go)
        want = torch.autograd.grad(ref, [t64 for _, t64, _ in leaves], go64)
        # Sums of |terms| of each gradient: the same vjp on absolute values.
        xa = xf(xb64.detach().abs().requires_grad_())
        wa = wf(wb64.detach().abs().requires_grad_())
        refa = _conv64(xa, wa, None, stride, pad4, dil)
        ga_x, ga_w = torch.autograd.grad(refa, [xa, wa], go64.abs())
        for (t, t64, name), g, r in zip(leaves, got, want):
            if name == "x":
                # per input element: M * taps terms, times N when the batch is expanded (stride 0)
                xa2 = xb64.detach().abs().requires_grad_()
                absg = torch.autograd.grad(xf(xa2), xa2, ga_x)[0]
                # expanded batch: autograd sums the N per-sample gradients, each rounded to dtype
                exp = layout == "expanded"
                n = M * KH * KW * (N if exp else 1)
                assert_within(g, r, absg, n, dtype, "grad_input", extra_rel=ROUND[dtype] * N if exp else 0.0)
            elif name == "w":
                wa2 = wb64.detach().abs().requires_grad_()
                absg = torch.autograd.grad(wf(wa2), wa2, ga_w)[0]
                assert_within(g, r, absg, _bias_terms(pb), dtype, "grad_weight")
            else:
                absb = go64.abs().sum((0, 2, 3))
                if bias == "step":
                    absb = torch.zeros(2 * OC, dtype=F64).index_copy(0, torch.arange(0, 2 * OC, 2), absb)
                assert_within(g, r, absb, _bias_terms(pb), dtype, "grad_bias")
    COUNTS["depthwise_autograd"] += 1


# ---------------------------------------------------------------------------------------------
# The raw ops: four-sided padding, random output_mask, any grad_output layout


@fuzz_settings(ci=150, long=1000)
@given(
    pb=problems(asymmetric=True),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(IN_LAYOUTS),
    go_layout=st.sampled_from(GO_LAYOUTS),
    mask=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    with_bias=st.booleans(),
    isa=st.sampled_from(ISAS),
    threads=st.sampled_from([1, 2]),
)
def test_fuzz_raw_ops(pb, dtype, layout, go_layout, mask, with_bias, isa, threads):
    N, C, M, H, W = pb["N"], pb["C"], pb["M"], pb["H"], pb["W"]
    OC, (KH, KW) = C * M, pb["k"]
    stride, pad4, dil = pb["stride"], pb["pad4"], pb["dil"]
    xs, xf = _view_fn(layout, (N, C, H, W))
    xb, xb64 = make_leaf(xs, dtype, False)
    x, x64 = xf(xb), xf(xb64)
    w, w64 = make_leaf((OC, 1, KH, KW), dtype, False)
    b, b64 = make_leaf((OC,), dtype, False) if with_bias else (None, None)
    gos, gof = _view_fn(go_layout, (N, OC, pb["OH"], pb["OW"]))
    g0, g64 = make_leaf(gos, dtype, False)
    go, go64 = gof(g0), gof(g64)

    with cpu_isa(isa, threads):
        y = torch.ops.dsconv.depthwise_conv2d(x, w, b, stride, pad4, dil)
        gi, gw, gb = torch.ops.dsconv.depthwise_conv2d_backward(go, x, w, stride, pad4, dil, list(mask))

    ref = _conv64(x64, w64, b64, stride, pad4, dil)
    absref = _conv64(x64.abs(), w64.abs(), None if b64 is None else b64.abs(), stride, pad4, dil)
    assert_within(y, ref, absref, KH * KW + 1, dtype, "forward (raw op)")

    xr, wr = x64.detach().clone().requires_grad_(), w64.detach().clone().requires_grad_()
    r_gi, r_gw = torch.autograd.grad(_conv64(xr, wr, None, stride, pad4, dil), [xr, wr], go64)
    xa, wa = x64.abs().requires_grad_(), w64.abs().requires_grad_()
    a_gi, a_gw = torch.autograd.grad(_conv64(xa, wa, None, stride, pad4, dil), [xa, wa], go64.abs())
    for on, got, want, absw, n, name in (
        (mask[0], gi, r_gi, a_gi, M * KH * KW, "grad_input (raw op)"),
        (mask[1], gw, r_gw, a_gw, _bias_terms(pb), "grad_weight (raw op)"),
        (mask[2], gb, go64.sum((0, 2, 3)), go64.abs().sum((0, 2, 3)), _bias_terms(pb), "grad_bias (raw op)"),
    ):
        if on:
            assert_within(got, want, absw, n, dtype, name)
        else:
            assert got.shape == (0,) and got.dtype == dtype, f"{name}: masked off, got shape {tuple(got.shape)}"
    COUNTS["depthwise_raw_ops"] += 1


# ---------------------------------------------------------------------------------------------
# separable_conv2d against the unfused composition

ACTS = [None, "relu", "relu6", "silu", "hardswish", "gelu"]
KINKS = {None: (), "relu": (0.0,), "relu6": (0.0, 6.0), "silu": (), "hardswish": (-3.0, 3.0), "gelu": ()}
SLOPE = 1.5  # the largest |derivative| of any activation (hardswish at 3)
# Largest |second derivative| (away from kinks): the backward evaluates act' at the recomputed
# pre-activation, so an error e there moves act' by up to CURV * e (gelu: 2 phi(0) ~ 0.80).
CURV = {None: 0.0, "relu": 0.0, "relu6": 0.0, "silu": 0.5, "hardswish": 1.0 / 3.0, "gelu": 0.8}


def _sep_reference(x64, dw64, pw64, db64, pb64, stride, pad4, dil, act, pw_act):
    y = _conv64(x64, dw64, db64, stride, pad4, dil)
    a = act_fn(ACT_CODES[act])(y)
    z = F.conv2d(a, pw64, pb64)
    return y, a, z, act_fn(ACT_CODES[pw_act])(z)


def _sep_bounds(x64, dw64, pw64, db64, pb64, pb, dtype, act_out, rounds_intermediates):
    """Elementwise error bounds of the depthwise pre-activation y and the pointwise
    pre-activation z (see the module docstring), with the intermediates rounded to `dtype` when
    `rounds_intermediates` (the backward's recomputation runs the composition in `dtype`)."""
    eps, rnd = EPS_ACC[dtype], ROUND[dtype] if rounds_intermediates else 0.0
    with torch.no_grad():
        Ay = _conv64(x64.abs(), dw64.abs(), None if db64 is None else db64.abs(), pb["stride"], pb["pad4"], pb["dil"])
        y = _conv64(x64, dw64, db64, pb["stride"], pb["pad4"], pb["dil"])
        e_y = (pb["k"][0] * pb["k"][1] + 2) * eps * Ay + rnd * y.abs()
        e_a = SLOPE * e_y + rnd * act_out.abs()
        Az = F.conv2d(act_out.abs(), pw64.abs(), None if pb64 is None else pb64.abs())
        e_z = F.conv2d(e_a, pw64.abs()) + (pb["C"] + 2) * eps * Az
    return y, e_y, e_z


@fuzz_settings(ci=120, long=1000)
@given(
    pb=problems(asymmetric=False, multiplier=False),
    cout=st.one_of(st.integers(1, 8), st.sampled_from([15, 16, 17, 33])),
    dtype=st.sampled_from(DTYPES),
    layout=st.sampled_from(IN_LAYOUTS),
    pw_cl=st.booleans(),
    acts=st.tuples(st.sampled_from(ACTS), st.sampled_from(ACTS)),
    biases=st.tuples(st.booleans(), st.booleans()),
    backward=st.booleans(),
    grads=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    isa=st.sampled_from(ISAS),
    threads=st.sampled_from([1, 2]),
)
def test_fuzz_separable(pb, cout, dtype, layout, pw_cl, acts, biases, backward, grads, isa, threads):
    N, C, H, W = pb["N"], pb["C"], pb["H"], pb["W"]
    (KH, KW), (act, pw_act) = pb["k"], acts
    stride, pad4, dil = pb["stride"], pb["pad4"], pb["dil"]
    lowp = dtype in (torch.bfloat16, torch.float16)
    if backward and lowp:
        # The backward recomputes the composition in the 16-bit dtype (intermediates rounded):
        # near a kink a rounded intermediate takes the other branch. Smooth activations only.
        assume(not KINKS[act] and not KINKS[pw_act])
    req = grads if backward else (False,) * 5
    xs, xf = _view_fn(layout, (N, C, H, W))
    xb, xb64 = make_leaf(xs, dtype, req[0])
    x, x64 = xf(xb), xf(xb64)
    dw, dw64 = make_leaf((C, 1, KH, KW), dtype, req[1])
    pw, pw64 = make_leaf((cout, C, 1, 1), dtype, req[2])
    if pw_cl:
        pw, pw64 = pw.contiguous(memory_format=torch.channels_last), pw64.contiguous(memory_format=torch.channels_last)
    db, db64 = make_leaf((C,), dtype, req[3]) if biases[0] else (None, None)
    pbias, pbias64 = make_leaf((cout,), dtype, req[4]) if biases[1] else (None, None)

    with cpu_isa(isa, threads):
        out = dsconv_ext.separable_conv2d(x, dw, pw, db, pbias, stride, pb["api_padding"], dil, act, pw_act)
    # Shape, dtype, memory format as the unfused composition's (in the same dtype).
    with torch.no_grad():
        comp = act_fn(ACT_CODES[pw_act])(F.conv2d(act_fn(ACT_CODES[act])(
            F.conv2d(x, dw, db, stride, pb["api_padding"], dil, groups=C)), pw, pbias))
    assert out.shape == comp.shape and out.dtype == dtype
    if C > 1 and not slow_path_layout_is_ambiguous(x):  # with one channel the input is NCHW and
        # channels_last at once, and the composition's choice hinges on the strides F.conv2d
        # gives its 1-channel intermediate
        assert_same_layout(out, comp, "separable forward")

    y, a, z, ref = _sep_reference(x64, dw64, pw64, db64, pbias64, stride, pad4, dil, act, pw_act)
    # Forward: the fused kernels keep the depthwise tile in float32 (no rounding to dtype).
    _, e_y, e_z = _sep_bounds(x64.detach(), dw64.detach(), pw64.detach(), None if db64 is None else db64.detach(),
                              None if pbias64 is None else pbias64.detach(), pb, dtype, a.detach(), False)
    assert_within(out, ref.detach(), SLOPE * e_z, 0, dtype, "separable forward", extra_rel=1.0)

    leaves = [(t, t64) for t, t64, r in ((xb, xb64, req[0]), (dw, dw64, req[1]), (pw, pw64, req[2]),
                                          (db, db64, req[3]), (pbias, pbias64, req[4])) if r and t is not None]
    if not leaves:
        COUNTS["separable_forward"] += 1
        return
    # Kinks: skip problems where the recomputed pre-activations may sit on the other side of one.
    _, e_y, e_z = _sep_bounds(x64.detach(), dw64.detach(), pw64.detach(), None if db64 is None else db64.detach(),
                              None if pbias64 is None else pbias64.detach(), pb, dtype, a.detach(), True)
    for pre, e, name in ((y, e_y, act), (z, e_z, pw_act)):
        for k in KINKS[name]:
            assume(bool(((pre.detach() - k).abs() > 2 * e + 1e-12).all()))
    g0, g64 = make_leaf(tuple(out.shape), dtype, False)
    with cpu_isa(isa, threads):
        got = torch.autograd.grad(out, [t for t, _ in leaves], g0)
    want = torch.autograd.grad(ref, [t64 for _, t64 in leaves], g64)
    # Gradients: a relative bound on the scale of the gradient of the composition with all
    # activations replaced by SLOPE * identity, on absolute values (the largest any of them can
    # be), times the relative error of the recomputed intermediates.
    absl = [t64.detach().abs().requires_grad_() for _, t64 in leaves]
    it = iter(absl)
    vals = [xb64, dw64, pw64, db64, pbias64]
    abs_args = [next(it) if (r and t is not None) else (None if t is None else t.detach().abs())
                for t, r in zip(vals, req)]
    ax = xf(abs_args[0])
    ya = _conv64(ax, abs_args[1], abs_args[3], stride, pad4, dil) * SLOPE
    za = F.conv2d(ya, abs_args[2], abs_args[4]) * SLOPE
    abs_grads = torch.autograd.grad(za, absl, g64.abs())
    n = KH * KW + C + N * pb["OH"] * pb["OW"] + 4
    rel = 8 * (ROUND[dtype] if lowp else 0.0) + n * EPS_ACC[dtype] * 4
    # act' at a recomputed pre-activation (error e) is off by up to CURV * e: relative to the
    # SLOPE the abs-gradients use for act', CURV * max(e) / SLOPE more (found by the long fuzz
    # profile: bf16 gelu with |pre| near 0 and large cancelling terms, 9% off against a 8.5% bound).
    rel += (CURV[act] * float(torch.as_tensor(e_y).max()) + CURV[pw_act] * float(torch.as_tensor(e_z).max())) / SLOPE
    for (t, _), g, r, ag in zip(leaves, got, want, abs_grads):
        assert_within(g, r, ag, 0, dtype, "separable backward", extra_rel=rel)
    COUNTS["separable_backward"] += 1


# ---------------------------------------------------------------------------------------------
# Bad (and borderline) arguments: dsconv raises exactly when F.conv2d does, with a dsconv message,
# and its fake (meta) kernel agrees with the CPU op.


@fuzz_settings(ci=300, long=1000)
@given(
    dims=st.sampled_from([4, 4, 4, 3, 2, 5]),
    N=st.sampled_from([0, 1, 1, 2]),
    C=st.sampled_from([0, 1, 2, 2, 3]),
    H=st.sampled_from([0, 1, 2, 3, 5, 6]),
    W=st.sampled_from([0, 1, 2, 3, 5, 6]),
    oc_mult=st.sampled_from([1, 1, 1, 2, 0, "off"]),
    w1=st.sampled_from([1, 1, 1, 1, 2]),
    k=st.tuples(st.sampled_from([0, 1, 2, 3, 3, 4]), st.sampled_from([0, 1, 2, 3, 3, 4])),
    bias=st.sampled_from(["none", "ok", "ok", "short", "2d"]),
    stride=st.sampled_from([1, 1, 1, 2, 0, -1, (1, 2), (2, 0)]),
    padding=st.sampled_from([0, 1, 1, 2, -1, "same", "valid", "full", (1, 0), (0, -1)]),
    dilation=st.sampled_from([1, 1, 1, 2, 0, (1, 3)]),
    dtypes=st.sampled_from([("f32", "f32"), ("f32", "f32"), ("f32", "f32"), ("f64", "f64"), ("bf16", "bf16"),
                            ("f32", "f64"), ("i64", "i64"), ("f16", "f32")]),
)
def test_fuzz_bad_arguments(dims, N, C, H, W, oc_mult, w1, k, bias, stride, padding, dilation, dtypes):
    dt = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16, "f16": torch.float16, "i64": torch.int64}
    shape = {4: (N, C, H, W), 3: (C, H, W), 2: (H, W), 5: (N, C, H, W, 2)}[dims]
    x = (torch.randn(shape) * 4).to(dt[dtypes[0]])
    OC = C + 1 if oc_mult == "off" else C * oc_mult
    w = (torch.randn(OC, w1, *k) * 4).to(dt[dtypes[1]])
    b = {"none": None, "ok": torch.randn(OC), "short": torch.randn(OC + 1), "2d": torch.randn(OC, 1)}[bias]
    if b is not None:
        b = b.to(dt[dtypes[1]])
    groups = shape[-3] if dims in (3, 4) else 1
    try:
        ref = F.conv2d(x, w, b, stride, padding, dilation, groups)
        ref_err = None
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        ref, ref_err = None, e
    try:
        out = dsconv_ext.depthwise_conv2d(x, w, b, stride, padding, dilation)
        err = None
    except (RuntimeError, ValueError, TypeError) as e:
        out, err = None, e
    if ref_err is not None:
        assert err is not None, f"F.conv2d raises ({ref_err}) but dsconv returned shape {tuple(out.shape)}"
        assert str(err).startswith("dsconv: "), f"not a dsconv message: {err!r}"
        if isinstance(err, RuntimeError) and dims == 4:
            # the fake kernel raises the same message as the CPU op (through the raw op, where the
            # Python wrapper's argument normalisation accepted the arguments)
            try:
                s, p, d = conv_args(w.shape, stride, padding, dilation)
            except (ValueError, TypeError):
                COUNTS["bad_arguments_refused"] += 1
                return
            meta = [t.to("meta") if t is not None else None for t in (x, w, b)]
            with pytest.raises(RuntimeError) as meta_err:
                torch.ops.dsconv.depthwise_conv2d(*meta, s, p, d)
            assert str(meta_err.value) == str(err)
        COUNTS["bad_arguments_refused"] += 1
        return
    if err is not None and not x.dtype.is_floating_point and "supported dtypes" in str(err):
        # PyTorch's CPU conv computes int64 tensors too; dsconv's kernels are floating point and
        # refuse them with a message naming the dtype (documented in the README)
        COUNTS["bad_arguments_refused"] += 1
        return
    if err is not None and x.numel() == 0 and str(err).startswith("dsconv: "):
        # F.conv2d skips some checks on an empty input (dtypes, e.g. float32 input with a float64
        # weight; dilation 0 with an int64 input); dsconv checks its arguments whatever the sizes.
        COUNTS["bad_arguments_refused"] += 1
        return
    assert err is None, f"F.conv2d returns shape {tuple(ref.shape)} but dsconv raised {err!r}"
    assert out.shape == ref.shape and out.dtype == ref.dtype
    if ref.numel():
        tol = 5e-2 if ref.dtype in (torch.bfloat16, torch.float16) else 1e-4
        torch.testing.assert_close(out.double(), ref.double(), rtol=tol, atol=tol * (1 + ref.double().abs().max().item()))
    COUNTS["bad_arguments_accepted"] += 1
