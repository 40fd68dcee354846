"""dsconv_ext.convert: which layers get swapped, what is preserved, and equal results on a small
custom model and on torchvision's mobilenet_v2 / convnext_tiny (random weights)."""
import copy

import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d
from _utils import F64_TOL


class ScaledConv(nn.Conv2d):
    """A subclass of nn.Conv2d with its own forward: convert must leave it alone."""

    def forward(self, x):
        return super().forward(x) * 0.5


class TwoPaths(nn.Module):
    def __init__(self, shared):
        super().__init__()
        self.left = nn.Sequential(shared, nn.ReLU())
        self.right = nn.Sequential(nn.Tanh(), shared)

    def forward(self, x):
        return self.left(x) + self.right(x)


def build_model():
    """Sequential nesting, a depthwise conv (multiplier 2), a grouped conv with groups < channels,
    normal convs, a Conv2d subclass, a depthwise conv shared by two parents, a depthwise conv
    with reflect padding and one without bias."""
    shared = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 0: normal conv
        nn.Sequential(  # 1
            nn.Conv2d(8, 16, 3, padding=1, groups=8),  # 1.0: depthwise, multiplier 2
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=4),  # 1.3: grouped, groups < channels
            nn.Conv2d(16, 8, 1),  # 1.4: pointwise
        ),
        TwoPaths(shared),  # 2: the shared depthwise conv, used twice
        ScaledConv(8, 8, 3, padding=1, groups=8),  # 3: subclass
        nn.Sequential(  # 4
            nn.Conv2d(8, 8, (3, 5), padding=(1, 2), groups=8, padding_mode="reflect"),  # 4.0: depthwise
            nn.Conv2d(8, 8, 2, padding="same", groups=8, bias=False),  # 4.1: depthwise, no bias
        ),
        nn.Conv2d(8, 8, 1, groups=1),  # 5: 1x1, groups=1
    )
    return model


CONVERTED = ["1.0", "2.left.0", "2.right.1", "4.0", "4.1"]
KEPT = {"0": nn.Conv2d, "1.3": nn.Conv2d, "1.4": nn.Conv2d, "3": ScaledConv, "5": nn.Conv2d}


def _module(model, path):
    return model.get_submodule(path)


@pytest.fixture
def models():
    torch.manual_seed(0)
    model = build_model().double()
    # Freeze one parameter and put one submodule in eval mode before converting.
    model[1][3].weight.requires_grad_(False)
    model[4][0].bias.requires_grad_(False)
    model[4].eval()
    original = copy.deepcopy(model)
    params_before = dict(model.named_parameters())
    flags_before = {n: m.training for n, m in model.named_modules()}
    keys_before = list(model.state_dict())
    converted = dsconv_ext.convert(model)
    assert converted is model  # in place
    return original, model, params_before, flags_before, keys_before


def test_which_layers_are_replaced(models):
    _, model, *_ = models
    for path in CONVERTED:
        assert type(_module(model, path)) is DepthwiseConv2d, path
    for path, cls in KEPT.items():
        assert type(_module(model, path)) is cls, path
    # The shared module stays shared: one DepthwiseConv2d object in both places.
    assert _module(model, "2.left.0") is _module(model, "2.right.1")


def test_parameters_identity_and_flags_preserved(models):
    _, model, params_before, flags_before, keys_before = models
    params_after = dict(model.named_parameters())
    assert list(params_after) == list(params_before)
    for name, p in params_before.items():
        assert params_after[name] is p, f"{name} is not the same Parameter object"
    assert model[1][0].weight is not None and model[4][1].bias is None
    assert params_after["4.0.bias"].requires_grad is False
    assert params_after["1.3.weight"].requires_grad is False
    assert params_after["4.0.weight"].requires_grad is True
    assert {n: m.training for n, m in model.named_modules()} == flags_before
    assert model[4][0].training is False and model[1][0].training is True
    assert list(model.state_dict()) == keys_before
    # attributes carried over
    conv = model[4][0]
    assert (conv.kernel_size, conv.padding, conv.padding_mode, conv.groups) == ((3, 5), (1, 2), "reflect", 8)


def test_outputs_and_grads_equal(models):
    original, model, *_ = models
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    for m in (original, model):
        m.eval()
    torch.testing.assert_close(model(x), original(x), **F64_TOL)
    # train mode (BatchNorm batch statistics), gradients of every parameter and the input
    grads = []
    for m in (original, model):
        m.train()
        xi = x.clone().requires_grad_()
        y = m(xi)
        params = [p for p in m.parameters() if p.requires_grad]
        grads.append(torch.autograd.grad((y * y.detach().sign()).sum(), [xi] + params))
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **F64_TOL)


def test_forward_hooks_and_state_dict_load_survive():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4).double()
    calls = []
    conv.register_forward_hook(lambda m, i, o: calls.append(type(m).__name__))
    model = nn.Sequential(conv)
    dsconv_ext.convert(model)
    model(torch.randn(1, 4, 5, 5, dtype=torch.float64))
    assert calls == ["DepthwiseConv2d"]
    # a state_dict saved from the unconverted architecture loads strictly
    ref = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4)).double()
    model.load_state_dict(ref.state_dict(), strict=True)
    assert torch.equal(model[0].weight, ref[0].weight)


