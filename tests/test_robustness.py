"""Robustness of the CPU ops (issue 8): NaN / Inf propagation, empty tensors, concurrent calls from
Python threads, and memory that stays flat over repeated forward + backward.

NaN / Inf: in the input or the bias they propagate exactly as in F.conv2d (same NaN and +-Inf
positions, every ISA, NCHW and channels_last, forward and backward), and so does a non-finite
grad_output into grad_input and grad_bias. A non-finite weight tap (forward, grad_input) or
grad_output element (grad_weight) that meets the zero padding is ambiguous: 0 * Inf is NaN if the
padding is multiplied, nothing if it is skipped, and PyTorch itself does both (its float64 CPU
convolution multiplies, its float32 / bfloat16 one skips). dsconv's portable kernels skip; its
SIMD kernels read the padding from zero buffers, so they multiply (NCHW) or multiply the padding
columns but skip the padding rows (channels_last). There the tests accept, element by element,
either convention, and nothing else.

A non-finite weight in grad_input: the SIMD engines would multiply it by the *virtual* zeros of
grad_output (its padding and, in NCHW, the zeros inserted for a stride), so such a weight is
sent to the portable kernels (csrc/cpu/dw_simd_dispatch.cpp) and grad_input matches F.conv2d's
NaN/Inf positions exactly on every ISA, and so does the fused op with an activation (silu(-inf)
is NaN as in F.silu, also in the SIMD kernels). Not tested: every dsconv path's gelu(+inf) is
+inf; PyTorch 2.14's float32/bfloat16 CPU F.gelu gives NaN there only in its vectorised loop (the
scalar tail, float64 and float16 give +inf), so there is no single PyTorch answer to match.
"""
import gc
import itertools
import os
import threading

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext
from _utils import supported_isas
from dsconv_ext._fused_act import ACT_CODES, act_fn


ISAS = supported_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    prev = dsconv_ext.set_cpu_isa(request.param)
    prev_env = os.environ.get("DSCONV_FUSED_ISA")
    os.environ["DSCONV_FUSED_ISA"] = request.param
    yield request.param
    dsconv_ext.set_cpu_isa(prev)
    if prev_env is None:
        del os.environ["DSCONV_FUSED_ISA"]
    else:
        os.environ["DSCONV_FUSED_ISA"] = prev_env


bwd_op = torch.ops.dsconv.depthwise_conv2d_backward

# ---------------------------------------------------------------------------------------------
# NaN / Inf

NAN, INF = float("nan"), float("inf")


def _pattern(t):
    """0 finite, 1 NaN, 2 +Inf, 3 -Inf."""
    t = t.double()
    p = torch.zeros(t.shape, dtype=torch.int8)
    p[torch.isnan(t)] = 1
    p[t == INF] = 2
    p[t == -INF] = 3
    return p


def _unfold_conv(x, w, b, stride, pad, dil, skip_padding):
    """Depthwise conv in float64 by explicit products: with skip_padding, taps on the zero
    padding contribute nothing; without, they contribute 0 * w (NaN for a non-finite w)."""
    N, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    M = OC // C
    cols = F.unfold(x, (KH, KW), dil, pad, stride)  # (N, C*KH*KW, L)
    valid = F.unfold(torch.ones(1, C, H, W, dtype=x.dtype), (KH, KW), dil, pad, stride) > 0
    L = cols.shape[-1]
    cols = cols.view(N, C, 1, KH * KW, L).expand(N, C, M, KH * KW, L).reshape(N, OC, KH * KW, L)
    valid = valid.view(1, C, 1, KH * KW, L).expand(1, C, M, KH * KW, L).reshape(1, OC, KH * KW, L)
    prod = w.reshape(1, OC, KH * KW, 1) * cols
    if skip_padding:
        prod = torch.where(valid, prod, torch.zeros((), dtype=prod.dtype))
    out = prod.sum(2)
    if b is not None:
        out = out + b.view(1, OC, 1)
    OH = (H + 2 * pad[0] - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + 2 * pad[1] - dil[1] * (KW - 1) - 1) // stride[1] + 1
    return out.view(N, OC, OH, OW)


