"""torch.compile of converted models: no graph breaks (fullgraph=True, torch._dynamo.explain), and
forward outputs, parameter gradients and BatchNorm running statistics equal to eager.

mobilenet_v2 runs under backend="aot_eager" (the full dynamo + AOTAutograd capture of forward and
backward, without inductor's C++ code generation, which takes minutes for the whole network on
two cores); inductor runs on a small MobileNet-style network instead.
"""
import copy

import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d

tv_models = pytest.importorskip("torchvision.models")

# aot_eager runs the very same kernels as eager; only float64 summation order can differ.
TOL = dict(rtol=1e-9, atol=1e-9)


def _small_net():
    """Stem conv, two depthwise-separable blocks (one strided, one with multiplier 2), pool, linear."""
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
        nn.Conv2d(16, 32, 3, padding=1, groups=16),
        nn.ReLU(),
        nn.Conv2d(32, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def _train_step_outputs(module, forward, x):
    """Output of forward(x) (module itself, or compiled), module's parameter gradients and buffers
    after one train-mode forward/backward."""
    out = forward(x)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum()
    names, params = zip(*module.named_parameters())
    grads = dict(zip(names, torch.autograd.grad(loss, params)))
    return out.detach(), grads, {k: v.clone() for k, v in module.named_buffers()}


def _assert_same(compiled_result, eager_result):
    (out_c, grads_c, bufs_c), (out_e, grads_e, bufs_e) = compiled_result, eager_result
    torch.testing.assert_close(out_c, out_e, **TOL)
    assert list(grads_c) == list(grads_e)
    scale = max(1.0, max(g.abs().max().item() for g in grads_e.values()))
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-8, atol=1e-10 * scale, msg=lambda m: f"{name}: {m}")
    for name in bufs_e:
        torch.testing.assert_close(bufs_c[name], bufs_e[name], **TOL, msg=lambda m: f"{name}: {m}")


def test_explain_no_graph_breaks():
    torch._dynamo.reset()
    model = dsconv_ext.convert(_small_net()).eval()
    assert sum(type(m) is DepthwiseConv2d for m in model.modules()) == 2
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 12, 12))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    # the dsconv op is in the captured graph (not run eagerly behind a break)
    targets = {str(n.target) for g in explanation.graphs for n in g.graph.nodes if n.op == "call_function"}
    assert any("dsconv" in t for t in targets), targets


@pytest.mark.slow
def test_mobilenet_v2_fullgraph_aot_eager_train_step():
    """fullgraph=True (a graph break raises) of converted mobilenet_v2 in train mode: forward,
    gradients of every parameter and BatchNorm running statistics equal eager's."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    # no dropout: compiled and eager code draw its random masks differently
    eager = dsconv_ext.convert(tv_models.mobilenet_v2(weights=None, num_classes=10, dropout=0.0).double())
    assert sum(type(m) is DepthwiseConv2d for m in eager.modules()) == 17
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    # 64x64 keeps a 2x2 map at the last BatchNorm (smaller makes train-mode BN ill-conditioned)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    _assert_same(_train_step_outputs(model, compiled, x), _train_step_outputs(eager, eager, x))
    # eval mode (running statistics) recompiles without a break and still agrees
    model.eval()
    eager.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), **TOL)


@pytest.mark.slow
def test_small_net_fullgraph_inductor_train_step():
    """The default inductor backend, which generates code around the dsconv op (an extern
    kernel), on a small train-mode network with channels_last input."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = dsconv_ext.convert(_small_net().double())
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    _assert_same(_train_step_outputs(model, compiled, x), _train_step_outputs(eager, eager, x))


def test_compiled_training_matches_eager():
    """A few SGD steps through a compiled (aot_eager) converted model end at eager's parameters."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = dsconv_ext.convert(_small_net().double())
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    for m, fwd in ((eager, eager), (model, compiled)):
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(fwd(x), y).backward()
            opt.step()
    for (name, a), (_, b) in zip(model.state_dict().items(), eager.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.skipif(not hasattr(dsconv_ext, "DepthwiseSeparableConv2d"), reason="no DepthwiseSeparableConv2d")
def test_separable_blocks_fullgraph_train_and_eval():
    """DepthwiseSeparableConv2d: train mode (its submodules) and eval mode (BatchNorm folded on the
    fly, fused op), and its FusedSeparableConv2d form, compile without graph breaks and match eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    S = dsconv_ext.DepthwiseSeparableConv2d
    eager = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        S(8, 16),
        S(16, 16, 5, stride=2, activation="relu6", pw_activation=None),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    ).double()
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64)
    _assert_same(_train_step_outputs(model, compiled, x), _train_step_outputs(eager, eager, x))
    model.eval()
    eager.eval()
    _assert_same(_train_step_outputs(model, compiled, x), _train_step_outputs(eager, eager, x))
    fused = nn.Sequential(*[m.to_fused() if isinstance(m, S) else m for m in eager]).eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(fused, fullgraph=True, backend="aot_eager")(x), eager(x), **TOL)
