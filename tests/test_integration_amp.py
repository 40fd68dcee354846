"""Automatic mixed precision: under torch.autocast a converted model runs its depthwise layers in
the autocast dtype, exactly as nn.Conv2d does (convolution is a lower-precision autocast op), so
outputs have nn.Conv2d's dtypes and values and gradients land in the float32 parameters' dtype,
in eager mode and under torch.compile."""
import copy

import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d

DTYPES = [torch.bfloat16, torch.float16]


def _ids(d):
    return str(d).split(".")[-1]


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 32, 3, padding=1, groups=16),  # multiplier 2, with bias
        nn.ReLU(),
        nn.Conv2d(32, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def _tol(dtype):
    # the two implementations may round a 16-bit result differently (last-bit differences that
    # later layers amplify a little); relative to the largest magnitude
    return 2e-2 if dtype == torch.bfloat16 else 4e-3


def _assert_close_scaled(a, b, dtype, what):
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != reference {b.dtype}"
    scale = b.float().abs().max().item() + 1e-6
    err = (a.float() - b.float()).abs().max().item()
    assert err <= _tol(dtype) * scale, f"{what}: max error {err} > {_tol(dtype)} * {scale}"


def _run(model, forward, x, device_type, dtype):
    """Output (autocast dtype), per-layer output dtypes and float32 parameter gradients."""
    dtypes = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: dtypes.append((type(m).__name__, o.dtype)))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    model.zero_grad()
    with torch.autocast(device_type, dtype=dtype):
        out = forward(x)
        loss = out.float().square().sum()
    # a constant loss scale, as torch.amp.GradScaler applies, keeps float16 gradients normal
    (loss * 1024).backward()
    for h in hooks:
        h.remove()
    return out, dtypes, {n: p.grad.clone() for n, p in model.named_parameters()}


def _full_precision(reference, x):
    reference.zero_grad()
    out = reference(x)
    (out.square().sum() * 1024).backward()
    return out.detach(), {n: p.grad.clone() for n, p in reference.named_parameters()}