def _assert_pattern_in(got, refs, what):
    """Element by element, got's NaN/Inf pattern equals one of the references' patterns, and the
    finite values are close to the matching reference."""
    pg = _pattern(got)
    ok = torch.zeros(pg.shape, dtype=torch.bool)
    for r in refs:
        ok |= pg == _pattern(r)
    bad = ~ok
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} elements with a NaN/Inf pattern unlike PyTorch's, first at "
        f"{[int(v) for v in bad.nonzero()[0]]}: got {got.double()[tuple(bad.nonzero()[0])].item()}, "
        f"PyTorch {[r[tuple(bad.nonzero()[0])].item() for r in refs]}"
    )
    fin = pg == 0
    ref = refs[0].double()
    tol = 3e-2 if got.dtype in (torch.bfloat16, torch.float16) else 1e-4
    torch.testing.assert_close(got.double()[fin], ref[fin], rtol=tol, atol=tol * (1 + ref[fin].abs().max().item() if fin.any() else 1),
                               msg=lambda m: f"{what}, finite values: {m}")


# (N, C, H, W, (kh, kw), stride, padding, dilation, M): borders, stride skipping, a multiplier,
# channel counts that are not a multiple of the vector width.
NAN_PROBLEMS = [
    (2, 17, 9, 37, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (2, 5, 11, 20, (5, 5), (2, 2), (2, 2), (1, 1), 1),
    (1, 3, 12, 13, (7, 3), (1, 2), (3, 2), (2, 1), 2),
]
# Positions of the specials (fractions of H, W): corners, edges, interior.
SPOTS = [(0, 0), (0, 1), (1, 1), (0.5, 0.5), (1, 0), (0.3, 0.9)]


def _spots(H, W):
    return sorted({(min(H - 1, int(a * (H - 1))), min(W - 1, int(b * (W - 1)))) for a, b in SPOTS})


def _make(problem, dtype, layout, seed=0):
    N, C, H, W, k, stride, pad, dil, M = problem
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64).to(dtype)
    w = torch.randn(C * M, 1, *k, generator=g, dtype=torch.float64).to(dtype)
    b = torch.randn(C * M, generator=g, dtype=torch.float64).to(dtype)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    return x, w, b


