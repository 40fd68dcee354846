"""Backward tests: gradients of depthwise_conv2d against F.conv2d's, gradcheck / gradgradcheck,
the backward op's output_mask, and which gradients autograd asks the backward op for."""
import itertools

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

import dsconv_ext
from _utils import (
    F64_TOL,
    Config,
    grad_output_like,
    lowp_tol,
    make_args,
    make_input,
    reference,
    sample_configs,
)

bwd_op = torch.ops.dsconv.depthwise_conv2d_backward


def _leaf(t):
    """t as a leaf requiring grad, keeping its strides (views stay views of their storage)."""
    return t.detach().requires_grad_()


# ---------------------------------------------------------------------------------------------
# Gradients vs F.conv2d over a sampled grid (float64)

GRID = sample_configs(seed=4242, n=70, max_hw=24)


@pytest.mark.parametrize("cfg", GRID, ids=[c.id() for c in GRID])
def test_grads_grid_float64(cfg):
    x, w, b = make_args(cfg)
    x, w = _leaf(x), _leaf(w)
    b = _leaf(b) if b is not None else None
    y_ref = reference(x, w, b, cfg.stride, cfg.padding, cfg.dilation)
    g = grad_output_like(y_ref)
    inputs = [t for t in (x, w, b) if t is not None]
    ref = torch.autograd.grad(y_ref, inputs, g)
    y = dsconv_ext.depthwise_conv2d(x, w, b, cfg.stride, cfg.padding, cfg.dilation)
    got = torch.autograd.grad(y, inputs, g)
    for name, a, r in zip(("input", "weight", "bias"), got, ref):
        assert a.shape == r.shape, name
        torch.testing.assert_close(a, r, **F64_TOL, msg=lambda m: f"grad_{name}: {m}")
    # grad_input's memory format is nn.Conv2d's.
    assert got[0].stride() == ref[0].stride()


@pytest.mark.parametrize("layout", ["nchw", "cl", "step", "transposed", "expanded"])
@pytest.mark.parametrize("m", [1, 2])
def test_grad_input_memory_format(layout, m):
    x = _leaf(make_input((2, 3, 9, 8), layout))
    w = _leaf(torch.randn(3 * m, 1, 3, 3, dtype=torch.float64))
    y = dsconv_ext.depthwise_conv2d(x, w, None, 1, 1)
    y_ref = reference(x, w, None, 1, 1)
    g = grad_output_like(y_ref)
    gx, = torch.autograd.grad(y, x, g)
    gx_ref, = torch.autograd.grad(y_ref, x, g)
    assert gx.stride() == gx_ref.stride()
    expect_cl = layout == "cl"
    assert gx.is_contiguous(memory_format=torch.channels_last if expect_cl else torch.contiguous_format)
    torch.testing.assert_close(gx, gx_ref, **F64_TOL)


