"""torch.export.export of converted models: the exported graph calls the dsconv op (not a
decomposition of it), runs with eager's results, survives run_decompositions, save/load and a
dynamic batch dimension; strict (dynamo) capture agrees with the default non-strict one."""
import io
from collections import Counter

import pytest
import torch
from torch import nn

import dsconv_ext

tv_models = pytest.importorskip("torchvision.models")

DSCONV = "dsconv.depthwise_conv2d.default"


def _ops(ep):
    return Counter(str(n.target) for n in ep.graph.nodes if n.op == "call_function")


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8),  # multiplier 2, strided
        nn.Conv2d(16, 16, (2, 3), padding="same", dilation=(2, 1), groups=16, bias=False),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, padding_mode="reflect"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return dsconv_ext.convert(tv_models.mobilenet_v2(weights=None, num_classes=10)).eval()


def test_export_mobilenet_v2(mobilenet):
    x = torch.randn(2, 3, 32, 32)
    ep = torch.export.export(mobilenet, (x,))
    ops = _ops(ep)
    assert ops[DSCONV] == 17, ops
    # the 35 standard / pointwise convolutions stay aten convolutions, no depthwise one is left
    convs = [n for n in ep.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert len(convs) == 35
    assert all((n.args[6] if len(n.args) > 6 else 1) == 1 for n in convs)
    with torch.no_grad():
        for x in (x, torch.randn(2, 3, 32, 32) * 3):
            torch.testing.assert_close(ep.module()(x), mobilenet(x), rtol=0, atol=0)


@pytest.mark.parametrize("strict", [False, True], ids=["nonstrict", "strict"])
def test_export_small_net(strict):
    model = dsconv_ext.convert(_net()).eval()
    x = torch.randn(2, 3, 11, 10)
    ep = torch.export.export(model, (x,), strict=strict)
    assert _ops(ep)[DSCONV] == 3
    y = torch.randn(2, 3, 11, 10)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(y), model(y))


def test_export_run_decompositions_keeps_op():
    """The core-ATen decomposition (what edge / AOTInductor lowering starts from) keeps the op."""
    model = dsconv_ext.convert(_net()).eval()
    x = torch.randn(1, 3, 9, 9)
    ep = torch.export.export(model, (x,)).run_decompositions()
    assert _ops(ep)[DSCONV] == 3
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), model(x))


def test_export_save_load_roundtrip():
    model = dsconv_ext.convert(_net()).eval()
    x = torch.randn(2, 3, 8, 8)
    ep = torch.export.export(model, (x,))
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    assert _ops(loaded)[DSCONV] == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded.module()(x), model(x), rtol=0, atol=0)


def test_export_dynamic_batch_and_size():
    model = dsconv_ext.convert(_net()).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    h = torch.export.Dim("h", min=8, max=64)
    ep = torch.export.export(model, (torch.randn(2, 3, 12, 12),), dynamic_shapes=({0: batch, 2: h},))
    assert _ops(ep)[DSCONV] == 3
    for n, hh in [(1, 8), (5, 12), (3, 17)]:
        x = torch.randn(n, 3, hh, 12)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), model(x))


def test_export_train_mode_backward():
    """An exported training graph (export_for_training is the default IR now): the module it
    returns is differentiable through the dsconv op with eager's gradients."""
    torch.manual_seed(0)
    model = dsconv_ext.convert(_net().double())
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    ep = torch.export.export(model, (x,))
    assert _ops(ep)[DSCONV] == 3
    exported = ep.module()
    for m in (model, exported):
        m.zero_grad()
        m(x).square().sum().backward()
    ref = dict(model.named_parameters())
    for name, p in exported.named_parameters():
        torch.testing.assert_close(p.grad, ref[name].grad, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not hasattr(dsconv_ext, "DepthwiseSeparableConv2d"), reason="no DepthwiseSeparableConv2d")
def test_export_separable_eval_and_fused():
    """Eval-mode DepthwiseSeparableConv2d and FusedSeparableConv2d export as the fused dsconv op."""
    torch.manual_seed(0)
    S = dsconv_ext.DepthwiseSeparableConv2d
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), S(8, 16), S(16, 16, stride=2, pw_activation=None))
    with torch.no_grad():
        model(torch.randn(8, 3, 10, 10))
    model.eval()
    x = torch.randn(2, 3, 10, 10)
    fused = nn.Sequential(*[m.to_fused() if isinstance(m, S) else m for m in model]).eval()
    for m in (model, fused):
        ep = torch.export.export(m, (x,))
        assert _ops(ep)["dsconv.separable_conv2d.default"] == 2, _ops(ep)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(x), model(x))