LOWP = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("problem", NAN_PROBLEMS, ids=["k3", "k5s2", "k7x3m2"])
@pytest.mark.parametrize("where", ["input", "bias", "weight"])
def test_nan_inf_forward(isa, where, problem, layout):
    N, C, H, W, k, stride, pad, dil, M = problem
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        x, w, b = _make(problem, dtype, layout)
        if where == "input":
            vals = itertools.cycle([NAN, INF, -INF])
            for n in range(N):
                for c in range(0, C, 2):
                    for h, ww in _spots(H, W)[(n + c) % 2 :: 2]:
                        x[n, c, h, ww] = next(vals)
        elif where == "bias":
            b[0], b[-1] = NAN, INF
            if b.numel() > 2:
                b[1] = -INF
        else:
            w[0, 0, 0, 0] = INF  # a corner tap: on the padding at the borders
            w[-1, 0, k[0] // 2, k[1] // 2] = NAN  # the centre tap
            if w.shape[0] > 2:
                w[1, 0, -1, -1] = -INF
        y = dsconv_ext.depthwise_conv2d(x, w, b, stride, pad, dil)
        ref = F.conv2d(x, w, b, stride, pad, dil, groups=C)
        x64, w64, b64 = x.double(), w.double(), b.double()
        skip = _unfold_conv(x64, w64, b64, stride, pad, dil, skip_padding=True)
        mult = _unfold_conv(x64, w64, b64, stride, pad, dil, skip_padding=False)
        what = f"forward, non-finite {where}, {dtype}, {layout}, {isa}"
        if where == "weight":
            _assert_pattern_in(y, [skip, mult], what)
            if isa == "generic":  # the portable kernels skip the padding, as F.conv2d in float32
                _assert_pattern_in(y, [skip], what)
        else:
            # the two conventions agree; and F.conv2d in this dtype agrees with them
            assert torch.equal(_pattern(skip), _pattern(mult))
            _assert_pattern_in(ref, [skip], "F.conv2d itself")
            _assert_pattern_in(y, [skip], what)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("problem", NAN_PROBLEMS, ids=["k3", "k5s2", "k7x3m2"])
@pytest.mark.parametrize("where", ["grad_output", "input", "weight"])
def test_nan_inf_backward(isa, where, problem, layout):
    N, C, H, W, k, stride, pad, dil, M = problem
    pad4 = [pad[0], pad[0], pad[1], pad[1]]
    for dtype in (torch.float32, torch.bfloat16):
        x, w, _ = _make(problem, dtype, layout)
        y = dsconv_ext.depthwise_conv2d(x, w, None, stride, pad, dil)
        go = torch.randn(y.shape, dtype=torch.float64).to(dtype)
        if layout == "cl":
            go = go.contiguous(memory_format=torch.channels_last)
        OH, OW = y.shape[2:]
        if where == "grad_output":
            vals = itertools.cycle([NAN, INF, -INF])
            for n in range(N):
                for oc in range(0, C * M, 2):
                    for h, ww in _spots(OH, OW)[oc % 2 :: 2]:
                        go[n, oc, h, ww] = next(vals)
        elif where == "input":
            x[0, 0, 0, 0], x[-1, -1, H // 2, W // 2], x[0, -1, H - 1, W - 1] = NAN, INF, -INF
        else:
            w[0, 0, 0, 0], w[-1, 0, -1, -1] = INF, NAN
        gi, gw, gb = bwd_op(go, x, w, stride, pad4, dil, [True, True, True])
        refs = []
        for skip in (True, False):
            x64 = x.double().requires_grad_()
            w64 = w.double().requires_grad_()
            out = _unfold_conv(x64, w64, None, stride, pad, dil, skip_padding=skip)
            refs.append(torch.autograd.grad(out, [x64, w64], go.double()))
        what = f"non-finite {where}, {dtype}, {layout}, {isa}"
        if where == "weight":
            # grad_input sees only real taps (a non-finite weight avoids the SIMD engines'
            # zero-padded correlation): PyTorch's NaN/Inf positions exactly, every ISA
            assert torch.equal(_pattern(gi), _pattern(refs[0][0])), "grad_input, " + what
        _assert_pattern_in(gi, [r[0] for r in refs], "grad_input, " + what)
        _assert_pattern_in(gw, [r[1] for r in refs], "grad_weight, " + what)
        _assert_pattern_in(gb, [go.double().sum((0, 2, 3))], "grad_bias, " + what)
        if where != "weight":  # no padding ambiguity: PyTorch's own backward agrees exactly
            # (in float64: PyTorch's bfloat16 CPU backward spreads a NaN of grad_output into the
            # grad_input of *other* channels, e.g. k5s2 here, which dsconv does not do)
            xr, wr = x.double().requires_grad_(), w.double().requires_grad_()
            pt = torch.autograd.grad(F.conv2d(xr, wr, None, stride, pad, dil, groups=C), [xr, wr], go.double())
            assert torch.equal(_pattern(gi), _pattern(pt[0])), "grad_input vs F.conv2d, " + what
            if where == "input":  # (a non-finite grad_output meets the padding in grad_weight)
                assert torch.equal(_pattern(gw), _pattern(pt[1])), "grad_weight vs F.conv2d, " + what


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("act", [None, "relu", "silu"])
def test_nan_inf_separable(isa, layout, act):
    C, Cout = 9, 20
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, C, 10, 21, generator=g).to(dtype)
        x[0, 0, 0, 0], x[1, 3, 5, 10], x[0, 8, 9, 20] = NAN, INF, -INF
        if layout == "cl":
            x = x.contiguous(memory_format=torch.channels_last)
        dw = torch.randn(C, 1, 3, 3, generator=g).to(dtype)
        pw = torch.randn(Cout, C, 1, 1, generator=g).to(dtype)
        db, pb = torch.randn(C, generator=g).to(dtype), torch.randn(Cout, generator=g).to(dtype)
        out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, act, None)
        a = act_fn(ACT_CODES[act])
        ref = F.conv2d(a(F.conv2d(x.double(), dw.double(), db.double(), 1, 1, 1, C)), pw.double(), pb.double())
        what = f"separable forward, {act}, {dtype}, {layout}, {isa}"
        # (silu: -inf -> NaN as F.silu's -inf * sigmoid(-inf) = -inf * 0, SIMD kernels included)
        _assert_pattern_in(out, [ref], what)
        # backward: NaN in the input reaches the gradients as in the composition
        xr, dwr = x.detach().requires_grad_(), dw.detach().requires_grad_()
        got = torch.autograd.grad(dsconv_ext.separable_conv2d(xr, dwr, pw, db, pb, 1, 1, 1, act, None).sum(), [xr, dwr])
        x64, dw64 = x.double().requires_grad_(), dw.double().requires_grad_()
        want = torch.autograd.grad(F.conv2d(a(F.conv2d(x64, dw64, db.double(), 1, 1, 1, C)), pw.double(), pb.double()).sum(), [x64, dw64])
        for gg, ww, name in zip(got, want, ("grad_input", "grad_dw_weight")):
            assert torch.equal(_pattern(gg), _pattern(ww)), f"separable {name}, {act}, {dtype}, {layout}, {isa}"