def test_leaf_grad_accumulation_channels_last():
    """.grad after .backward() (twice, accumulating) equals nn.Conv2d's, with the same layout."""
    x0 = torch.randn(2, 4, 10, 10, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w0 = torch.randn(8, 1, 3, 3, dtype=torch.float64)
    b0 = torch.randn(8, dtype=torch.float64)
    grads = []
    for fn in (dsconv_ext.depthwise_conv2d, reference):
        x, w, b = _leaf(x0), _leaf(w0), _leaf(b0)
        for _ in range(2):
            (fn(x, w, b, 2, 1, 1) ** 2).sum().backward()
        grads.append((x.grad, w.grad, b.grad))
    for a, r in zip(*grads):
        assert a.stride() == r.stride()
        torch.testing.assert_close(a, r, **F64_TOL)


# ---------------------------------------------------------------------------------------------
# gradcheck / gradgradcheck

CHECK_CONFIGS = {
    "stride2": Config(2, 2, 1, 6, 5, (3, 3), 2, 1, 1, True),
    "dilation2": Config(1, 2, 1, 6, 6, (3, 3), 1, 2, 2, True),
    "multiplier2": Config(2, 2, 2, 5, 4, (3, 2), 1, 1, 1, True),
    "same_even_k": Config(1, 3, 1, 5, 6, (2, 4), 1, "same", (1, 2), True),
    "channels_last": Config(2, 3, 1, 5, 5, (3, 3), 1, 1, 1, True, "cl"),
    "cl_mult3_s2": Config(1, 2, 3, 6, 5, (3, 3), (2, 1), (1, 0), 1, False, "cl"),
    "step_view": Config(1, 2, 1, 5, 6, (3, 3), 1, (0, 2), (2, 1), True, "step"),
    "nobias_valid": Config(2, 2, 1, 5, 5, (2, 3), 1, "valid", 1, False),
}


def _check_inputs(cfg):
    x, w, b = make_args(cfg)
    return tuple(_leaf(t) for t in (x, w, b) if t is not None)


def _fn(cfg):
    def f(x, w, b=None):
        return dsconv_ext.depthwise_conv2d(x, w, b, cfg.stride, cfg.padding, cfg.dilation)

    return f


@pytest.mark.parametrize("name", list(CHECK_CONFIGS))
def test_gradcheck(name):
    cfg = CHECK_CONFIGS[name]
    assert gradcheck(_fn(cfg), _check_inputs(cfg))


@pytest.mark.parametrize("name", list(CHECK_CONFIGS))
def test_gradgradcheck(name):
    cfg = CHECK_CONFIGS[name]
    assert gradgradcheck(_fn(cfg), _check_inputs(cfg))


def test_gradcheck_unbatched():
    x = _leaf(torch.randn(2, 5, 4, dtype=torch.float64))
    w = _leaf(torch.randn(4, 1, 3, 2, dtype=torch.float64))
    b = _leaf(torch.randn(4, dtype=torch.float64))
    f = lambda x, w, b: dsconv_ext.depthwise_conv2d(x, w, b, 1, "same", 1)  # noqa: E731
    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


MASKS = [m for m in itertools.product([False, True], repeat=3) if any(m)]


def _mask_id(m):
    return "".join(n if on else "_" for n, on in zip("iwb", m))


@pytest.mark.parametrize("mask", MASKS, ids=_mask_id)
def test_gradcheck_backward_op(mask):
    """The backward op is itself differentiable (double backward), for every output_mask."""
    go = _leaf(torch.randn(2, 4, 2, 5, dtype=torch.float64))
    x = _leaf(torch.randn(2, 2, 5, 6, dtype=torch.float64))
    w = _leaf(torch.randn(4, 1, 3, 2, dtype=torch.float64))
    stride, pad, dil = [2, 1], [1, 0, 0, 1], [1, 2]

    def f(go, x, w):
        outs = bwd_op(go, x, w, stride, pad, dil, list(mask))
        return tuple(o for o, on in zip(outs, mask) if on)

    assert gradcheck(f, (go, x, w))


def test_double_backward_partial_vs_conv2d():
    """d/d(weight, grad_output) of <grad_input, v> matches F.conv2d's double backward."""
    x0 = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    w0 = torch.randn(6, 1, 3, 3, dtype=torch.float64)
    results = []
    for fn in (dsconv_ext.depthwise_conv2d, reference):
        x, w = _leaf(x0), _leaf(w0)
        y = fn(x, w, None, (2, 1), 1, 1)
        g = _leaf(torch.ones_like(y) * 0.5 + torch.arange(y.numel(), dtype=y.dtype).view_as(y) / y.numel())
        gx, = torch.autograd.grad(y, x, g, create_graph=True)
        v = torch.linspace(-1, 1, gx.numel(), dtype=gx.dtype).view_as(gx)
        results.append(torch.autograd.grad((gx * v).sum(), (w, g)))
    for a, r in zip(*results):
        torch.testing.assert_close(a, r, **F64_TOL)


# ---------------------------------------------------------------------------------------------
# requires_grad on a subset: correct gradients, and the backward op only computes what is needed


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is bwd_op.default:
            self.masks.append(tuple(args[6]))
        return func(*args, **(kwargs or {}))


def _checked_grad_masks(x, w, b, inputs, g, stride):
    """autograd.grad of dsconv's op w.r.t. inputs (checked against F.conv2d's, padding 1); returns
    the output_masks autograd passed to the backward op."""
    ref = torch.autograd.grad(reference(x, w, b, stride, 1), inputs, g)
    with _OpLog() as log:
        got = torch.autograd.grad(dsconv_ext.depthwise_conv2d(x, w, b, stride, 1), inputs, g)
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, **F64_TOL)
    return log.masks