def test_convert_top_level_module():
    conv = nn.Conv2d(6, 12, 3, padding=1, groups=6)
    new = dsconv_ext.convert(conv)
    assert type(new) is DepthwiseConv2d
    assert new.weight is conv.weight and new.bias is conv.bias
    x = torch.randn(1, 6, 7, 7)
    torch.testing.assert_close(new(x), conv(x))


def test_not_convertible_left_alone():
    model = nn.Sequential(
        nn.Conv2d(1, 1, 3),  # in_channels == groups == 1: an ordinary conv
        nn.Conv2d(1, 4, 3),
        nn.Conv2d(4, 8, 3, groups=2),
        nn.Conv1d(4, 4, 3, groups=4),
        nn.ConvTranspose2d(4, 4, 3, groups=4),
    )
    types = [type(m) for m in model]
    dsconv_ext.convert(model)
    assert [type(m) for m in model] == types


def test_module_list_and_dict_containers():
    model = nn.ModuleDict({"a": nn.ModuleList([nn.Conv2d(4, 4, 3, groups=4), nn.ReLU()]), "b": nn.Conv2d(4, 8, 1, groups=4)})
    dsconv_ext.convert(model)
    assert type(model["a"][0]) is DepthwiseConv2d
    assert type(model["b"]) is DepthwiseConv2d


def test_converted_model_deepcopy_and_save_load(tmp_path):
    torch.manual_seed(0)
    model = dsconv_ext.convert(build_model().double().eval())
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    expected = model(x)
    clone = copy.deepcopy(model)
    assert type(clone[1][0]) is DepthwiseConv2d
    assert clone.get_submodule("2.left.0") is clone.get_submodule("2.right.1")
    torch.testing.assert_close(clone(x), expected, rtol=0, atol=0)
    torch.save(model, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    assert type(loaded[4][1]) is DepthwiseConv2d
    torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


def test_hook_handle_from_before_convert_still_removes():
    conv = nn.Conv2d(4, 4, 3, groups=4)
    calls = []
    handle = conv.register_forward_hook(lambda *args: calls.append(1))
    model = dsconv_ext.convert(nn.Sequential(conv))
    handle.remove()
    model(torch.randn(1, 4, 5, 5))
    assert calls == []


def test_shared_module_twice_in_same_parent():
    shared = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    dsconv_ext.convert(model)
    assert type(model[0]) is DepthwiseConv2d
    assert type(model[2]) is DepthwiseConv2d, f"model[2] is still {type(model[2]).__name__}"
    assert model[0] is model[2]


# ---------------------------------------------------------------------------------------------
# torchvision models (random weights; nothing is downloaded)

tv_models = pytest.importorskip("torchvision.models")


def _count_convertible(model):
    from dsconv_ext.convert import is_convertible

    return sum(1 for m in model.modules() if is_convertible(m))


def _check_model(original, x, train_input):
    n_convertible = _count_convertible(original)
    model = copy.deepcopy(original)
    dsconv_ext.convert(model)
    n_converted = sum(1 for m in model.modules() if type(m) is DepthwiseConv2d)
    assert n_converted > 0
    assert n_converted == n_convertible
    assert _count_convertible(model) == 0
    assert list(model.state_dict()) == list(original.state_dict())

    original.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), **F64_TOL)

    original.train()
    model.train()
    grads = []
    for m in (original, model):
        torch.manual_seed(7)  # identical stochastic-depth draws in both
        out = m(train_input)
        loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum()
        names, params = zip(*[(n, p) for n, p in m.named_parameters() if p.requires_grad])
        grads.append(dict(zip(names, torch.autograd.grad(loss, params))))
    assert list(grads[0]) == list(grads[1])
    # float64 rounding, relative to the largest gradient (BatchNorm in train mode amplifies it).
    scale = max(1.0, max(g.abs().max().item() for g in grads[0].values()))
    for name in grads[0]:
        torch.testing.assert_close(
            grads[1][name], grads[0][name], rtol=1e-9, atol=1e-11 * scale, msg=lambda m: f"{name}: {m}"
        )
    # BatchNorm running statistics saw the same batch statistics
    for (k, a), (_, b) in zip(model.state_dict().items(), original.state_dict().items()):
        torch.testing.assert_close(a, b, **F64_TOL, msg=lambda m: f"{k}: {m}")


@pytest.mark.slow
def test_mobilenet_v2():
    torch.manual_seed(0)
    original = tv_models.mobilenet_v2(weights=None, num_classes=10).double()
    # 64x64 keeps a 2x2 map at the last BatchNorm: smaller inputs make train-mode BN ill-conditioned.
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    _check_model(original, x, x)


@pytest.mark.slow
def test_convnext_tiny():
    torch.manual_seed(0)
    original = tv_models.convnext_tiny(weights=None, num_classes=10).double()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    _check_model(original, x, x)
