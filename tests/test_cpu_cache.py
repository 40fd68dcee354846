"""The CPU output cache (csrc/cpu/output_pool.*): large outputs reuse freed blocks.

A reused block holds the previous tensor's values, so every test that reuses one first poisons
it with NaN: a kernel that skipped an element would show it.
"""
import multiprocessing as mp
import os
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext

MB = 1 << 20


@pytest.fixture(autouse=True)
def _cache_on():
    prev = dsconv_ext.set_cpu_cache_limit(256 * MB)
    dsconv_ext.empty_cpu_cache()
    yield
    dsconv_ext.empty_cpu_cache()
    dsconv_ext.set_cpu_cache_limit(prev)


def _big_case(channels_last=False, dtype=torch.float32):
    # output 2 x 24 x 150 x 151 float32 = 4.35 MB: over the 4 MiB pooling threshold
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 150, 151, generator=g, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    w = torch.randn(24, 1, 3, 3, generator=g, dtype=dtype)
    b = torch.randn(24, generator=g, dtype=dtype)
    return x, w, b


def _hits():
    return dsconv_ext.cpu_cache_info()["hits"]


@pytest.mark.parametrize("channels_last", [False, True])
def test_reused_block_is_fully_overwritten(channels_last):
    x, w, b = _big_case(channels_last)
    ref = F.conv2d(x, w, b, 1, 1, 1, 24)
    y = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
    assert y.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    ptr = y.data_ptr()
    y.fill_(float("nan"))
    del y
    info = dsconv_ext.cpu_cache_info()
    assert info["cached_blocks"] == 1 and info["cached_bytes"] >= 2 * 24 * 150 * 151 * 4
    h = _hits()
    y2 = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
    assert _hits() == h + 1 and y2.data_ptr() == ptr
    torch.testing.assert_close(y2, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_backward_and_fused_outputs_reuse_blocks(channels_last):
    x, w, b = _big_case(channels_last)
    x.requires_grad_(True)
    go = torch.randn(2, 24, 150, 151)
    x64 = x.detach().double().requires_grad_(True)
    F.conv2d(x64, w.double(), b.double(), 1, 1, 1, 24).backward(go.double())
    for _ in range(2):  # the second round runs on reused, NaN-poisoned blocks
        y = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
        (gi,) = torch.autograd.grad(y, x, go)
        torch.testing.assert_close(gi.double(), x64.grad, rtol=1e-4, atol=1e-4)
        y.detach().fill_(float("nan"))
        gi.fill_(float("nan"))
        del y, gi
    pw = torch.randn(40, 24, 1, 1)
    ref = F.conv2d(F.relu(F.conv2d(x.detach(), w, b, 1, 1, 1, 24)), pw)
    for _ in range(2):
        z = dsconv_ext.separable_conv2d(x.detach(), w, pw, dw_bias=b, padding=1, activation="relu")
        torch.testing.assert_close(z, ref, rtol=1e-4, atol=1e-4)
        z.fill_(float("nan"))
        del z
    assert _hits() >= 3


def test_small_outputs_bypass_the_cache():
    x = torch.randn(2, 8, 20, 20)
    w = torch.randn(8, 1, 3, 3)
    before = dsconv_ext.cpu_cache_info()
    dsconv_ext.depthwise_conv2d(x, w, padding=1)
    after = dsconv_ext.cpu_cache_info()
    assert (after["hits"], after["misses"], after["cached_blocks"]) == (before["hits"], before["misses"], 0)


def test_limit_zero_turns_the_cache_off():
    x, w, b = _big_case()
    dsconv_ext.set_cpu_cache_limit(0)
    before = dsconv_ext.cpu_cache_info()
    y = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
    del y
    after = dsconv_ext.cpu_cache_info()
    assert after["cached_blocks"] == 0 and after["misses"] == before["misses"]


def test_limit_bounds_the_cached_bytes_and_empty_releases():
    x, w, b = _big_case()
    ys = [dsconv_ext.depthwise_conv2d(x, w, b, padding=1) for _ in range(3)]
    block = ys[0].untyped_storage().nbytes()
    dsconv_ext.set_cpu_cache_limit(2 * block + block // 2)  # room for two blocks
    del ys
    info = dsconv_ext.cpu_cache_info()
    assert info["cached_blocks"] == 2 and info["cached_bytes"] <= info["limit_bytes"]
    assert dsconv_ext.set_cpu_cache_limit(block) == 2 * block + block // 2  # trims at once
    assert dsconv_ext.cpu_cache_info()["cached_blocks"] <= 1
    dsconv_ext.empty_cpu_cache()
    assert dsconv_ext.cpu_cache_info()["cached_bytes"] == 0


def test_bad_limits_raise():
    with pytest.raises(ValueError, match="must be >= 0"):
        dsconv_ext.set_cpu_cache_limit(-1)
    with pytest.raises(TypeError, match="int number of bytes"):
        dsconv_ext.set_cpu_cache_limit(1.5)


def test_bad_environment_value_raises():
    code = "import torch, dsconv_ext; dsconv_ext.cpu_cache_info()"
    env = dict(os.environ, DSCONV_CPU_CACHE_MB="lots")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "DSCONV_CPU_CACHE_MB must be a whole number" in r.stderr


def test_pooled_tensors_behave_like_any_cpu_tensor():
    x, w, b = _big_case()
    y = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
    ref = y.clone()
    y.resize_(2, 24, 200, 200)  # grows through the pool's allocator, keeping the old values
    assert torch.equal(y.flatten()[: ref.numel()], ref.flatten())
    z = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
    z.share_memory_()
    assert z.is_shared() and torch.equal(z, ref)
    assert torch.equal(torch.from_numpy(z.numpy()), ref)


def test_threads_share_the_cache_safely():
    x, w, b = _big_case()
    ref = F.conv2d(x, w, b, 1, 1, 1, 24)
    errors = []

    def work():
        try:
            for _ in range(6):
                y = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
                if not torch.allclose(y, ref, rtol=1e-5, atol=1e-5):
                    errors.append("mismatch")
                y.fill_(float("nan"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _child(q):
    # One thread, as DataLoader workers run: OpenMP's pool does not survive a fork (F.conv2d
    # hangs in such a child just the same).
    torch.set_num_threads(1)
    x, w, b = _big_case()
    y = dsconv_ext.depthwise_conv2d(x, w, b, padding=1)
    q.put(bool(torch.allclose(y, F.conv2d(x, w, b, 1, 1, 1, 24), rtol=1e-5, atol=1e-5)))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_child_uses_the_cache():
    x, w, b = _big_case()
    del x  # the parent holds cached blocks when it forks
    dsconv_ext.depthwise_conv2d(*_big_case()[:2], padding=1)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    ok = q.get(timeout=120)
    p.join(timeout=120)
    assert ok and p.exitcode == 0