@pytest.mark.parametrize(
    "which",
    [("x",), ("w",), ("b",), ("x", "w"), ("w", "b"), ("x", "b")],
    ids=lambda t: "_".join(t),
)
def test_requires_grad_subset(which):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad="x" in which)
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64, requires_grad="w" in which)
    b = torch.randn(6, dtype=torch.float64, requires_grad="b" in which)
    g = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    inputs = [t for t in (x, w, b) if t.requires_grad]
    assert _checked_grad_masks(x, w, b, inputs, g, 1) == [("x" in which, "w" in which, "b" in which)]


@pytest.mark.parametrize("asked", [("x",), ("w",), ("b",), ("w", "b"), ("x", "b")], ids=lambda t: "_".join(t))
def test_asked_grad_subset(asked):
    """All three require grad, autograd.grad asks for some: the C++ autograd kernel (its
    needs_input_grad follows the graph task) asks the backward op for those only."""
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    inputs = [t for name, t in zip("xwb", (x, w, b)) if name in asked]
    assert _checked_grad_masks(x, w, b, inputs, g, 2) == [("x" in asked, "w" in asked, "b" in asked)]


def test_no_grad_needed_builds_no_graph():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64)
    assert dsconv_ext.depthwise_conv2d(x, w).grad_fn is None
    w.requires_grad_()
    with torch.no_grad():
        assert dsconv_ext.depthwise_conv2d(x, w).grad_fn is None


# ---------------------------------------------------------------------------------------------
# The backward op called directly: every output_mask


def _aten_backward(go, x, w, stride, padding, dilation, mask):
    return torch.ops.aten.convolution_backward(
        go, x, w, [w.shape[0]], stride, padding, dilation, False, [0, 0], x.shape[1], list(mask)
    )


@pytest.mark.parametrize("layout", ["nchw", "cl", "step"])
@pytest.mark.parametrize("mask", list(itertools.product([False, True], repeat=3)), ids=lambda m: _mask_id(m) or "none")
def test_backward_op_output_mask(mask, layout):
    x = make_input((2, 4, 9, 8), layout)
    w = torch.randn(8, 1, 3, 5, dtype=torch.float64)
    stride, padding, dilation = [2, 1], [1, 2], [1, 2]
    oh, ow = 5, 4
    go = make_input((2, 8, oh, ow), "cl" if layout == "cl" else "nchw")
    got = bwd_op(go, x, w, stride, [padding[0], padding[0], padding[1], padding[1]], dilation, list(mask))
    ref = _aten_backward(go, x, w, stride, padding, dilation, mask)
    assert len(got) == 3
    for name, on, a, r in zip(("grad_input", "grad_weight", "grad_bias"), mask, got, ref):
        if on:
            assert a.shape == r.shape, name
            torch.testing.assert_close(a, r, **F64_TOL)
        else:
            assert a.shape == (0,), name
            assert a.dtype == x.dtype
    if mask[0]:
        assert got[0].stride() == ref[0].stride()


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("go_layout", ["nchw", "cl", "step", "transposed", "expanded", "all_zero_strides"])
@pytest.mark.parametrize("layout", ["nchw", "cl", "step"])
def test_backward_op_grad_output_layouts(layout, go_layout, m):
    """grad_output in any layout (e.g. y.sum().backward() gives all-zero strides)."""
    x = make_input((2, 3, 7, 6), layout)
    w = torch.randn(3 * m, 1, 3, 3, dtype=torch.float64)
    shape = (2, 3 * m, 7, 6)
    if go_layout == "all_zero_strides":
        go = torch.randn(1, 1, 1, 1, dtype=torch.float64).expand(shape)
    else:
        go = make_input(shape, go_layout)
    got = bwd_op(go, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [True, True, True])
    ref = _aten_backward(go, x, w, [1, 1], [1, 1], [1, 1], [True, True, True])
    for a, r in zip(got, ref):
        torch.testing.assert_close(a, r, **F64_TOL)
    assert got[0].stride() == ref[0].stride()


