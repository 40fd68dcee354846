"""Converted models behave as ordinary nn.Modules: pickle, torch.save / torch.load (whole module and
state_dict, weights_only), copy.deepcopy, .to(dtype), .to(memory_format=channels_last),
state_dict round trips to and from the unconverted model, and torch.jit.trace."""
import copy
import io
import pickle

import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d

tv_models = pytest.importorskip("torchvision.models")


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8, bias=False),  # multiplier 2
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, (3, 5), padding=(1, 2), groups=16, padding_mode="reflect"),
        nn.Conv2d(16, 16, 2, padding="same", groups=16),
        nn.Conv2d(16, 8, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


N_DW = 3


def _pair():
    """(pure PyTorch model, converted deep copy), in eval mode with non-trivial BN statistics."""
    torch.manual_seed(0)
    ref = _net()
    with torch.no_grad():  # a train-mode pass so running statistics aren't the defaults
        ref(torch.randn(8, 3, 12, 12))
    ref.eval()
    ours = dsconv_ext.convert(copy.deepcopy(ref))
    assert _n_dw(ours) == N_DW
    return ref, ours


def _n_dw(model):
    return sum(type(m) is DepthwiseConv2d for m in model.modules())


def _x(dtype=torch.float32):
    return torch.randn(2, 3, 12, 11, generator=torch.Generator().manual_seed(5)).to(dtype)


def _assert_same_model(a, b, x=None, exact=True):
    x = _x() if x is None else x
    with torch.no_grad():
        ya, yb = a(x), b(x)
    if exact:
        assert torch.equal(ya, yb)
    else:
        torch.testing.assert_close(ya, yb)


def test_pickle_roundtrip():
    ref, ours = _pair()
    loaded = pickle.loads(pickle.dumps(ours))
    assert _n_dw(loaded) == N_DW
    assert type(loaded[3]) is DepthwiseConv2d and loaded[3].groups == 8
    _assert_same_model(loaded, ours)
    _assert_same_model(loaded, ref, exact=False)


def test_torch_save_load_whole_module(tmp_path):
    ref, ours = _pair()
    torch.save(ours, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert _n_dw(loaded) == N_DW
    _assert_same_model(loaded, ours)


def test_torch_save_load_whole_module_weights_only(tmp_path):
    """weights_only=True loading of a pickled module needs its classes allowed, dsconv's too."""
    _, ours = _pair()
    torch.save(ours, tmp_path / "model.pt")
    allowed = {type(m) for m in ours.modules()} | {torch.nn.modules.container.Sequential}
    with torch.serialization.safe_globals(sorted(allowed, key=str)):
        try:
            loaded = torch.load(tmp_path / "model.pt", weights_only=True)
        except pickle.UnpicklingError as e:  # something else of nn.Module's is not allowlisted
            pytest.skip(f"weights_only can't load this nn.Module here: {str(e).splitlines()[0]}")
    _assert_same_model(loaded, ours)


@pytest.mark.parametrize("direction", ["ours_to_ref", "ref_to_ours"])
def test_state_dict_roundtrip(direction, tmp_path):
    """state_dicts are interchangeable between the converted and the pure PyTorch model (same
    keys), and load with weights_only=True."""
    ref, ours = _pair()
    assert list(ours.state_dict()) == list(ref.state_dict())
    src, make_dst = (ours, _net) if direction == "ours_to_ref" else (ref, lambda: dsconv_ext.convert(_net()))
    torch.save(src.state_dict(), tmp_path / "sd.pt")
    torch.manual_seed(123)  # a differently initialised destination
    dst = make_dst().eval()
    result = dst.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    assert not result.missing_keys and not result.unexpected_keys
    for (k, a), (_, b) in zip(dst.state_dict().items(), src.state_dict().items()):
        assert torch.equal(a, b), k
    _assert_same_model(dst, src, exact=False)


def test_mobilenet_v2_state_dict_roundtrip():
    torch.manual_seed(0)
    ref = tv_models.mobilenet_v2(weights=None, num_classes=10).eval()
    ours = dsconv_ext.convert(tv_models.mobilenet_v2(weights=None, num_classes=10)).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 32, 32)
    _assert_same_model(ours, ref, x, exact=False)
    buf = io.BytesIO()
    torch.save(ours.state_dict(), buf)
    buf.seek(0)
    again = dsconv_ext.convert(tv_models.mobilenet_v2(weights=None, num_classes=10)).eval()
    again.load_state_dict(torch.load(buf, weights_only=True))
    _assert_same_model(again, ours, x)


def test_deepcopy():
    ref, ours = _pair()
    clone = copy.deepcopy(ours)
    assert _n_dw(clone) == N_DW
    _assert_same_model(clone, ours)
    # independent parameters: training the copy leaves the original alone
    for p, q in zip(clone.parameters(), ours.parameters()):
        assert p is not q and p.data_ptr() != q.data_ptr()
    before = copy.deepcopy(ours.state_dict())
    clone.train()
    opt = torch.optim.SGD(clone.parameters(), lr=0.1)
    clone(_x()).sum().backward()
    opt.step()
    for k, v in ours.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in clone.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16], ids=["float64", "bfloat16"])
