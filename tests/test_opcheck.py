"""Op registration tests: torch.library.opcheck (schema, fake kernels, autograd registration,
AOT dispatch), torch.compile(fullgraph=True) against eager, and meta-device shapes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext
from torch._subclasses.fake_tensor import FakeTensorMode

from _utils import F64_TOL, LAYOUTS, make_input

fwd_op = torch.ops.dsconv.depthwise_conv2d
bwd_op = torch.ops.dsconv.depthwise_conv2d_backward


# ---------------------------------------------------------------------------------------------
# opcheck


def _fwd_args(layout, bias, requires_grad, dtype=torch.float32):
    x = make_input((2, 3, 7, 6), layout, dtype).detach().requires_grad_(requires_grad)
    w = torch.randn(6, 1, 3, 2, dtype=dtype, requires_grad=requires_grad)
    b = torch.randn(6, dtype=dtype, requires_grad=requires_grad) if bias else None
    return (x, w, b, [2, 1], [1, 0, 1, 1], [1, 2])


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_opcheck_forward(layout, bias, requires_grad):
    torch.library.opcheck(fwd_op, _fwd_args(layout, bias, requires_grad))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16], ids=lambda d: str(d).split(".")[-1])
def test_opcheck_forward_dtypes(dtype):
    torch.library.opcheck(fwd_op, _fwd_args("nchw", True, False, dtype))


@pytest.mark.parametrize(
    "mask",
    [[True, True, True], [True, False, False], [False, True, False], [False, False, True], [False, True, True]],
    ids=lambda m: "".join(n if on else "_" for n, on in zip("iwb", m)),
)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
def test_opcheck_backward(mask, layout, requires_grad):
    x = make_input((2, 3, 7, 6), layout, torch.float32).detach().requires_grad_(requires_grad)
    w = torch.randn(6, 1, 3, 2, requires_grad=requires_grad)
    go = make_input((2, 6, 3, 6), layout, torch.float32).detach().requires_grad_(requires_grad)
    torch.library.opcheck(bwd_op, (go, x, w, [2, 1], [1, 0, 1, 1], [1, 2], mask))


# ---------------------------------------------------------------------------------------------
# torch.compile(fullgraph=True)


def _fn(x, w, b):
    y = dsconv_ext.depthwise_conv2d(x, w, b, stride=(1, 2), padding=1, dilation=1)
    return torch.relu(y) * 2.0 + 1.0


def _compare_compiled(compiled, eager, x, w, b):
    xs = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    xe = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    out_c = compiled(*xs)
    out_e = eager(*xe)
    torch.testing.assert_close(out_c, out_e, **F64_TOL)
    g = torch.randn_like(out_e)
    gc = torch.autograd.grad(out_c, xs, g)
    ge = torch.autograd.grad(out_e, xe, g)
    for a, r in zip(gc, ge):
        torch.testing.assert_close(a, r, **F64_TOL)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_compile_fullgraph_aot_eager(layout):
    torch._dynamo.reset()
    compiled = torch.compile(_fn, fullgraph=True, backend="aot_eager")
    x = make_input((2, 4, 9, 8), layout)
    w = torch.randn(8, 1, 3, 3, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    _compare_compiled(compiled, _fn, x, w, b)


def test_compile_fullgraph_dynamic_shapes():
    torch._dynamo.reset()
    compiled = torch.compile(_fn, fullgraph=True, backend="aot_eager", dynamic=True)
    w = torch.randn(8, 1, 3, 3, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64)
    for n, h, wd in [(2, 9, 8), (3, 12, 15), (1, 5, 6)]:
        x = torch.randn(n, 4, h, wd, dtype=torch.float64)
        _compare_compiled(compiled, _fn, x, w, b)


@pytest.mark.slow
def test_compile_fullgraph_inductor_module():
    """Default (inductor) backend on a small module: forward and backward equal eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 1),
        dsconv_ext.DepthwiseConv2d(6, 12, 3, padding=1),
        nn.ReLU(),
        dsconv_ext.DepthwiseConv2d(12, 12, (2, 4), padding="same", dilation=(2, 1), bias=False),
    ).double()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(2, 3, 10, 9, dtype=torch.float64)
    out_e = model(x)
    out_c = compiled(x)
    torch.testing.assert_close(out_c, out_e, **F64_TOL)
    g = torch.randn_like(out_e)
    ge = torch.autograd.grad(out_e, list(model.parameters()), g)
    gc = torch.autograd.grad(out_c, list(model.parameters()), g)
    for a, r in zip(gc, ge):
        torch.testing.assert_close(a, r, **F64_TOL)