# ---------------------------------------------------------------------------------------------
# Empty batch


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_empty_batch_backward(layout):
    x = _leaf(make_input((0, 3, 6, 6), layout))
    w = _leaf(torch.randn(6, 1, 3, 3, dtype=torch.float64))
    b = _leaf(torch.randn(6, dtype=torch.float64))
    y = dsconv_ext.depthwise_conv2d(x, w, b, 1, 1)
    y_ref = reference(x, w, b, 1, 1)
    assert y.shape == y_ref.shape == (0, 6, 6, 6)
    g = torch.randn(y.shape, dtype=y.dtype)
    got = torch.autograd.grad(y, (x, w, b), g)
    ref = torch.autograd.grad(y_ref, (x, w, b), g)
    for a, r in zip(got, ref):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r)
    assert (got[1] == 0).all() and (got[2] == 0).all()
    # The op directly, every mask.
    for mask in itertools.product([False, True], repeat=3):
        gi, gw, gb = bwd_op(g, x.detach(), w.detach(), [1, 1], [1, 1, 1, 1], [1, 1], list(mask))
        assert gi.shape == (x.shape if mask[0] else (0,))
        assert gw.shape == (w.shape if mask[1] else (0,))
        assert gb.shape == ((6,) if mask[2] else (0,))


# ---------------------------------------------------------------------------------------------
# Reduced precision and thread-count independence

LOWP_GRID = sample_configs(seed=99, n=8, max_hw=16, layouts=("nchw", "cl", "step"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("cfg", LOWP_GRID, ids=[c.id() for c in LOWP_GRID])
def test_grads_low_precision(cfg, dtype):
    x64, w64, b64 = make_args(cfg)
    x, w = _leaf(x64.to(dtype)), _leaf(w64.to(dtype))
    b = _leaf(b64.to(dtype)) if b64 is not None else None
    y = dsconv_ext.depthwise_conv2d(x, w, b, cfg.stride, cfg.padding, cfg.dilation)
    g = grad_output_like(y)
    inputs = [t for t in (x, w, b) if t is not None]
    got = torch.autograd.grad(y, inputs, g)
    ins64 = [_leaf(t.double()) for t in inputs]
    y64 = reference(*ins64, cfg.stride, cfg.padding, cfg.dilation) if b is not None else reference(
        ins64[0], ins64[1], None, cfg.stride, cfg.padding, cfg.dilation
    )
    ref = torch.autograd.grad(y64, ins64, g.double())
    for a, r in zip(got, ref):
        assert a.dtype == dtype
        # Reductions over N*OH*OW (weight, bias) or taps (input): scale with the result's magnitude.
        tol = lowp_tol(dtype, cfg.taps)
        scale = max(1.0, r.abs().max().item())
        torch.testing.assert_close(a.double(), r, rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_backward_bitwise_identical_across_thread_counts(layout, dtype):
    x = make_input((3, 20, 17, 18), layout, dtype)
    w = torch.randn(40, 1, 3, 5, dtype=dtype)
    go = make_input((3, 40, 9, 11), layout, dtype)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(bwd_op(go, x, w, [2, 1], [1, 1, 1, 0], [1, 2], [True, True, True]))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)
