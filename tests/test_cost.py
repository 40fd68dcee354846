"""dsconv_ext.cost: closed-form layer costs checked by hand, and model_cost against the published
figures of MobileNetV1 (569M multiply-adds, 4.2M parameters) and torchvision's MobileNetV2
(300M, 3.50M)."""
import pytest
import torch
from torch import nn

from dsconv_ext import cost
from dsconv_ext.cost import Cost


def test_standard_conv_by_hand():
    # 3x3, 64 -> 128 on 56x56, stride 1, 'same': 64*128*9 weights, each used 56*56 times.
    c = cost.standard_cost(64, 128, 3, 56, 56)
    assert c == Cost(macs=64 * 128 * 9 * 56 * 56, params=64 * 128 * 9)
    assert c.flops == 2 * c.macs
    # bias adds parameters, not multiply-adds
    assert cost.standard_cost(64, 128, 3, 56, 56, bias=True) == Cost(c.macs, c.params + 128)


def test_depthwise_pointwise_by_hand():
    # 3x3 depthwise on 32x112x112, stride 2 -> 56x56
    assert cost.depthwise_cost(32, 3, 112, 112, stride=2) == Cost(macs=32 * 9 * 56 * 56, params=32 * 9)
    # channel multiplier 2: 64 filters of 3x3
    assert cost.depthwise_cost(32, 3, 14, 14, multiplier=2) == Cost(macs=64 * 9 * 14 * 14, params=64 * 9)
    # 1x1, 512 -> 1024 on 7x7
    assert cost.pointwise_cost(512, 1024, 7, 7) == Cost(macs=512 * 1024 * 49, params=512 * 1024)
    # dilation 2 with padding 2 keeps the size; 'valid' (padding 0) shrinks it by d*(k-1)
    assert cost.conv_cost(8, 8, 3, 10, 10, groups=8, dilation=2).macs == 8 * 9 * 100
    assert cost.conv_cost(8, 8, 3, 10, 10, groups=8, dilation=2, padding=0).macs == 8 * 9 * 36
    # non-square kernel and stride
    assert cost.conv_cost(4, 6, (1, 7), 20, 20, stride=(1, 2)).macs == 4 * 6 * 7 * 20 * 10


def test_separable_cost_and_ratio():
    sep = cost.separable_cost(256, 256, 3, 28, 28)
    std = cost.standard_cost(256, 256, 3, 28, 28)
    assert sep == cost.depthwise_cost(256, 3, 28, 28) + cost.pointwise_cost(256, 256, 28, 28)
    assert sep.macs / std.macs == pytest.approx(cost.separable_ratio(256, 3))
    assert cost.separable_ratio(256, 3) == pytest.approx(1 / 256 + 1 / 9)
    assert cost.separable_ratio(256, 3) == pytest.approx(0.115, abs=5e-4)
    assert 1 / cost.separable_ratio(256, 3) == pytest.approx(8.7, abs=0.05)
    # a strided separable layer runs its pointwise at the reduced size
    s2 = cost.separable_cost(64, 128, 3, 56, 56, stride=2)
    assert s2.macs == 64 * 9 * 28 * 28 + 64 * 128 * 28 * 28


def test_model_cost_counts_layers_and_shared_params():
    lin = nn.Linear(10, 10)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 16x16 -> 8x8
        nn.Conv2d(8, 8, 5, padding=4, dilation=2, groups=8, bias=False),  # depthwise, stays 8x8
        nn.Conv2d(8, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
        lin,
        lin,  # called twice: MACs twice, parameters once
    )
    model.train()
    c = cost.model_cost(model, (2, 3, 16, 16))
    per_sample = 8 * 27 * 64 + 8 * 25 * 64 + 16 * 8 * 64 + 16 * 10 + 2 * 100
    assert c.macs == 2 * per_sample
    assert c.params == (8 * 27 + 8) + 8 * 25 + 16 * 8 + (16 * 10 + 10) + (100 + 10)
    assert model.training  # the training flag is restored