def _check(reference, converted, forward, x, device_type, dtype, check_layer_dtypes=True):
    out_r, dtypes_r, grads_r = _run(reference, reference, x, device_type, dtype)
    out_c, dtypes_c, grads_c = _run(converted, forward, x, device_type, dtype)
    assert out_c.dtype == out_r.dtype == dtype
    _assert_close_scaled(out_c, out_r, dtype, "output")
    if check_layer_dtypes:
        assert [d for _, d in dtypes_c] == [d for _, d in dtypes_r] and dtypes_c
        assert ("DepthwiseConv2d", dtype) in dtypes_c
    # Gradients: some (BatchNorm weights in train mode) are sums of cancelling terms, so their
    # mixed-precision values are mostly rounding noise for both implementations. Ours must be as
    # accurate as nn.Conv2d's, measured against the float32 gradients.
    full_out, full_grads = _full_precision(reference, x)
    for name, g in full_grads.items():
        assert grads_c[name].dtype == torch.float32
        err_ours = (grads_c[name] - g).abs().max().item()
        err_ref = (grads_r[name] - g).abs().max().item()
        slack = _tol(dtype) * g.abs().max().item()
        assert err_ours <= 1.5 * err_ref + slack, f"{name}: error {err_ours} vs nn.Conv2d's {err_ref} (+{slack})"
    # and the mixed-precision output is a good approximation of the float32 one
    assert (out_c.float() - full_out).abs().max() <= 0.05 * full_out.abs().max() + 1e-3


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_cpu_autocast_matches_conv2d(dtype, layout):
    torch.manual_seed(0)
    reference = _net()
    converted = dsconv_ext.convert(copy.deepcopy(reference))
    x = torch.randn(4, 3, 16, 16)
    if layout == "cl":
        reference = reference.to(memory_format=torch.channels_last)
        converted = converted.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    _check(reference, converted, converted, x, "cpu", dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_cpu_autocast_functional(dtype):
    """dsconv_ext.depthwise_conv2d with float32 arguments under autocast: F.conv2d's dtype."""
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    w = torch.randn(12, 1, 3, 3, requires_grad=True)
    b = torch.randn(12, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        ours = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
        ref = torch.nn.functional.conv2d(x, w, b, padding=1, groups=6)
    assert ours.dtype == ref.dtype == dtype
    _assert_close_scaled(ours, ref, dtype, "output")
    g = torch.randn(ref.shape)
    grads_ours = torch.autograd.grad(ours, (x, w, b), g.to(dtype))
    grads_ref = torch.autograd.grad(ref, (x, w, b), g.to(dtype))
    for a, r, name in zip(grads_ours, grads_ref, "xwb"):
        assert a.dtype == r.dtype == torch.float32, name
        _assert_close_scaled(a, r, dtype, name)
    # disabled autocast inside an enabled region: full precision again
    with torch.autocast("cpu", dtype=dtype), torch.autocast("cpu", enabled=False):
        assert dsconv_ext.depthwise_conv2d(x, w, b, padding=1).dtype == torch.float32


def test_cpu_autocast_compiled():
    """torch.compile(fullgraph=True) with autocast inside and outside the compiled region."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    reference = _net()
    converted = dsconv_ext.convert(copy.deepcopy(reference))
    compiled = torch.compile(converted, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 16, 16)
    # autocast around the compiled module (layer hooks don't fire inside compiled code)
    _check(reference, converted, compiled, x, "cpu", torch.bfloat16, check_layer_dtypes=False)

    def inner(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return converted(x)

    out = torch.compile(inner, fullgraph=True, backend="aot_eager")(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = reference(x)
    assert out.dtype == torch.bfloat16
    _assert_close_scaled(out, ref, torch.bfloat16, "output")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_cuda_autocast_matches_conv2d(dtype):
    torch.manual_seed(0)
    reference = _net().cuda()
    converted = dsconv_ext.convert(copy.deepcopy(reference))
    assert any(type(m) is DepthwiseConv2d for m in converted.modules())
    _check(reference, converted, converted, torch.randn(4, 3, 16, 16, device="cuda"), "cuda", dtype)


# ---------------------------------------------------------------------------------------------
# depthwise-separable blocks: DepthwiseSeparableConv2d (eval mode runs the fused op) and fuse()

needs_separable = pytest.mark.skipif(
    not hasattr(dsconv_ext, "DepthwiseSeparableConv2d"), reason="this dsconv_ext has no DepthwiseSeparableConv2d"
)


def _separable_net():
    S = dsconv_ext.DepthwiseSeparableConv2d
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        S(8, 16),
        S(16, 16, 5, stride=2, activation="relu6", pw_activation=None),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def _plain_twin(model):
    """The same weights in plain PyTorch modules: each block as the Sequential of its parts."""
    twin = copy.deepcopy(model)
    for i, m in enumerate(twin):
        if isinstance(m, dsconv_ext.DepthwiseSeparableConv2d):
            m.dw.__class__ = nn.Conv2d
            twin[i] = nn.Sequential(m.dw, m.dw_bn, m.dw_act, m.pw, m.pw_bn, m.pw_act)
    return twin


@needs_separable
@pytest.mark.parametrize("fused", [False, True], ids=["separable_eval", "to_fused"])
def test_cpu_autocast_separable_eval(fused):
    torch.manual_seed(0)
    model = _separable_net()
    with torch.no_grad():
        model(torch.randn(8, 3, 12, 12))  # BatchNorm statistics
    model.eval()
    reference = _plain_twin(model)
    if fused:  # FusedSeparableConv2d: BatchNorm folded once, weights as buffers
        model = nn.Sequential(*[m.to_fused() if isinstance(m, dsconv_ext.DepthwiseSeparableConv2d) else m for m in model])
        assert sum(type(m).__name__ == "FusedSeparableConv2d" for m in model.modules()) == 2
    x = torch.randn(2, 3, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out, ref = model(x), reference(x)
    assert out.dtype == ref.dtype == torch.bfloat16
    _assert_close_scaled(out, ref, torch.bfloat16, "output")


@needs_separable
def test_cpu_autocast_separable_train():
    """Train mode runs the blocks' submodules (DepthwiseConv2d included): autocast as nn.Conv2d."""
    torch.manual_seed(0)
    model = _separable_net()
    reference = _plain_twin(model)
    x = torch.randn(4, 3, 12, 12)
    outs = []
    for m in (model, reference):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(x)
        out.float().square().sum().backward()
        outs.append(out)
    assert outs[0].dtype == outs[1].dtype == torch.bfloat16
    _assert_close_scaled(outs[0], outs[1], torch.bfloat16, "output")
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert p.grad.dtype == torch.float32
        _assert_close_scaled(p.grad, q.grad, torch.bfloat16, name)
