"""torch.use_deterministic_algorithms(True): the dsconv ops raise nothing under it, and forward,
backward and double backward give bitwise identical results run after run, and (CPU) whatever
torch.set_num_threads says (every reduction has a fixed order; no atomics)."""
import copy

import pytest
import torch
from torch import nn

import dsconv_ext

DTYPES = [torch.float32, torch.float64, torch.bfloat16]


@pytest.fixture(autouse=True)
def deterministic():
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(was, warn_only=warn_only)


def _fwd_bwd(x, w, b, g, **conv):
    x, w, b = (t.detach().clone().requires_grad_() for t in (x, w, b))
    y = dsconv_ext.depthwise_conv2d(x, w, b, **conv)
    grads = torch.autograd.grad(y, (x, w, b), g, create_graph=True)
    # double backward: differentiate a scalar of the first-order gradients again (the bias
    # gradient doesn't depend on x, w or b, so only x and w get second-order gradients)
    gg = torch.autograd.grad(sum((t * t).sum() for t in grads), (x, w))
    return [y.detach()] + [t.detach() for t in grads] + list(gg)


def _args(layout, dtype, device="cpu"):
    # sizes with many (n, channel) planes and rows, so several threads get work
    x = torch.randn(4, 16, 33, 31, dtype=dtype, device=device)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(32, 1, 5, 3, dtype=dtype, device=device)
    b = torch.randn(32, dtype=dtype, device=device)
    y = dsconv_ext.depthwise_conv2d(x, w, b, stride=(2, 1), padding=(2, 1), dilation=(1, 2))
    g = torch.randn(y.shape, dtype=dtype, device=device)
    if layout == "cl":
        g = g.contiguous(memory_format=torch.channels_last)
    return x, w, b, g


CONV = dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2))


def _assert_bitwise(a, b):
    for i, (s, t) in enumerate(zip(a, b)):
        assert s.dtype == t.dtype and s.shape == t.shape
        assert torch.equal(s, t), f"result {i} differs: max {(s.double() - t.double()).abs().max().item()}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_repeatable_and_thread_independent_cpu(layout, dtype):
    x, w, b, g = _args(layout, dtype)
    torch.set_num_threads(2)  # restored by conftest's autouse fixture
    first = _fwd_bwd(x, w, b, g, **CONV)
    _assert_bitwise(first, _fwd_bwd(x, w, b, g, **CONV))
    for threads in (1, 3):
        torch.set_num_threads(threads)
        _assert_bitwise(first, _fwd_bwd(x, w, b, g, **CONV))


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, padding_mode="reflect"),
        nn.Conv2d(16, 8, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


def _train(model, device="cpu"):
    torch.manual_seed(3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(3):
        x = torch.randn(6, 3, 20, 20, device=device)
        y = torch.randint(0, 3, (6,), device=device)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses), model.state_dict()


def test_converted_model_training_repeatable_cpu():
    torch.manual_seed(0)
    model = dsconv_ext.convert(_net())
    assert sum(type(m) is dsconv_ext.DepthwiseConv2d for m in model.modules()) == 2
    losses_a, state_a = _train(copy.deepcopy(model))
    losses_b, state_b = _train(copy.deepcopy(model))
    assert torch.equal(losses_a, losses_b)
    for k in state_a:
        assert torch.equal(state_a[k], state_b[k]), k


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_repeatable_cuda(layout, dtype):
    if not dsconv_ext.has_kernel(torch.device("cuda")):
        pytest.skip("dsconv_ext was built without its CUDA kernels")
    x, w, b, g = _args(layout, dtype, "cuda")
    first = _fwd_bwd(x, w, b, g, **CONV)
    for _ in range(2):
        _assert_bitwise(first, _fwd_bwd(x, w, b, g, **CONV))