def test_model_cost_counts_converted_depthwise_layers():
    import dsconv_ext

    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 4, 1))
    before = cost.model_cost(model, (1, 16, 8, 8))
    dsconv_ext.convert(model)
    assert type(model[0]) is dsconv_ext.DepthwiseConv2d
    assert cost.model_cost(model, (1, 16, 8, 8)) == before


def _mobilenet_v1(width: int = 32, num_classes: int = 1000) -> nn.Module:
    """MobileNetV1 (Howard et al. 2017, Table 1), width multiplier 1.0, from plain layers."""

    def conv_bn(c_in, c_out, k, stride, groups=1):
        return [
            nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]

    # (output channels, stride of the depthwise layer) of the 13 depthwise-separable blocks
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    layers = conv_bn(3, width, 3, 2)
    c = width
    for c_out, stride in blocks:
        layers += conv_bn(c, c, 3, stride, groups=c)  # depthwise 3x3
        layers += conv_bn(c, c_out, 1, 1)  # pointwise 1x1
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def test_mobilenet_v1_paper_figures():
    model = _mobilenet_v1()
    c = cost.model_cost(model, (1, 3, 224, 224))
    assert c.macs == pytest.approx(569e6, rel=0.01)
    assert c.params == pytest.approx(4.2e6, rel=0.01)


def test_mobilenet_v1_depthwise_share():
    """Table 2 of the paper: depthwise 3x3 layers are 3.06% of the multiply-adds, 1x1 are 94.86%."""
    model = _mobilenet_v1()
    shares = {"dw": 0, "pw": 0}

    def hook(m, _i, out):
        if m.groups > 1:
            shares["dw"] += out.numel() * 9
        elif m.kernel_size == (1, 1):
            shares["pw"] += out.numel() * m.in_channels

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    total = cost.model_cost(model, (1, 3, 224, 224)).macs
    assert shares["dw"] / total == pytest.approx(0.0306, abs=0.001)
    assert shares["pw"] / total == pytest.approx(0.9486, abs=0.001)


def test_torchvision_mobilenet_v2():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.mobilenet_v2(weights=None)
    c = cost.model_cost(model, (1, 3, 224, 224))
    assert c.macs == pytest.approx(300e6, rel=0.02)
    assert c.params == pytest.approx(3.50e6, rel=0.005)
    # MACs scale with the batch
    assert cost.model_cost(model, (2, 3, 64, 64)).macs == 2 * cost.model_cost(model, (1, 3, 64, 64)).macs


def test_model_cost_uses_the_models_dtype():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).to(torch.float64)
    assert cost.model_cost(model, (1, 3, 5, 5)).macs == 4 * 27 * 25


def _mobilenet_v1_from_package_blocks(width: int = 32, num_classes: int = 1000) -> nn.Module:
    """The same network built from dsconv_ext.DepthwiseSeparableConv2d blocks (DW-BN-ReLU-PW-BN-ReLU)."""
    import dsconv_ext

    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    layers = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    c = width
    for c_out, stride in blocks:
        layers.append(dsconv_ext.DepthwiseSeparableConv2d(c, c_out, 3, stride=stride))
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_mobilenet_v1_from_depthwise_separable_blocks(mode):
    """MobileNet paper: 569M multiply-adds and 4.2M parameters at 224x224, width 1.0 (eval mode
    runs the fused, BatchNorm-folded kernel: the count must not change)."""
    model = _mobilenet_v1_from_package_blocks()
    model.train(mode == "train")
    c = cost.model_cost(model, (1, 3, 224, 224))
    assert c.macs == pytest.approx(569e6, rel=0.01)
    assert c.params == pytest.approx(4.2e6, rel=0.01)
    plain = cost.model_cost(_mobilenet_v1(), (1, 3, 224, 224))
    assert (c.macs, c.params) == (plain.macs, plain.params)
