"""DepthwiseConv2d against nn.Conv2d(groups=in_channels) built from the same seed."""
import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d
from _utils import F64_TOL, make_input


def _pair_of_modules(*args, **kwargs):
    torch.manual_seed(1234)
    ours = DepthwiseConv2d(*args, **kwargs)
    torch.manual_seed(1234)
    ref = nn.Conv2d(*args, groups=args[0], **kwargs)
    return ours, ref


MODULE_CONFIGS = {
    "k3_p1": dict(args=(4, 4, 3), kwargs=dict(padding=1)),
    "multiplier2": dict(args=(3, 6, 3), kwargs=dict(padding=1, stride=2)),
    "multiplier3_rect": dict(args=(2, 6, (3, 5)), kwargs=dict(padding=(1, 2), dilation=(2, 1))),
    "nobias": dict(args=(4, 4, 5), kwargs=dict(padding=2, bias=False)),
    "same": dict(args=(4, 8, 4), kwargs=dict(padding="same", dilation=2)),
    "same_rect_even": dict(args=(3, 3, (2, 3)), kwargs=dict(padding="same")),
    "valid": dict(args=(4, 4, 3), kwargs=dict(padding="valid", stride=(1, 2))),
    "reflect": dict(args=(4, 4, 3), kwargs=dict(padding=1, padding_mode="reflect")),
    "replicate": dict(args=(4, 8, 3), kwargs=dict(padding=(2, 1), padding_mode="replicate", stride=2)),
    "circular": dict(args=(4, 4, 3), kwargs=dict(padding=(1, 2), padding_mode="circular", dilation=(1, 2))),
    "reflect_same": dict(args=(3, 3, 4), kwargs=dict(padding="same", padding_mode="reflect")),
    "circular_same_nobias": dict(args=(3, 6, 3), kwargs=dict(padding="same", padding_mode="circular", bias=False)),
    "zeros_explicit": dict(args=(2, 2, 1), kwargs=dict(padding=0, padding_mode="zeros")),
}


@pytest.mark.parametrize("name", list(MODULE_CONFIGS))
def test_same_init_state_dict_and_repr(name):
    c = MODULE_CONFIGS[name]
    ours, ref = _pair_of_modules(*c["args"], **c["kwargs"])
    assert isinstance(ours, nn.Conv2d)
    assert ours.groups == ours.in_channels
    sd, rsd = ours.state_dict(), ref.state_dict()
    assert list(sd) == list(rsd)
    for k in rsd:
        assert sd[k].shape == rsd[k].shape, k
        assert torch.equal(sd[k], rsd[k]), f"{k} differs after the same seeded init"
    assert repr(ours) == repr(ref).replace("Conv2d(", "DepthwiseConv2d(", 1)
    assert ours.extra_repr() == ref.extra_repr()


@pytest.mark.parametrize("name", list(MODULE_CONFIGS))
def test_load_state_dict_across(name):
    c = MODULE_CONFIGS[name]
    ours, ref = _pair_of_modules(*c["args"], **c["kwargs"])
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    ours.load_state_dict(ref.state_dict(), strict=True)
    for (k, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    # and back the other way
    fresh = nn.Conv2d(*c["args"], groups=c["args"][0], **c["kwargs"])
    fresh.load_state_dict(ours.state_dict(), strict=True)
    for (k, a), (_, b) in zip(fresh.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("name", list(MODULE_CONFIGS))
def test_outputs_and_grads_equal(name, layout):
    c = MODULE_CONFIGS[name]
    ours, ref = _pair_of_modules(*c["args"], **c["kwargs"], dtype=torch.float64)
    assert ours.weight.dtype == torch.float64
    x0 = make_input((2, c["args"][0], 9, 10), layout)
    outs, grads = [], []
    for m in (ours, ref):
        x = x0.detach().requires_grad_()
        y = m(x)
        g = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
        params = [x] + list(m.parameters())
        outs.append(y)
        grads.append(torch.autograd.grad(y, params, g))
    assert outs[0].shape == outs[1].shape
    assert outs[0].stride() == outs[1].stride()
    torch.testing.assert_close(outs[0], outs[1], **F64_TOL)
    for a, b in zip(*grads):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, **F64_TOL)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_unbatched_input(padding_mode):
    ours, ref = _pair_of_modules(3, 6, 3, padding=1, padding_mode=padding_mode, dtype=torch.float64)
    x = torch.randn(3, 8, 7, dtype=torch.float64)
    y, y_ref = ours(x), ref(x)
    assert y.shape == y_ref.shape == (6, 8, 7)
    torch.testing.assert_close(y, y_ref, **F64_TOL)


def test_module_float32_default_dtype():
    ours, ref = _pair_of_modules(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 12, 12)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_to_dtype_and_parameters_shared_semantics():
    ours, ref = _pair_of_modules(4, 4, 3, padding=1)
    ours = ours.double()
    ref = ref.double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), **F64_TOL)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]


def test_autocast_bfloat16_like_conv2d():
    ours, ref = _pair_of_modules(8, 16, 3, padding=1)
    torch.manual_seed(0)
    stem = nn.Conv2d(3, 8, 1)
    x = torch.randn(2, 3, 10, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = stem(x)  # bfloat16 under autocast
        y_ref = ref(h)
        y = ours(h)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("in_c,out_c", [(4, 6), (3, 4), (4, 2)])
def test_out_channels_not_multiple_raises(in_c, out_c):
    with pytest.raises(ValueError, match="out_channels must be divisible by groups"):
        DepthwiseConv2d(in_c, out_c, 3)


def test_is_exported():
    assert dsconv_ext.DepthwiseConv2d is DepthwiseConv2d
    assert issubclass(DepthwiseConv2d, nn.Conv2d)
