"""CUDA graphs: a converted model's forward (inference) and forward + backward + optimizer step
(training) captured with torch.cuda.graph replay with eager's results on new data. The dsconv
CUDA kernels must launch on the current stream and allocate through the caching allocator (no
synchronisation, no host-side allocation during capture). Skipped without a GPU."""
import copy

import pytest
import torch
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _needs_dsconv_cuda():
    if not dsconv_ext.has_kernel(torch.device("cuda")):
        pytest.skip("dsconv_ext was built without its CUDA kernels")


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 32, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU6(),
        nn.Conv2d(32, 64, 5, padding=2, groups=32),  # multiplier 2, with bias
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def _warmup(fn, n=3):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(n):
            fn()
    torch.cuda.current_stream().wait_stream(s)


@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_inference_capture_replay(layout):
    torch.manual_seed(0)
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    model = dsconv_ext.convert(_net()).cuda().eval().to(memory_format=fmt)
    assert sum(type(m) is DepthwiseConv2d for m in model.modules()) == 2
    static_x = torch.randn(8, 3, 32, 32, device="cuda").contiguous(memory_format=fmt)

    with torch.no_grad():
        _warmup(lambda: model(static_x))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static_x)

        for _ in range(3):
            x = torch.randn(8, 3, 32, 32, device="cuda").contiguous(memory_format=fmt)
            static_x.copy_(x)
            graph.replay()
            torch.testing.assert_close(static_out, model(x), rtol=1e-5, atol=1e-5)


def test_training_step_capture_replay():
    """Whole training step in one graph (the pattern from the CUDA graphs docs); the parameters
    after several replays equal those of an eager copy trained on the same batches."""
    torch.manual_seed(0)
    eager = dsconv_ext.convert(_net()).cuda()
    model = copy.deepcopy(eager)
    loss_fn = nn.CrossEntropyLoss()
    # SGD as in the CUDA graphs docs' whole-network example (its momentum buffers are created
    # by the warm-up steps, before capture)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    static_x = torch.randn(8, 3, 32, 32, device="cuda")
    static_y = torch.randint(0, 10, (8,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(static_x), static_y)
        loss.backward()
        opt.step()
        return loss

    # warm-up steps run eagerly on a side stream: replay them on the eager copy too
    batches = [(torch.randn(8, 3, 32, 32, device="cuda"), torch.randint(0, 10, (8,), device="cuda")) for _ in range(6)]

    def eager_step(x, y):
        opt_eager.zero_grad(set_to_none=True)
        loss = loss_fn(eager(x), y)
        loss.backward()
        opt_eager.step()
        return loss

    for x, y in batches[:3]:
        static_x.copy_(x)
        static_y.copy_(y)
        _warmup(step, n=1)
        eager_step(x, y)

    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = loss_fn(model(static_x), static_y)
        static_loss.backward()
        opt.step()

    for x, y in batches[3:]:
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        loss = eager_step(x, y)
        # same kernels, but cuDNN may pick other algorithms (TF32, other reduction orders)
        torch.testing.assert_close(static_loss, loss, rtol=1e-3, atol=1e-4)
    torch.cuda.synchronize()
    assert any(not torch.equal(p.grad, torch.zeros_like(p.grad)) for p in model.parameters())
    for (name, a), (_, b) in zip(model.state_dict().items(), eager.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=lambda m: f"{name}: {m}")


@pytest.mark.slow
def test_compile_reduce_overhead():
    """torch.compile(mode='reduce-overhead') wraps the compiled graph in CUDA graphs."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = dsconv_ext.convert(_net()).cuda().eval()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(4, 3, 16, 16, device="cuda")
            torch.testing.assert_close(compiled(x).clone(), model(x), rtol=1e-4, atol=1e-4)