# ---------------------------------------------------------------------------------------------
# Empty tensors: as F.conv2d (same shape and memory format, or an error where it errors)


def _outcome(fn):
    try:
        return fn(), None
    except (RuntimeError, ValueError) as e:
        return None, e


EMPTY_CASES = {
    # name: (input shape, weight shape, padding)
    "n0": ((0, 3, 6, 5), (3, 1, 3, 3), 1),
    "n0_m2": ((0, 3, 6, 5), (6, 1, 3, 3), 0),
    "n0_h0_padded": ((0, 3, 0, 5), (3, 1, 1, 1), 1),
    "n0_h0_kernel_too_big": ((0, 3, 0, 5), (3, 1, 3, 3), 0),
    "c0": ((2, 0, 6, 5), (0, 1, 3, 3), 1),
    "c0_n0": ((0, 0, 6, 5), (0, 1, 3, 3), 1),
    "h0": ((2, 3, 0, 5), (3, 1, 3, 3), 0),
    "h0_padded_1x1": ((2, 3, 0, 5), (3, 1, 1, 1), 1),
    "w0_padded_3x3": ((2, 3, 5, 0), (3, 1, 3, 3), 2),
    "hw0_padded_1x1": ((1, 3, 0, 0), (3, 1, 1, 1), 1),
    "h0_unpadded_1x1": ((2, 3, 0, 5), (3, 1, 1, 1), 0),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_empty_tensors_like_conv2d(isa, name, layout, dtype):
    shape, wshape, padding = EMPTY_CASES[name]
    x = torch.randn(shape, dtype=dtype)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(wshape, dtype=dtype)
    b = torch.randn(wshape[0], dtype=dtype)
    ref, ref_err = _outcome(lambda: F.conv2d(x, w, b, 1, padding, 1, groups=shape[1]))
    out, err = _outcome(lambda: dsconv_ext.depthwise_conv2d(x, w, b, 1, padding, 1))
    if ref_err is not None:
        assert err is not None, f"F.conv2d raises ({ref_err}) but dsconv returned shape {tuple(out.shape)}"
        assert isinstance(err, RuntimeError) and str(err).startswith("dsconv: "), repr(err)
        # the fake (meta) kernel refuses it with the same message
        with pytest.raises(RuntimeError) as meta_err:
            torch.ops.dsconv.depthwise_conv2d(x.to("meta"), w.to("meta"), b.to("meta"), [1, 1], [padding] * 4, [1, 1])
        assert str(meta_err.value) == str(err)
        return
    assert err is None, f"F.conv2d returns shape {tuple(ref.shape)} but dsconv raised {err}"
    assert out.shape == ref.shape and out.dtype == ref.dtype
    # Memory format only for non-empty outputs: PyTorch's own empty outputs follow no single rule
    # (a (0, 3, 6, 5) channels_last input gives a channels_last output with padding 1 and a
    # contiguous one with padding 0).
    if out.numel():
        for fmt in (torch.contiguous_format, torch.channels_last):
            assert out.is_contiguous(memory_format=fmt) == ref.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out, ref)
    # backward: autograd and the raw op with every mask, as F.conv2d's
    xr, wr, br = x.detach().requires_grad_(), w.detach().requires_grad_(), b.detach().requires_grad_()
    y = dsconv_ext.depthwise_conv2d(xr, wr, br, 1, padding, 1)
    go = torch.randn(y.shape, dtype=dtype)
    got = torch.autograd.grad(y, [xr, wr, br], go)
    xq, wq, bq = x.detach().requires_grad_(), w.detach().requires_grad_(), b.detach().requires_grad_()
    want = torch.autograd.grad(F.conv2d(xq, wq, bq, 1, padding, 1, groups=shape[1]), [xq, wq, bq], go)
    for a, r in zip(got, want):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r)
    for mask in itertools.product([False, True], repeat=3):
        res = bwd_op(go, x, w, [1, 1], [padding] * 4, [1, 1], list(mask))
        for on, t, r in zip(mask, res, want):
            assert t.shape == (r.shape if on else (0,))


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("name", ["n0", "h0_padded_1x1", "c0", "h0"])
def test_empty_tensors_separable(isa, name, layout):
    shape, wshape, padding = EMPTY_CASES[name]
    if wshape[0] != shape[1]:
        pytest.skip("separable needs multiplier 1")
    x = torch.randn(shape)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    dw, pw = torch.randn(wshape), torch.randn(4, shape[1], 1, 1)
    ref, ref_err = _outcome(lambda: F.conv2d(F.relu(F.conv2d(x, dw, None, 1, padding, 1, groups=shape[1])), pw))
    out, err = _outcome(lambda: dsconv_ext.separable_conv2d(x, dw, pw, None, None, 1, padding, 1, "relu", None))
    if ref_err is not None:
        assert err is not None, f"the composition raises ({ref_err}) but dsconv returned shape {tuple(out.shape)}"
        assert str(err).startswith("dsconv: "), repr(err)
        return
    assert err is None, err
    assert out.shape == ref.shape
    xr = x.detach().requires_grad_()
    out = dsconv_ext.separable_conv2d(xr, dw, pw, None, None, 1, padding, 1, "relu", None)
    (gx,) = torch.autograd.grad(out, [xr], torch.randn(out.shape))
    assert gx.shape == x.shape and (gx == 0).all()