def test_to_dtype(dtype):
    ref, ours = _pair()
    ours = ours.to(dtype=dtype)
    ref = ref.to(dtype=dtype)
    assert all(p.dtype == dtype for p in ours.parameters())
    assert _n_dw(ours) == N_DW
    x = _x(dtype)
    with torch.no_grad():
        y, r = ours(x), ref(x)
    assert y.dtype == dtype
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(y, r, **tol)
    # and the layers' own gradients in that dtype
    for m in (ours, ref):
        m.zero_grad()
        m(x).float().square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert p.grad.dtype == dtype
        if dtype == torch.float64:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("input_layout", ["cl", "nchw"])
def test_to_channels_last(input_layout):
    ref, ours = _pair()
    ours = ours.to(memory_format=torch.channels_last)
    ref = ref.to(memory_format=torch.channels_last)
    for m in ours.modules():
        if type(m) is DepthwiseConv2d:
            assert m.weight.is_contiguous(memory_format=torch.channels_last)
    x = _x()
    if input_layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    # every depthwise layer's output has nn.Conv2d's layout (channels_last for channels_last
    # input or weight) and values
    outs = {}
    for name, m in ((n, m) for n, m in ours.named_modules() if type(m) is DepthwiseConv2d):
        m.register_forward_hook(lambda mod, i, o, name=name: outs.__setitem__(name, (i[0], o)))
    with torch.no_grad():
        y, r = ours(x), ref(x)
        torch.testing.assert_close(y, r)
        assert len(outs) == N_DW
        for name, (inp, out) in outs.items():
            layer = ref.get_submodule(name)
            expected = layer(inp)
            assert out.is_contiguous(memory_format=torch.channels_last), name
            assert out.stride() == expected.stride(), name
            torch.testing.assert_close(out, expected, msg=lambda m: f"{name}: {m}")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_jit_trace():
    """torch.jit.trace records the dsconv op (registered with TorchScript by the extension)."""
    _, ours = _pair()
    x = _x()
    with torch.no_grad():
        traced = torch.jit.trace(ours, (x,))
    assert "dsconv::depthwise_conv2d" in str(traced.inlined_graph)
    y = _x() * 2
    with torch.no_grad():
        torch.testing.assert_close(traced(y), ours(y))
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    with torch.no_grad():
        torch.testing.assert_close(loaded(y), ours(y))


@pytest.mark.skipif(not hasattr(dsconv_ext, "DepthwiseSeparableConv2d"), reason="no DepthwiseSeparableConv2d")
@pytest.mark.parametrize("fused", [False, True], ids=["separable", "fused"])
def test_separable_and_fused_modules(fused, tmp_path):
    """pickle, torch.save/load, deepcopy, state_dict, .double() and channels_last of
    DepthwiseSeparableConv2d (eval mode: fused op) and FusedSeparableConv2d models."""
    torch.manual_seed(0)
    S = dsconv_ext.DepthwiseSeparableConv2d
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), S(8, 16), S(16, 16, stride=2, pw_activation=None))
    with torch.no_grad():
        model(torch.randn(8, 3, 10, 10))
    model.eval()
    if fused:
        model = nn.Sequential(*[m.to_fused() if isinstance(m, S) else m for m in model]).eval()
        assert sum(type(m).__name__ == "FusedSeparableConv2d" for m in model.modules()) == 2
    x = torch.randn(2, 3, 10, 10)
    torch.save(model, tmp_path / "m.pt")
    for other in (
        pickle.loads(pickle.dumps(model)),
        copy.deepcopy(model),
        torch.load(tmp_path / "m.pt", weights_only=False),
    ):
        _assert_same_model(other, model, x)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    again = copy.deepcopy(model)
    for t in again.state_dict().values():
        if t.is_floating_point():
            t.data.normal_()
    again.load_state_dict(torch.load(tmp_path / "sd.pt", weights_only=True))
    _assert_same_model(again, model, x)
    with torch.no_grad():
        ref = model(x)
        y64 = copy.deepcopy(model).double()(x.double())
        assert y64.dtype == torch.float64
        torch.testing.assert_close(y64.float(), ref, rtol=1e-4, atol=1e-5)
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        ycl = cl(x.contiguous(memory_format=torch.channels_last))
        assert ycl.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(ycl, ref, rtol=1e-5, atol=1e-5)
