"""DistributedDataParallel: two CPU processes (gloo backend, torch.multiprocessing.spawn) training a
converted model on half a batch each end with the same parameters as one process training the
same model on the whole batch (float64, so only summation order differs)."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import dsconv_ext
from dsconv_ext import DepthwiseConv2d

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available"
)

WORLD = 2
STEPS = 4
BATCH = 8  # split evenly: each rank's mean loss averages to the full batch's mean loss


def _model():
    """No BatchNorm: per-rank batch statistics would differ from the full batch's."""
    torch.manual_seed(1234)
    return dsconv_ext.convert(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
            nn.Conv2d(8, 16, 1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, groups=16, bias=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 4),
        ).double()
    )


def _data():
    g = torch.Generator().manual_seed(99)
    xs = [torch.randn(BATCH, 3, 10, 10, dtype=torch.float64, generator=g) for _ in range(STEPS)]
    ys = [torch.randint(0, 4, (BATCH,), generator=g) for _ in range(STEPS)]
    return xs, ys


def _train(model, forward, xs, ys):
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _worker(rank, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = _model()
        assert sum(type(m) is DepthwiseConv2d for m in model.modules()) == 2
        ddp = nn.parallel.DistributedDataParallel(model)
        xs, ys = _data()
        half = BATCH // WORLD
        shard = slice(rank * half, (rank + 1) * half)
        losses = _train(model, ddp, [x[shard] for x in xs], [y[shard] for y in ys])
        torch.save({"state": model.state_dict(), "losses": losses}, os.path.join(out_dir, f"rank{rank}.pt"))
        # Both ranks done before either tears gloo down: one CI run (2026-11-26) saw rank 1 abort
        # ("terminate called without an active exception") when rank 0 left first.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_matches_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    single = _model()
    xs, ys = _data()
    losses = _train(single, single, xs, ys)
    expected = single.state_dict()

    # the parameters moved, and identically on both ranks
    assert any(not torch.equal(a, b) for a, b in zip(_model().state_dict().values(), expected.values()))
    for name, value in expected.items():
        for r, res in enumerate(results):
            torch.testing.assert_close(res["state"][name], value, rtol=1e-10, atol=1e-12, msg=lambda m: f"rank {r} {name}: {m}")
    # the ranks' half-batch losses average to the full-batch loss
    mean_losses = [(a + b) / 2 for a, b in zip(results[0]["losses"], results[1]["losses"])]
    assert mean_losses == pytest.approx(losses, rel=1e-10)