# ---------------------------------------------------------------------------------------------
# Concurrent calls from Python threads


def _thread_jobs():
    """(name, fn) pairs: each computes forward + backward (or the fused op) of its own problem.
    The kernels are deterministic, so results must be bitwise equal to a serial run."""
    jobs = []
    g = torch.Generator().manual_seed(5)
    for i in range(16):
        dtype = (torch.float32, torch.bfloat16, torch.float64)[i % 3]
        C, H, W = 3 + i, 8 + (i * 5) % 23, 9 + (i * 7) % 29
        k = (3, 5, 7, (3, 5))[i % 4]
        k = (k, k) if isinstance(k, int) else k
        M = 1 + i % 2
        stride = 1 + i % 3 // 2
        x = torch.randn(2, C, H, W, generator=g).to(dtype)
        if i % 2:
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(C * M, 1, *k, generator=g).to(dtype)
        b = torch.randn(C * M, generator=g).to(dtype)
        go = torch.randn(2, C * M, (H + 2 * (k[0] // 2) - k[0]) // stride + 1, (W + 2 * (k[1] // 2) - k[1]) // stride + 1,
                         generator=g).to(dtype)
        pw = torch.randn(5 + i, C, 1, 1, generator=g).to(dtype)

        def dw_job(x=x, w=w, b=b, go=go, stride=stride, k=k):
            xr, wr, br = x.detach().requires_grad_(), w.detach().requires_grad_(), b.detach().requires_grad_()
            y = dsconv_ext.depthwise_conv2d(xr, wr, br, stride, (k[0] // 2, k[1] // 2))
            return (y.detach(),) + torch.autograd.grad(y, [xr, wr, br], go)

        def dw_ref(x=x, w=w, b=b, stride=stride, k=k, C=C):
            return F.conv2d(x.double(), w.double(), b.double(), stride, (k[0] // 2, k[1] // 2), 1, C)

        def sep_job(x=x, w=w[:C], b=b[:C], pw=pw, stride=stride, k=k):
            xr = x.detach().requires_grad_()
            y = dsconv_ext.separable_conv2d(xr, w, pw, b, None, stride, (k[0] // 2, k[1] // 2), 1, "relu6", "silu")
            return (y.detach(),) + torch.autograd.grad(y.sum(), [xr])

        def sep_ref(x=x, w=w[:C], b=b[:C], pw=pw, stride=stride, k=k, C=C):
            y = F.conv2d(x.double(), w.double(), b.double(), stride, (k[0] // 2, k[1] // 2), 1, C)
            return F.silu(F.conv2d(F.relu6(y), pw.double()))

        jobs.append((f"depthwise{i}", dw_job, dw_ref))
        jobs.append((f"separable{i}", sep_job, sep_ref))
    return jobs


@pytest.mark.parametrize("intra_op_threads", [1, 2])
def test_concurrent_python_threads(intra_op_threads):
    """8 Python threads x 6 rounds over 32 problems (depthwise forward + all gradients, and the
    fused separable op forward + grad input; float32 / bfloat16 / float64, NCHW / channels_last,
    distinct shapes), each thread in its own order: every result bitwise equal to the serial one
    (the kernels are deterministic), which is itself checked against PyTorch."""
    torch.set_num_threads(intra_op_threads)
    jobs = _thread_jobs()
    expected = {}
    for name, fn, ref_fn in jobs:
        expected[name] = fn()
        y, ref = expected[name][0], ref_fn()
        tol = 3e-2 if y.dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol * (1 + ref.abs().max().item()), msg=name)
    errors = []
    n_threads, rounds = 8, 6

    def worker(t):
        try:
            for r in range(rounds):
                shift = (3 * t + 5 * r) % len(jobs)
                order = jobs[shift:] + jobs[:shift]
                if (t + r) % 2:
                    order.reverse()
                for name, fn, _ in order:
                    got = fn()
                    for a, e in zip(got, expected[name]):
                        if not torch.equal(a, e):
                            errors.append(f"thread {t}, round {r}: {name} differs from the serial result")
                            return
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:5]


# ---------------------------------------------------------------------------------------------
# Memory stays flat over repeated forward + backward


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under AddressSanitizer (.ci/sanitize) freed memory sits in ASan's quarantine, so RSS "
                           "grows by design; the plain test run checks memory")
def test_memory_flat_over_repeated_forward_backward():
    g = torch.Generator().manual_seed(3)
    cases = []
    for dtype, layout in ((torch.float32, "nchw"), (torch.bfloat16, "cl")):
        x = torch.randn(2, 24, 24, 24, generator=g).to(dtype)  # 55-220 KiB per tensor
        if layout == "cl":
            x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(48, 1, 5, 3, generator=g).to(dtype)
        b = torch.randn(48, generator=g).to(dtype)
        pw = torch.randn(16, 24, 1, 1, generator=g).to(dtype)
        cases.append((x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), pw.requires_grad_()))

    def step():
        for x, w, b, pw in cases:
            y = dsconv_ext.depthwise_conv2d(x, w, b, (1, 2), (2, 1))
            y.sum().backward()
            z = dsconv_ext.separable_conv2d(x, w[:24], pw, b[:24], None, 1, 1, 1, "gelu", "relu")
            z.sum().backward()
            torch.ops.dsconv.depthwise_conv2d_backward(y.detach(), x.detach(), w.detach(), [1, 2], [2, 2, 1, 1], [1, 1],
                                                       [True, True, True])
            x.grad = w.grad = b.grad = pw.grad = None

    for _ in range(15):  # warm-up: allocator caches, thread pools, per-thread scratch
        step()
    gc.collect()
    before = _rss_bytes()
    iterations = 150
    for _ in range(iterations):
        step()
    gc.collect()
    growth = _rss_bytes() - before
    # Leaking one output per call would be >= 27 KiB x 6 calls x 150 iterations (> 23 MiB), and
    # leaking every saved tensor far more; allow 8 MiB of allocator noise.
    assert growth < 8 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over {iterations} iterations"
