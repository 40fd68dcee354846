"""torch.onnx.export of converted models: standard ONNX Conv nodes (group = channels for the
depthwise layers, no custom domain or op), onnxruntime runs the file with eager's results.

The plain call ``torch.onnx.export(converted_model, (x,), f)`` works because
dsconv_ext.depthwise_conv2d calls F.conv2d(groups=C) while torch.onnx.is_in_onnx_export() is
true (both the dynamo exporter, torch 2.14's default, and the TorchScript one, dynamo=False). An
ExportedProgram that already holds dsconv ops needs them decomposed first (last test).
"""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsconv_ext

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # the dynamo exporter (torch.onnx.export default) needs it
tv_models = pytest.importorskip("torchvision.models")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


class FunctionalNet(nn.Module):
    """Calls dsconv_ext.depthwise_conv2d directly: padding="same" with an even kernel and dilation
    (asymmetric padding, exported as Pad + Conv)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 1, 2, 4))
        self.b = nn.Parameter(torch.randn(6))

    def forward(self, x):
        return dsconv_ext.depthwise_conv2d(x, self.w, self.b, padding="same", dilation=(1, 2)).relu()


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8),  # multiplier 2, strided
        nn.Conv2d(16, 16, (2, 3), padding="same", dilation=(2, 1), groups=16, bias=False),  # asymmetric pad
        nn.Conv2d(16, 16, 3, padding=1, groups=16, padding_mode="reflect"),
        nn.Conv2d(16, 16, 5, padding=(2, 1), stride=(1, 2), groups=16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def _export(model, x, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), **kwargs)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    return proto


def _conv_groups(proto):
    """group attribute of every Conv node (1 when absent), including inside local functions."""
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    out = []
    for n in nodes:
        if n.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            out.append(attrs.get("group", 1))
    return out


def _assert_standard_onnx(proto):
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    domains = {n.domain for n in nodes}
    assert domains <= {"", "ai.onnx"}, f"non-standard ONNX domains: {domains}"
    assert not any("dsconv" in n.op_type.lower() or "dsconv" in n.domain for n in nodes)
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx", "pkg.onnxscript.torch_lib.common"}


def _run_ort(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def _dsconv_ops_called(model, x):
    """Number of dsconv op calls in an eager forward (checks export leaves eager mode alone)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "dsconv":
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count(), torch.no_grad():
        model(x)
    return Count.n


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return dsconv_ext.convert(tv_models.mobilenet_v2(weights=None, num_classes=10)).eval()


def test_mobilenet_v2_default_exporter(mobilenet, tmp_path):
    """The plain call, with torch's default exporter."""
    x = torch.randn(2, 3, 32, 32)
    proto = _export(mobilenet, x, tmp_path / "m.onnx")
    _assert_standard_onnx(proto)
    groups = _conv_groups(proto)
    assert len(groups) == 52
    assert sorted(g for g in groups if g > 1) == sorted(
        m.in_channels for m in mobilenet.modules() if type(m) is dsconv_ext.DepthwiseConv2d
    )
    with torch.no_grad():
        ref = mobilenet(x)
    torch.testing.assert_close(_run_ort(tmp_path / "m.onnx", x), ref, rtol=1e-4, atol=1e-5)
    # eager forward still runs the dsconv kernels after the export
    assert _dsconv_ops_called(mobilenet, x) == 17


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_small_net_both_exporters(dynamo, tmp_path):
    torch.manual_seed(0)
    model = dsconv_ext.convert(_net()).eval()
    x = torch.randn(2, 3, 13, 11)
    proto = _export(model, x, tmp_path / "n.onnx", dynamo=dynamo)
    _assert_standard_onnx(proto)
    assert sorted(_conv_groups(proto)) == [1, 8, 16, 16, 16]
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(_run_ort(tmp_path / "n.onnx", x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_functional_call(dynamo, tmp_path):
    torch.manual_seed(0)
    model = FunctionalNet().eval()
    x = torch.randn(1, 6, 9, 10)
    proto = _export(model, x, tmp_path / "f.onnx", dynamo=dynamo)
    _assert_standard_onnx(proto)
    assert _conv_groups(proto) == [6]
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(_run_ort(tmp_path / "f.onnx", x), ref, rtol=1e-4, atol=1e-5)


def test_dynamic_batch(tmp_path):
    torch.manual_seed(0)
    model = dsconv_ext.convert(_net()).eval()
    x = torch.randn(2, 3, 16, 16)
    _export(model, x, tmp_path / "d.onnx", dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=32)},))
    for n in (1, 5):
        y = torch.randn(n, 3, 16, 16)
        with torch.no_grad():
            ref = model(y)
        torch.testing.assert_close(_run_ort(tmp_path / "d.onnx", y), ref, rtol=1e-4, atol=1e-5)


