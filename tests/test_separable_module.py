"""DepthwiseSeparableConv2d (train: plain modules, eval: BN folded + fused op), FusedSeparableConv2d
and fuse() on torchvision's mobilenet_v2 and a MobileNetV1-style nn.Sequential."""
import copy

import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseSeparableConv2d, FusedSeparableConv2d


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


ACT_MODULES = {None: nn.Identity, "relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hardswish": nn.Hardswish, "gelu": nn.GELU}


def randomize_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)


def plain_block(cin, cout, k, stride, padding, dilation, bias, norm, act, pw_act):
    """The same block from stock PyTorch modules, with the same state_dict keys."""
    from collections import OrderedDict

    return nn.Sequential(
        OrderedDict(
            dw=nn.Conv2d(cin, cin, k, stride, padding, dilation, groups=cin, bias=bias),
            dw_bn=nn.BatchNorm2d(cin) if norm else nn.Identity(),
            dw_act=ACT_MODULES[act](),
            pw=nn.Conv2d(cin, cout, 1, bias=bias),
            pw_bn=nn.BatchNorm2d(cout) if norm else nn.Identity(),
            pw_act=ACT_MODULES[pw_act](),
        )
    )


def test_state_dict_keys_and_defaults():
    m = DepthwiseSeparableConv2d(8, 16)
    assert set(m.state_dict()) == {
        "dw.weight", "dw_bn.weight", "dw_bn.bias", "dw_bn.running_mean", "dw_bn.running_var",
        "dw_bn.num_batches_tracked", "pw.weight", "pw_bn.weight", "pw_bn.bias", "pw_bn.running_mean",
        "pw_bn.running_var", "pw_bn.num_batches_tracked",
    }
    assert m.dw.padding == (1, 1) and m.dw.groups == 8 and m.pw.kernel_size == (1, 1)
    m2 = DepthwiseSeparableConv2d(8, 16, kernel_size=5, dilation=2, bias=True, norm=False)
    assert set(m2.state_dict()) == {"dw.weight", "dw.bias", "pw.weight", "pw.bias"}
    assert m2.dw.padding == (4, 4)
    with pytest.raises(ValueError, match="unknown activation"):
        DepthwiseSeparableConv2d(8, 16, activation="tanh")


@pytest.mark.parametrize(
    "k,stride,padding,dilation,bias,norm,act,pw_act,cl",
    [
        (3, 1, None, 1, False, True, "relu", "relu", False),
        (3, 2, None, 1, False, True, "relu6", None, True),
        (5, 1, "same", 2, True, True, "silu", "hardswish", False),
        (3, 1, 0, 1, True, False, "gelu", "silu", True),
        (7, 2, 3, 1, False, True, "hardswish", "gelu", False),
    ],
)
def test_train_and_eval_match_plain_pytorch(k, stride, padding, dilation, bias, norm, act, pw_act, cl):
    cin, cout = 12, 20
    m = DepthwiseSeparableConv2d(cin, cout, k, stride, padding, dilation, bias, norm, act, pw_act)
    ref = plain_block(cin, cout, k, stride, m.dw.padding, dilation, bias, norm, act, pw_act)
    randomize_bn(m)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, cin, 17, 15)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)

    # train mode: same outputs, gradients and BatchNorm statistics updates
    m.train()
    ref.train()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, out_ref = m(xa), ref(xb)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    for (n1, p1), (n2, p2) in zip(m.named_parameters(), ref.named_parameters()):
        assert n1 == n2
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-4, msg=n1)
    for (n1, b1), (n2, b2) in zip(m.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(b1, b2, msg=n1)

    # eval mode: BN folded, fused op
    m.eval()
    ref.eval()
    with torch.no_grad():
        out, out_ref = m(x), ref(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    assert out.stride() == out_ref.stride()
    fused = m.to_fused()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), out_ref, rtol=1e-4, atol=1e-5)


def test_eval_uses_current_parameters_and_backprops():
    m = DepthwiseSeparableConv2d(6, 10, activation="silu", pw_activation=None).eval()
    randomize_bn(m)
    x = torch.randn(2, 6, 9, 9)
    before = m(x)
    with torch.no_grad():
        m.dw.weight.mul_(2)
        m.pw_bn.running_mean.add_(1)
    after = m(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, m.forward_unfused(x), rtol=1e-4, atol=1e-5)
    after.sum().backward()  # gradients flow through the folding to the conv / BN parameters
    assert m.dw.weight.grad is not None and m.pw_bn.weight.grad is not None


def test_fused_module_is_inference_only():
    m = DepthwiseSeparableConv2d(4, 8).eval()
    f = m.to_fused()
    assert not f.training
    f.train()
    with pytest.raises(RuntimeError, match="inference-only"):
        f(torch.randn(1, 4, 5, 5))
    assert set(f.state_dict()) == {"dw_weight", "dw_bias", "pw_weight", "pw_bias"}


# --- fuse() ----------------------------------------------------------------------------------------
def mobilenet_v1_like():
    def conv_bn(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def conv_dw(cin, cout, stride):
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    return nn.Sequential(
        conv_bn(3, 16, 2), conv_dw(16, 32, 1), conv_dw(32, 64, 2), conv_dw(64, 64, 1),
        # a flat chain directly in the outer Sequential
        nn.Conv2d(64, 64, 3, 1, 1, groups=64), nn.BatchNorm2d(64), nn.ReLU6(), nn.Conv2d(64, 96, 1), nn.BatchNorm2d(96),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10),
    )


def count_fused(model):
    return sum(isinstance(m, FusedSeparableConv2d) for m in model.modules())


@pytest.mark.parametrize("cl", [False, True])
def test_fuse_mobilenet_v1_like(cl):
    model = mobilenet_v1_like()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
        fused = dsconv_ext.fuse(copy.deepcopy(model))
        out = fused(x)
    assert count_fused(fused) == 4
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_fuse_mobilenet_v2():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(weights=None)
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        fused = dsconv_ext.fuse(copy.deepcopy(model))
        out = fused(x)
        out_cl = fused(x.contiguous(memory_format=torch.channels_last))
    assert count_fused(fused) == 17  # every InvertedResidual's dw -> BN -> ReLU6 -> pw -> BN
    assert not any(isinstance(m, nn.BatchNorm2d) for blk in fused.features[1:18] for m in blk.conv[-1:].modules())
    scale = ref.abs().max()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * scale)
    torch.testing.assert_close(out_cl, ref, rtol=1e-4, atol=1e-4 * scale)


def test_fuse_leaves_other_modules_alone():
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1, groups=8), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 1),  # multiplier 2
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.Conv2d(16, 8, 1, stride=2),  # strided pw
        nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect"), nn.Conv2d(8, 8, 1),  # reflect padding
    ).eval()
    before = [type(m) for m in model]
    assert dsconv_ext.fuse(model) is model
    assert [type(m) for m in model] == before
    with pytest.raises(ValueError, match="call model.eval"):
        dsconv_ext.fuse(nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 4, 1)))


def test_fuse_skips_chain_ending_inside_a_nested_sequential():
    inner = nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.Conv2d(6, 6, 3, padding=1))
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4), inner).eval()
    randomize_bn(model)
    x = torch.randn(1, 4, 8, 8)
    ref = model(x)
    dsconv_ext.fuse(model)
    assert count_fused(model) == 0
    torch.testing.assert_close(model(x), ref)
