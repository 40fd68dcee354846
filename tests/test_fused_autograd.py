"""Autograd of dsconv::separable_conv2d (recompute backward): gradcheck / gradgradcheck in float64,
gradients equal to the PyTorch composition's, opcheck, and the memory the recompute saves."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import dsconv_ext
from dsconv_ext._fused_act import ACT_CODES, act_fn


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def reference(x, dw, pw, db, pb, stride, padding, dilation, act, pw_act):
    y = act_fn(ACT_CODES[act])(F.conv2d(x, dw, db, stride, padding, dilation, groups=x.shape[1]))
    return act_fn(ACT_CODES[pw_act])(F.conv2d(y, pw, pb))


def leaf(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize(
    "act,pw_act,stride,padding,dilation,cl",
    [
        ("silu", "gelu", 1, 1, 1, False),
        (None, "silu", 2, 1, 1, True),
        ("gelu", None, 1, "same", 2, False),
        ("relu6", "hardswish", (1, 2), (2, 0), 1, True),
    ],
)
def test_gradcheck(act, pw_act, stride, padding, dilation, cl):
    x = leaf(2, 4, 7, 6)
    if cl:
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    dw, pw, db, pb = leaf(4, 1, 3, 3), leaf(5, 4, 1, 1), leaf(4), leaf(5)

    def f(x, dw, pw, db, pb):
        return dsconv_ext.separable_conv2d(x, dw, pw, db, pb, stride, padding, dilation, act, pw_act)

    assert gradcheck(f, (x, dw, pw, db, pb), fast_mode=True)


def test_gradcheck_full_jacobian():
    x, dw, pw, db, pb = leaf(1, 2, 4, 4), leaf(2, 1, 3, 3), leaf(3, 2, 1, 1), leaf(2), leaf(3)

    def f(x, dw, pw, db, pb):
        return dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "silu", "gelu")

    assert gradcheck(f, (x, dw, pw, db, pb))


def test_gradgradcheck():
    x, dw, pw, db, pb = leaf(1, 3, 5, 5), leaf(3, 1, 3, 3), leaf(4, 3, 1, 1), leaf(3), leaf(4)

    def f(x, dw, pw, db, pb):
        return dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 1, 1, 1, "silu", "gelu")

    assert gradgradcheck(f, (x, dw, pw, db, pb), fast_mode=True)


def test_partial_requires_grad():
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    dw, pw = leaf(4, 1, 3, 3), torch.randn(3, 4, 1, 1, dtype=torch.float64)
    out = dsconv_ext.separable_conv2d(x, dw, pw, padding=1, activation="silu")
    (g,) = torch.autograd.grad(out.sum(), [dw])
    dw_ref = dw.detach().requires_grad_()
    (g_ref,) = torch.autograd.grad(reference(x, dw_ref, pw, None, None, 1, 1, 1, "silu", None).sum(), [dw_ref])
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("act,pw_act", [("relu", "relu"), ("relu6", None), ("hardswish", "silu")])
def test_grads_match_composition_float32(cl, act, pw_act):
    x0 = torch.randn(2, 24, 15, 13)
    if cl:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    params0 = [torch.randn(24, 1, 3, 3), torch.randn(16, 24, 1, 1) / 5, torch.randn(24), torch.randn(16)]
    x, dw, pw, db, pb = [t.clone().requires_grad_() for t in [x0] + params0]
    xr, dwr, pwr, dbr, pbr = [t.clone().requires_grad_() for t in [x0] + params0]
    out = dsconv_ext.separable_conv2d(x, dw, pw, db, pb, 2, 1, 1, act, pw_act)
    ref = reference(xr, dwr, pwr, dbr, pbr, 2, 1, 1, act, pw_act)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    for a, b in [(x, xr), (dw, dwr), (pw, pwr), (db, dbr), (pb, pbr)]:
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)
    assert x.grad.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def test_opcheck():
    op = torch.ops.dsconv.separable_conv2d.default
    samples = [
        (leaf(2, 3, 6, 5), leaf(3, 1, 3, 3), leaf(3), leaf(4, 3, 1, 1), leaf(4), [1, 1], [1, 1, 1, 1], [1, 1], 3, 5),
        (
            torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last),
            torch.randn(4, 1, 3, 3, requires_grad=True), None,
            torch.randn(2, 4, 1, 1, requires_grad=True), None, [2, 2], [1, 1, 1, 1], [1, 1], 2, 0,
        ),
        (torch.randn(2, 3, 7, 7), torch.randn(3, 1, 2, 2), None, torch.randn(5, 3, 1, 1), None,
         [1, 1], [0, 1, 0, 1], [1, 1], 0, 1),
    ]
    for args in samples:
        torch.library.opcheck(op, args)


def test_recompute_saves_only_inputs():
    """The fused op keeps no activation of its own for the backward: only its inputs."""
    x = torch.randn(4, 32, 28, 28, requires_grad=True)
    dw = torch.randn(32, 1, 3, 3, requires_grad=True)
    pw = torch.randn(64, 32, 1, 1, requires_grad=True)

    def saved_bytes(fn):
        seen = {}

        def pack(t):
            seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        return sum(seen.values()), out

    fused, out = saved_bytes(lambda: dsconv_ext.separable_conv2d(x, dw, pw, padding=1, activation="relu6", pw_activation="relu6"))
    unfused, ref = saved_bytes(lambda: reference(x, dw, pw, None, None, 1, 1, 1, "relu6", "relu6"))
    inputs = sum(t.untyped_storage().nbytes() for t in (x, dw, pw))
    assert fused == inputs
    # the composition also keeps the depthwise output (C x H x W) and the pointwise output
    assert unfused >= inputs + x.numel() * 4 + out.numel() * 4