def _dsconv_as_conv(input, weight, bias, stride, padding, dilation):
    """dsconv::depthwise_conv2d as ATen ops (padding is top, bottom, left, right)."""
    top, bottom, left, right = padding
    if top != bottom or left != right:
        input = F.pad(input, [left, right, top, bottom])
        top = left = 0
    return torch.ops.aten.convolution(input, weight, bias, stride, [top, left], dilation, False, [0, 0], input.shape[1])


def test_exported_program_with_decomposition(tmp_path):
    """An ExportedProgram captured outside ONNX export contains dsconv ops; decomposing them
    (ExportedProgram.run_decompositions with a table entry) makes it exportable to ONNX."""
    torch.manual_seed(0)
    model = dsconv_ext.convert(_net()).eval()
    x = torch.randn(2, 3, 13, 11)
    ep = torch.export.export(model, (x,))
    assert any(n.target is torch.ops.dsconv.depthwise_conv2d.default for n in ep.graph.nodes)
    ep = ep.run_decompositions({torch.ops.dsconv.depthwise_conv2d.default: _dsconv_as_conv})
    assert not any(n.target is torch.ops.dsconv.depthwise_conv2d.default for n in ep.graph.nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ep, (x,), str(tmp_path / "e.onnx"))
    proto = onnx.load(str(tmp_path / "e.onnx"))
    _assert_standard_onnx(proto)
    assert sorted(_conv_groups(proto)) == [1, 8, 16, 16, 16]
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(_run_ort(tmp_path / "e.onnx", x), ref, rtol=1e-4, atol=1e-5)


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
        S(16, 24, 3, dilation=2, bias=True, activation="hardswish", pw_activation="silu"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 4),
    )


def _fusable_net():
    """A MobileNet v1 style stack that dsconv_ext.fuse() turns into FusedSeparableConv2d modules."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 8, 1, bias=False),
        nn.BatchNorm2d(8),
    )


def _with_bn_statistics(model, shape):
    with torch.no_grad():
        model.train()(torch.randn(*shape))
    return model.eval()


@needs_separable
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_separable_blocks_eval(dynamo, tmp_path):
    torch.manual_seed(0)
    model = _with_bn_statistics(_separable_net(), (8, 3, 12, 12))
    x = torch.randn(2, 3, 12, 12)
    proto = _export(model, x, tmp_path / "s.onnx", dynamo=dynamo)
    _assert_standard_onnx(proto)
    assert sorted(_conv_groups(proto)) == [1, 1, 1, 1, 8, 16, 16]
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(_run_ort(tmp_path / "s.onnx", x), ref, rtol=1e-4, atol=1e-5)


@needs_separable
def test_fused_model(tmp_path):
    torch.manual_seed(0)
    model = dsconv_ext.fuse(_with_bn_statistics(dsconv_ext.convert(_fusable_net()), (8, 3, 12, 12)))
    assert sum(type(m).__name__ == "FusedSeparableConv2d" for m in model.modules()) == 2
    x = torch.randn(2, 3, 12, 12)
    proto = _export(model, x, tmp_path / "fz.onnx")
    _assert_standard_onnx(proto)
    assert sorted(_conv_groups(proto)) == [1, 1, 1, 8, 16]
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(_run_ort(tmp_path / "fz.onnx", x), ref, rtol=1e-4, atol=1e-5)