# ---------------------------------------------------------------------------------------------
# meta tensors


@pytest.mark.parametrize(
    "shape,wshape,stride,padding,dilation",
    [
        ((2, 3, 9, 8), (6, 1, 3, 3), 1, 1, 1),
        ((1, 4, 10, 7), (4, 1, 2, 4), 1, "same", (2, 1)),
        ((3, 2, 11, 12), (6, 1, 5, 3), (2, 3), (1, 0), (1, 2)),
        ((2, 5, 4, 4), (5, 1, 4, 4), 1, "valid", 1),
        ((0, 3, 6, 6), (3, 1, 3, 3), 1, 0, 1),
    ],
    ids=["k3p1", "same_even", "strided", "valid_exact", "empty_batch"],
)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_meta_shapes(shape, wshape, stride, padding, dilation, layout):
    x_cpu = make_input(shape, layout, torch.float32)
    w_cpu = torch.randn(wshape)
    ref = F.conv2d(x_cpu, w_cpu, None, stride, padding, dilation, groups=shape[1])
    x, w = x_cpu.to("meta"), w_cpu.to("meta")
    out = dsconv_ext.depthwise_conv2d(x, w, torch.empty(wshape[0], device="meta"), stride, padding, dilation)
    assert out.device.type == "meta"
    assert out.shape == ref.shape
    assert out.dtype == ref.dtype
    assert out.stride() == ref.stride()
    # the backward op on meta tensors
    go = torch.empty_strided(ref.shape, ref.stride(), device="meta")
    pad4 = dsconv_ext._args.conv_args(wshape, stride, padding, dilation)
    gi, gw, gb = bwd_op(go, x, w, pad4[0], pad4[1], pad4[2], [True, True, True])
    real = bwd_op(torch.randn(ref.shape), x_cpu, w_cpu, pad4[0], pad4[1], pad4[2], [True, True, True])
    for fake_t, real_t in zip((gi, gw, gb), real):
        assert fake_t.device.type == "meta"
        assert fake_t.shape == real_t.shape
        assert fake_t.stride() == real_t.stride()
    gi, gw, gb = bwd_op(go, x, w, pad4[0], pad4[1], pad4[2], [False, True, False])
    assert gi.shape == (0,) and gw.shape == w.shape and gb.shape == (0,)


def test_meta_autograd_and_module():
    m = dsconv_ext.DepthwiseConv2d(4, 8, 3, stride=2, padding=1, device="meta")
    assert m.weight.device.type == "meta"
    x = torch.empty(2, 4, 15, 16, device="meta", requires_grad=True)
    y = m(x)
    assert y.shape == (2, 8, 8, 8) and y.device.type == "meta"
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert m.weight.grad.shape == m.weight.shape and m.bias.grad.shape == (8,)


def test_meta_unbatched():
    out = dsconv_ext.depthwise_conv2d(torch.empty(3, 8, 8, device="meta"), torch.empty(6, 1, 3, 3, device="meta"), padding=1)
    assert out.shape == (6, 8, 8)


@pytest.mark.parametrize("wlayout", ["nchw", "cl"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    "shape", [(2, 3, 7, 6), (1, 1, 5, 5), (2, 4, 1, 1), (1, 3, 1, 6), (0, 3, 5, 5)], ids=lambda s: "x".join(map(str, s))
)
def test_fake_tensor_matches_real(shape, layout, wlayout):
    """Under FakeTensorMode (exact input strides kept, views included) both ops report the
    shapes and strides that the real CPU kernels produce."""
    x = make_input(shape, layout, torch.float32)
    w = torch.randn(shape[1] * 2, 1, 1, 3)
    if wlayout == "cl":
        w = w.contiguous(memory_format=torch.channels_last)
    b = torch.randn(shape[1] * 2)
    args = ([1, 1], [0, 0, 1, 1], [1, 1])
    out = fwd_op(x, w, b, *args)
    go = torch.randn(out.shape)
    real_bwd = bwd_op(go, x, w, *args, [True, True, True])
    with FakeTensorMode() as mode:
        fx, fw, fb, fgo = (mode.from_tensor(t) for t in (x, w, b, go))
        assert fx.stride() == x.stride()
        fout = fwd_op(fx, fw, fb, *args)
        fake_bwd = bwd_op(fgo, fx, fw, *args, [True, True, True])
    assert fout.shape == out.shape and fout.stride() == out.stride()
    for f, r in zip(fake_bwd, real_bwd):
        assert f.shape == r.shape and f.stride() == r.stride()
