"""The hand-written SIMD CPU kernels (AVX-512, AVX2) against F.conv2d in float64.

Every specialised path is driven to its edges (widths and channel counts that are not multiples
of the vector length, images smaller than the kernel, each fixed kernel/stride, the runtime-size
kernels with dilation, asymmetric padding, multipliers, views, float32 and bfloat16), forward and
backward, under each instruction set this CPU can run (dsconv_ext.set_cpu_isa); plus the
DSCONV_CPU_ISA environment variable (subprocesses) and thread-count determinism.

Each test batches many problems and reports every mismatch at once, to keep the run short.
"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import dsconv_ext
from _utils import supported_isas


ISAS = supported_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    prev = dsconv_ext.set_cpu_isa(request.param)
    yield request.param
    dsconv_ext.set_cpu_isa(prev)


def _rel_err(got, want):
    want = want.double()
    return ((got.double() - want).abs().max() / (want.abs().max() + 1)).item()


# fp32 accumulates in fp32 (and in another order than the reference); bf16 rounds its output.
TOL = {torch.float32: 2e-5, torch.bfloat16: 1e-2}
TOL_GRADW = {torch.float32: 1e-4, torch.bfloat16: 1e-2}


def _layout(t, layout):
    if layout == "cl":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "nchw":
        return t.contiguous()
    if layout == "step":  # strided view: every other channel and row, offset along W
        N, C, H, W = t.shape
        base = torch.zeros(N, 2 * C, 2 * H, W + 3, dtype=t.dtype)
        v = base[:, ::2, ::2, 1 : W + 1]
        v.copy_(t)
        return v
    if layout == "chan":  # every other channel of a contiguous tensor: planes 2*H*W apart, rows unit
        N, C, H, W = t.shape
        base = torch.zeros(N, 2 * C, H, W, dtype=t.dtype)
        v = base[:, ::2]
        v.copy_(t)
        return v
    if layout == "batch":  # every other image of a contiguous tensor
        N, C, H, W = t.shape
        base = torch.zeros(2 * N, C, H, W, dtype=t.dtype)
        v = base[::2]
        v.copy_(t)
        return v
    if layout == "cl_slice":  # channels_last channel slice: pixel stride 2C, channels contiguous
        N, C, H, W = t.shape
        base = torch.zeros(N, 2 * C, H, W, dtype=t.dtype).contiguous(memory_format=torch.channels_last)
        v = base[:, C:]
        v.copy_(t)
        return v
    if layout == "transposed":  # H has unit stride
        return t.transpose(2, 3).contiguous().transpose(2, 3)
    raise ValueError(layout)


def check(problems, layouts=("nchw", "cl"), dtypes=(torch.float32, torch.bfloat16), backward=True):
    """problems: (N, C, H, W, (kh, kw), stride, padding, dilation, M). Returns a list of failures."""
    fails = []
    for N, C, H, W, k, stride, padding, dilation, M in problems:
        kh, kw = (k, k) if isinstance(k, int) else k
        x64 = torch.randn(N, C, H, W, dtype=torch.float64)
        w64 = torch.randn(C * M, 1, kh, kw, dtype=torch.float64)
        b64 = torch.randn(C * M, dtype=torch.float64)
        for dtype in dtypes:
            # the reference sees exactly the values the kernel sees
            xr, wr, br = (t.to(dtype).double() for t in (x64, w64, b64))
            try:
                ref = F.conv2d(xr, wr, br, stride, padding, dilation, C)
            except RuntimeError:
                continue  # not a valid convolution (output would be empty)
            go64 = torch.randn_like(ref)
            if backward:
                xr.requires_grad_(), wr.requires_grad_(), br.requires_grad_()
                ref = F.conv2d(xr, wr, br, stride, padding, dilation, C)
                ref.backward(go64.to(dtype).double())
            for layout in layouts:
                tag = f"{layout} {dtype} N{N} C{C} {H}x{W} k{kh}x{kw} s{stride} p{padding} d{dilation} M{M}"
                x = _layout(x64.to(dtype), layout)
                w = w64.to(dtype).clone()
                b = b64.to(dtype).clone()
                if backward:
                    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
                y = dsconv_ext.depthwise_conv2d(x, w, b, stride, padding, dilation)
                if y.shape != ref.shape:
                    fails.append(f"{tag}: shape {tuple(y.shape)} != {tuple(ref.shape)}")
                    continue
                e = _rel_err(y.detach(), ref.detach())
                if not e <= TOL[dtype]:
                    fails.append(f"{tag}: forward err {e:.2e}")
                if not backward:
                    continue
                go = go64.to(dtype)
                if layout in ("cl", "cl_slice"):
                    go = go.contiguous(memory_format=torch.channels_last)
                y.backward(go)
                for name, got, want, tol in (
                    ("grad_input", x.grad, xr.grad, TOL[dtype]),
                    ("grad_weight", w.grad, wr.grad, TOL_GRADW[dtype]),
                    ("grad_bias", b.grad, br.grad, TOL_GRADW[dtype]),
                ):
                    e = _rel_err(got, want)
                    if not e <= tol:
                        fails.append(f"{tag}: {name} err {e:.2e}")
    return fails


def assert_ok(fails):
    assert not fails, f"{len(fails)} mismatches:\n" + "\n".join(fails[:40])


# --- fixed kernels: 3x3 / 5x5 / 7x7, stride 1 / 2, every width around the vector lengths -----

def test_fixed_kernels_all_widths(isa):
    problems = []
    for k in (3, 5, 7):
        for s in (1, 2):
            for W in range(1, 41):
                problems.append((1, 2, 5 + W % 4, W, k, s, k // 2, 1, 1))
    assert_ok(check(problems, dtypes=(torch.float32,), backward=False))


def test_fixed_kernels_backward_and_bf16(isa):
    problems = []
    for k in (3, 5, 7):
        for s in (1, 2):
            for W in (1, 2, 7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 47, 64, 65):
                problems.append((2, 3, 9, W, k, s, k // 2, 1, 1))
    assert_ok(check(problems))


def test_channel_counts(isa):
    # channels_last vectorises over C: tails, one block, a block pair, pair + single + tail
    problems = []
    for C in (1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 48, 50):
        for k, s in ((3, 1), (3, 2), (5, 1), (7, 2), (4, 1)):
            problems.append((2, C, 7, 11, k, s, k // 2, 1, 1))
    assert_ok(check(problems))


def test_output_rows_and_pixel_tiles(isa):
    # row tiles of 2 / 4 rows with a remainder; pixel tiles of 4 / 6 with remainders
    problems = []
    for H in (1, 2, 3, 4, 5, 6, 7, 9, 13):
        for W in (1, 3, 5, 6, 7, 12, 13):
            problems.append((1, 17, H, W, 3, 1, 1, 1, 1))
            problems.append((1, 5, H, W, 9, 1, 4, 1, 1))
    assert_ok(check(problems, dtypes=(torch.float32,)))


def test_pixel_chunks_and_7_pixel_tiles(isa):
    # channels_last fixed kernels: 7-pixel tiles (widths where 7 computes fewer pixels than 6 / 4,
    # with and without an overlapping last tile), channel chunks (k3 with 150 channels: a chunk of
    # 8 vectors then one with a full and a partial vector; k7: chunks of 2 vectors) with a tail
    problems = []
    for C in (17, 50, 150):
        for W in (7, 13, 14, 20, 28):
            for k, s in ((3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2)):
                problems.append((1, C, 4 + W % 3, W, k, s, k // 2, 1, 1))
    assert_ok(check(problems, layouts=("cl",), dtypes=(torch.float32,), backward=False))
    problems = [(2, C, 6, W, k, 1, k // 2, 1, 1) for C in (17, 50) for W in (7, 13) for k in (3, 5, 7)]
    assert_ok(check(problems, layouts=("cl",)))


def test_channels_last_grad_weight_kernel_row_ranges(isa):
    # channels_last grad weight of 3/5/7-wide kernels: output rows whose kernel reaches into the
    # padding run the fixed kernels on the rows inside the input only (blocks of up to 3 or 4
    # kernel rows, split evenly): top and bottom rows on maps shorter than the kernel, row
    # dilation, tall kernels whose valid rows span several blocks, rows with no valid kernel row
    # (bias alone), padding wider than the kernel's reach, channel tails
    problems = [
        (2, 40, 7, 7, 3, 1, 1, 1, 1),
        (1, 33, 7, 9, 5, 1, 2, 1, 1),
        (1, 17, 4, 9, 7, 1, 3, 1, 1),
        (1, 20, 9, 8, (3, 3), 1, 2, (2, 1), 1),
        (1, 18, 11, 10, (11, 5), 1, (5, 2), 1, 1),
        (1, 16, 6, 12, (3, 3), 2, (4, 1), 1, 1),
        (2, 24, 5, 11, (3, 7), 1, (3, 3), 1, 1),
        (1, 16, 6, 12, (7, 3), 2, (6, 1), 1, 1),
    ]
    assert_ok(check(problems, layouts=("cl", "cl_slice")))


@pytest.mark.parametrize("mode", ["0", "1"])
def test_channels_last_grad_weight_prefetch_switch(isa, mode, monkeypatch):
    # channels_last grad weight prefetches the next output row's rows only at stride 2 on inputs
    # wider than 64 by default; DSCONV_GW_PF=0 / 1 forces it off / on (read on every call). A
    # prefetch never changes the sums: the same bits either way, on both sides of the default's
    # rule (stride 1 and 2, 64 and 65 columns), through the weight gradient alone and through the
    # one-pass backward, with a channel tail
    x = torch.randn(2, 20, 9, 65).contiguous(memory_format=torch.channels_last)
    w = torch.randn(20, 1, 3, 3)
    ops = torch.ops.dsconv
    for xs in (x, x[..., :64]):
        for s in (1, 2):
            go = torch.randn_like(dsconv_ext.depthwise_conv2d(xs, w, None, s, 1)).contiguous(
                memory_format=torch.channels_last)
            conv = ([s, s], [1, 1, 1, 1], [1, 1])
            monkeypatch.delenv("DSCONV_GW_PF", raising=False)
            want = [ops.depthwise_conv2d_backward(go, xs, w, *conv, m) for m in ([False, True, True], [True, True, True])]
            monkeypatch.setenv("DSCONV_GW_PF", mode)
            got = [ops.depthwise_conv2d_backward(go, xs, w, *conv, m) for m in ([False, True, True], [True, True, True])]
            for a, b in zip(got, want):
                for u, v in zip(a, b):
                    assert (u is None) == (v is None)
                    if u is not None:
                        assert torch.equal(u, v)
            ref = torch.ops.aten.convolution_backward(go, xs, w, [20], [s, s], [1, 1], [1, 1], False, [0, 0], 20,
                                                      [True, True, True])
            for u, v in zip(got[1], ref):
                torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", ["2", "3", "4", "16"])
def test_channels_last_grad_weight_row_chunks(isa, rows, monkeypatch):
    # channels_last grad weight takes output rows in chunks, each channel block's accumulators in
    # registers over the chunk (3x3 stride 1 on maps up to 28 wide by default, 4 rows);
    # DSCONV_GW_ROWS=n forces n rows per chunk, 1 the row-by-row loop. Same sums in the same
    # order: the same bits for every n, weight gradient alone and one-pass backward, with the
    # bias, channel tails, chunks across images, kernels split into several row blocks (5x5,
    # 7x7, 7x3), stride 2, and padding taller than the kernel (rows with no kernel row inside)
    problems = [
        (3, 20, 5, 9, (3, 3), 1, (1, 1)),
        (2, 33, 7, 7, (3, 3), 1, (1, 1)),
        (2, 20, 6, 10, (5, 5), 1, (2, 2)),
        (2, 20, 9, 12, (7, 7), 2, (3, 3)),
        (2, 20, 8, 9, (7, 3), 1, (3, 1)),
        (2, 20, 4, 9, (3, 3), 1, (4, 1)),
        (2, 16, 6, 11, (3, 3), 2, (1, 1)),
    ]
    ops = torch.ops.dsconv
    for n, c, h, wd, k, s, pad in problems:
        x = torch.randn(n, c, h, wd).contiguous(memory_format=torch.channels_last)
        w = torch.randn(c, 1, *k)
        go = torch.randn_like(dsconv_ext.depthwise_conv2d(x, w, None, s, pad)).contiguous(
            memory_format=torch.channels_last)
        conv = ([s, s], [pad[0], pad[0], pad[1], pad[1]], [1, 1])
        masks = ([False, True, True], [True, True, True])
        monkeypatch.setenv("DSCONV_GW_ROWS", "1")
        want = [ops.depthwise_conv2d_backward(go, x, w, *conv, m) for m in masks]
        for mode in (rows, ""):
            monkeypatch.setenv("DSCONV_GW_ROWS", mode)
            got = [ops.depthwise_conv2d_backward(go, x, w, *conv, m) for m in masks]
            for a, b in zip(got, want):
                for u, v in zip(a, b):
                    assert (u is None) == (v is None)
                    if u is not None:
                        assert torch.equal(u, v), (n, c, h, wd, k, s, pad, mode)
        ref = torch.ops.aten.convolution_backward(go, x, w, [c], [s, s], list(pad), [1, 1], False, [0, 0], c,
                                                  [True, True, True])
        for u, v in zip(got[1], ref):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_large_kernels_channels_last_both_engines(isa):
    # >= 9x9 kernels in channels_last: planes of up to 16x16 pixels (grad weight: 10x10) run the
    # pixel kernels, larger ones the transposed planes kernels; both sides of the thresholds, with
    # channel tails
    problems = [
        (1, 20, 10, 10, 13, 1, 6, 1, 1),
        (1, 20, 10, 11, 13, 1, 6, 1, 1),
        (2, 33, 7, 7, 13, 1, 6, 1, 1),
        (1, 20, 14, 14, 13, 1, 6, 1, 1),
        (1, 20, 16, 16, 13, 1, 6, 1, 1),
        (1, 20, 16, 17, 13, 1, 6, 1, 1),
        (1, 17, 5, 9, 9, 1, 4, 1, 1),
        (1, 18, 12, 12, 11, 2, 5, 1, 1),
    ]
    assert_ok(check(problems, layouts=("cl",)))


def test_runtime_kernels_edge_rows(isa):
    # The runtime-size planes kernels handle the first and last rows of a tile's window, and the
    # row-shared grad weight tiles the first and last rows of a band, with compile-time row ranges
    # when the kernel is at least as tall as the tile minus one (forward / grad input: tiles of 4
    # rows, or 8 on planes of 17-32 columns with kernels >= 16 tall) and the band at least as tall
    # as the weight tile (4 kernel rows); shorter ones take the runtime-test path. Kernel heights
    # and output heights on both sides of those limits, both layouts (channels_last through the
    # transposed planes: full and partial channel blocks, runs of 8 pixels and odd tails, stride 2
    # splitting columns into phases, and a channel slice whose pixel stride exceeds C; grad weight
    # on pixel vectors with row stride 1 and at least 4 output rows, the planes otherwise).
    problems = []
    for kh in (2, 3, 4, 5, 6, 9):
        problems.append((1, 3, 11, 21, (kh, 9), 1, (kh // 2, 4), 1, 1))
    for kh in (6, 7, 8, 9, 15, 16, 17):
        problems.append((1, 2, 19, 27, (kh, 11), 1, (kh // 2, 5), 1, 1))
    for oh in (1, 2, 3, 4, 5):  # grad weight bands shorter / taller than the weight tile
        problems.append((1, 2, oh, 19, (3, 5), 1, (1, 2), 1, 1))
        problems.append((1, 2, oh + 8, 13, 9, 1, 0, 1, 1))
    assert_ok(check(problems, layouts=("nchw",)))
    # NCHW grad weight of >= 9x9 kernels on pixel vectors (rows transposed): a full channel block
    # and a tail, views with unit column stride (step) and without (transposed: the planes)
    problems = [(2, 20, 15, 17, 9, 1, 4, 1, 1), (1, 19, 12, 22, (11, 9), 1, (5, 4), (1, 2), 1)]
    assert_ok(check(problems, layouts=("nchw", "step", "transposed")))
    problems = [
        (1, 20, 21, 21, 9, 1, 4, 1, 1),
        (2, 16, 18, 27, (17, 9), 1, (8, 4), 1, 1),
        (1, 33, 24, 19, 11, 2, 5, 1, 1),
        (1, 17, 17, 17, (9, 11), 1, (4, 5), 1, 1),
        (1, 20, 16, 23, 9, (1, 2), 4, (1, 2), 1),  # grad weight on pixel vectors: column stride / dilation
        (2, 20, 10, 60, (9, 13), 1, (0, 6), 1, 1),  # 2 output rows: the transposed planes
    ]
    assert_ok(check(problems, layouts=("cl", "cl_slice")))


def test_nchw_narrow_planes_through_pixel_kernels(isa):
    # NCHW outputs no wider than a vector run the pixels kernels on transposed channel chunks:
    # several chunks with a tail (403 channels of 7x7), stride 2, each fixed kernel and the
    # runtime-size one, dilation, even kernels, strided views (row-by-row and scalar transposes)
    problems = [
        (2, 403, 7, 7, 3, 1, 1, 1, 1),
        (2, 403, 7, 7, 5, 1, 2, 1, 1),
        (1, 170, 14, 14, 7, 1, 3, 1, 1),
        (1, 170, 14, 14, 3, 2, 1, 1, 1),
        (2, 91, 13, 11, 5, 2, 2, 1, 1),
        (1, 37, 9, 16, 4, 1, "same", 1, 1),
        (1, 37, 10, 12, 3, 1, 2, 2, 1),
        (1, 37, 28, 28, 3, 2, 1, 1, 1),
        (1, 20, 5, 3, 9, 1, 4, 1, 1),
        (2, 64, 14, 14, 3, 1, 1, 1, 1),  # float32: the direct planes tiles; bfloat16: this route
    ]
    assert_ok(check(problems, layouts=("nchw", "step", "transposed")))


def test_narrow_images_under_wide_kernels(isa):
    # stride 1, output as wide as the input, W <= 15 (AVX2: 7), kernel >= 7 wide or as wide as the
    # image: register rows of 7 outputs (the last overlapping) fed by diagonals (RepLKNet 13x13 /
    # ConvNeXt 7x7 on 7x7 and 14x14 maps); each width 1..16, channel tails and pairs, even kernels
    # ('same'), images shorter than the kernel
    problems = [(2, 37, 7, 7, 13, 1, 6, 1, 1), (2, 37, 7, 7, 7, 1, 3, 1, 1), (1, 35, 7, 6, 8, 1, "same", 1, 1)]
    problems += [(1, 17 + W, 3 + W % 4, W, 9, 1, 4, 1, 1) for W in range(1, 17)]
    problems += [(1, 37, 14, 14, 13, 1, 6, 1, 1), (1, 40, 14, 14, 7, 1, 3, 1, 1), (1, 18, 12, 15, 11, 1, 5, 1, 1)]
    problems += [(1, 33, 8, 8, 15, 1, 7, 1, 1), (1, 16, 5, 5, 5, 1, 2, 1, 1), (1, 20, 2, 4, 13, 1, 6, 1, 1)]
    assert_ok(check(problems, layouts=("nchw", "cl", "step")))


def test_nchw_flat_planes(isa):
    # NCHW 7x7 / 14x14 maps under "same" 3x3 / 5x5 / 7x7 kernels at stride 1: each plane held in
    # registers as one flat vector stream (dw_simd_flat.h, AVX-512; the other ISAs run their usual
    # routes on the same problems); grad weight + bias too for 3x3 / 5x5. Every kernel size on
    # both maps, multiplier 2 (forward; the gradients keep their routes), a channel tail, bias; channel- and batch-strided views keep unit rows
    # and take the path, the row-strided "step" view does not. Then near misses that must not take
    # it: 8x8 and 13x13 maps, padding 0, stride 2, dilation 2, a 7x14 map.
    problems = [(2, 19, H, H, k, 1, k // 2, 1, M) for H in (7, 14) for k in (3, 5, 7) for M in (1, 2)]
    problems += [(1, 5, 8, 8, 3, 1, 1, 1, 1), (1, 5, 13, 13, 5, 1, 2, 1, 1), (1, 5, 7, 7, 3, 1, 0, 1, 1),
                 (1, 5, 14, 14, 3, 2, 1, 1, 1), (1, 5, 7, 7, 3, 1, 2, 2, 1), (1, 5, 7, 14, 3, 1, 1, 1, 1)]
    fails = check(problems, layouts=("nchw", "chan", "batch", "step"))
    # grad weight alone and grad bias alone (the other output not asked for)
    for k, H in ((3, 7), (5, 14)):
        x = torch.randn(3, 21, H, H, dtype=torch.float64)
        w = torch.randn(21, 1, k, k, dtype=torch.float64)
        go = torch.randn(3, 21, H, H, dtype=torch.float64)
        ops = torch.ops.dsconv.depthwise_conv2d_backward
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, torch.zeros(21, dtype=torch.float64)))
        F.conv2d(xr, wr, br, 1, k // 2, 1, 21).backward(go)
        pad = [k // 2] * 4
        _, gw, _ = ops(go.float(), x.float(), w.float(), [1, 1], pad, [1, 1], [False, True, False])
        _, _, gb = ops(go.float(), x.float(), w.float(), [1, 1], pad, [1, 1], [False, False, True])
        for name, got, want in (("grad weight alone", gw, wr.grad), ("grad bias alone", gb, br.grad)):
            e = _rel_err(got, want)
            if not e <= TOL_GRADW[torch.float32]:
                fails.append(f"{H}x{H} k{k} {name}: err {e:.2e}")
    assert_ok(fails)


def test_nchw_packed_strided(isa):
    # NCHW forward at stride >= 2 on narrow planes (dw_simd_packed.h, AVX-512; the other ISAs run
    # their usual routes on the same problems): two planes per vector for output rows of <= 8 from
    # input rows of <= 16 columns (kernels up to 3 wide; 5 wide from 14 columns), one plane for
    # <= 16 from 29-32 (3 wide). Widths on both sides of each limit, an odd channel count (the last
    # pair half empty), multipliers 2 and 3, dilation 2, strides (2, 2), (1, 2), (3, 3), (2, 3),
    # 1x1, 3x3, 5x5 and non-square kernels (the runtime-size loop), padding past the kernel's
    # half, bias; views with unit rows (channel- and batch-strided) and the row-strided "step"
    # view; near misses (7x7 and 5x5 on 12x12 at stride 2) that keep their routes.
    problems = [(2, 7, 3 + W % 5, W, 3, 2, 1, 1, 1) for W in (5, 8, 13, 14, 15, 16, 17, 27, 28, 29, 31, 32, 33)]
    problems += [
        (2, 5, 14, 14, 5, 2, 2, 1, 1),
        (1, 5, 15, 16, 5, 2, 2, 1, 1),
        (1, 3, 32, 32, 3, 2, 1, 1, 2),
        (1, 3, 14, 14, 3, 2, 1, 1, 3),
        (1, 5, 14, 14, 3, 2, 2, 2, 1),
        (1, 5, 12, 16, 3, (1, 2), 1, 1, 1),
        (1, 5, 20, 30, 3, 3, 1, 1, 1),
        (1, 5, 11, 13, (2, 3), (2, 3), (1, 1), 1, 1),
        (1, 5, 14, 14, (5, 3), 2, (2, 1), 1, 1),
        (1, 5, 14, 15, (1, 2), 2, 0, 1, 1),
        (1, 6, 9, 9, 1, 2, 0, 1, 1),
        (1, 5, 14, 14, 3, 2, 3, 1, 1),
        (1, 9, 14, 14, 7, 2, 3, 1, 1),
        (1, 5, 12, 12, 5, 2, 2, 1, 1),
    ]
    assert_ok(check(problems, layouts=("nchw", "chan", "batch", "step")))


# --- runtime-size kernels: any size, stride, dilation, padding, multiplier ------------------

def test_general_kernels(isa):
    problems = [
        (2, 3, 12, 14, 1, 1, 0, 1, 1),
        (2, 3, 12, 14, 2, 1, 0, 1, 1),
        (2, 3, 12, 14, (1, 9), 1, (0, 4), 1, 1),
        (2, 3, 12, 14, (9, 1), 1, (4, 0), 1, 1),
        (1, 4, 40, 37, 13, 1, 6, 1, 1),
        (1, 3, 20, 33, 11, 2, 5, 1, 1),
        (1, 2, 33, 40, (31, 7), 1, (15, 3), 1, 1),
        (1, 2, 34, 35, 31, 1, 15, 1, 1),
        (1, 2, 34, 35, 31, 2, 15, 1, 1),
        (2, 5, 12, 12, 3, 2, 2, 2, 1),
        (2, 3, 15, 17, 3, 1, 3, 3, 1),
        (1, 2, 9, 9, (4, 6), (1, 2), (3, 1), (1, 3), 1),
        (1, 2, 19, 23, 5, (2, 1), 2, (2, 1), 1),
        (1, 2, 19, 23, 5, 3, 2, 1, 1),
        (1, 2, 19, 23, 3, (3, 2), 1, 2, 1),
        (2, 3, 10, 12, 3, 1, 1, 1, 2),
        (1, 3, 7, 20, (5, 3), (2, 1), (2, 0), 2, 2),
        (2, 2, 11, 13, 5, 2, 2, 1, 3),
        (1, 1, 16, 16, 3, 1, 1, 1, 4),
    ]
    assert_ok(check(problems))


def test_small_images_and_odd_padding(isa):
    problems = [
        (1, 3, 2, 3, 7, 1, 3, 1, 1),  # H, W smaller than the kernel
        (1, 3, 1, 1, 5, 1, 2, 1, 1),
        (1, 3, 4, 2, 31, 1, 15, 1, 1),
        (1, 3, 8, 8, 3, 1, 5, 1, 1),  # padding larger than the kernel
        (1, 3, 8, 8, 3, 2, 4, 1, 1),
        (1, 3, 9, 10, 3, 1, 0, 1, 1),  # no padding
        (1, 3, 9, 10, 5, 2, 0, 1, 1),
        (1, 3, 9, 10, 4, 1, "same", 1, 1),  # asymmetric padding (even kernel)
        (1, 3, 9, 10, (2, 6), 1, "same", (2, 1), 1),
        (1, 3, 6, 30, 3, 1, (0, 1), 1, 1),
    ]
    assert_ok(check(problems))


def test_nchw_direct_3x3_edges(isa):
    """float32 NCHW 3x3 stride 1 reads the input rows in place (direct3_tile in dw_simd_impl.h) with
    lane masks on each row's first and last vector: every width class (one to eight vectors, so
    one or two tiles, the second partial; wider rows and left padding past one vector (17) take the
    scratch path), asymmetric padding, rows in the padding, multipliers, a single channel (narrow
    planes stay on this path when C == 1).
    Grad input (multiplier 1) runs the same tiles on grad_output, read from row and column
    -(2 - pad): negative offsets where the padding exceeds 2."""
    ops = torch.ops.dsconv
    fails = []
    gen = torch.Generator().manual_seed(7)
    widths = list(range(1, 6)) + [15, 16, 17, 18, 31, 32, 33, 47, 48, 49, 63, 64, 65, 66, 79, 80, 81, 100, 112, 127, 128, 129, 130]
    pads = [(1, 1, 1, 1), (0, 0, 0, 0), (2, 0, 2, 0), (0, 2, 0, 3), (1, 2, 5, 1), (0, 1, 16, 2), (1, 0, 17, 0),
            (4, 3, 0, 20)]
    for W in widths:
        for (pt, pb, pl, pr) in pads:
            for N, C, M, H in ((2, 3, 1, 7), (1, 1, 1, 3), (1, 2, 2, 1)):
                if W + pl + pr < 3 or H + pt + pb < 3:
                    continue
                x = torch.randn(N, C, H, W, generator=gen)
                w = torch.randn(C * M, 1, 3, 3, generator=gen)
                b = torch.randn(C * M, generator=gen)
                y = ops.depthwise_conv2d(x, w, b, [1, 1], [pt, pb, pl, pr], [1, 1])
                x64 = x.double().requires_grad_()
                ref = F.conv2d(F.pad(x64, (pl, pr, pt, pb)), w.double(), b.double(), 1, 0, 1, C)
                e = _rel_err(y, ref) if y.shape == ref.shape else float("inf")
                if not e <= TOL[torch.float32]:
                    fails.append(f"N{N} C{C} M{M} {H}x{W} pad {(pt, pb, pl, pr)}: err {e:.2e}")
                # grad input: the same tiles on grad_output, from row / column -(2 - pad)
                go = torch.randn(ref.shape, generator=gen)
                gi = ops.depthwise_conv2d_backward(go, x, w, [1, 1], [pt, pb, pl, pr], [1, 1], [True, False, False])[0]
                ref.backward(go.double())
                e = _rel_err(gi, x64.grad)
                if not e <= TOL[torch.float32]:
                    fails.append(f"N{N} C{C} M{M} {H}x{W} pad {(pt, pb, pl, pr)}: grad input err {e:.2e}")
    assert_ok(fails)


def test_nchw_direct_stride2_edges(isa):
    """float32 NCHW 3x3 / 5x5 stride 2 reads the input rows in place too (direct_s2_tile): per
    output vector two input vectors and the first K-2 lanes of a third, each with its own lane
    mask at the row's edges, and the taps kw >= 2 made by shifting the even/odd phases. Every
    output width class up to the path's 4 vectors (input widths 1-130; 5 vectors fall back to the
    scratch path), asymmetric padding up to and past one vector on the left, rows in the padding,
    planes taller than one call's row table (70 rows), a single channel, and multipliers (the
    scratch path)."""
    ops = torch.ops.dsconv
    fails = []
    gen = torch.Generator().manual_seed(11)
    widths = [1, 2, 3, 4, 5, 6, 15, 16, 17, 30, 31, 32, 33, 34, 63, 64, 65, 66, 95, 96, 97, 112, 127, 128, 129, 130]
    for k in (3, 5):
        pads = [(k // 2,) * 4, (0, 0, 0, 0), (k - 1, 0, k - 1, 0), (0, k, 0, k + 1), (1, 2, 16, 1), (0, 1, 17, 2)]
        for W in widths:
            for (pt, pb, pl, pr) in pads:
                for N, C, M, H in ((2, 3, 1, 9), (1, 1, 1, 70), (1, 2, 2, 4)):
                    if W + pl + pr < k or H + pt + pb < k:
                        continue
                    x = torch.randn(N, C, H, W, generator=gen)
                    w = torch.randn(C * M, 1, k, k, generator=gen)
                    b = torch.randn(C * M, generator=gen)
                    y = ops.depthwise_conv2d(x, w, b, [2, 2], [pt, pb, pl, pr], [1, 1])
                    ref = F.conv2d(F.pad(x.double(), (pl, pr, pt, pb)), w.double(), b.double(), 2, 0, 1, C)
                    e = _rel_err(y, ref) if y.shape == ref.shape else float("inf")
                    if not e <= TOL[torch.float32]:
                        fails.append(f"k{k} N{N} C{C} M{M} {H}x{W} pad {(pt, pb, pl, pr)}: err {e:.2e}")
    assert_ok(fails)


def test_nchw_pixels_route_streaming_output(isa):
    """float32 NCHW 14x14 / 7x7 layers go through the pixels route (planes -> pixel-major chunk ->
    planes). Outputs of >= 16 MB leave it through a plane-order buffer and non-temporal stores of
    each chunk's contiguous range, with the next chunk's planes prefetched: forward and grad input
    (the same chunk loop) on such sizes, a channel count that is not a multiple of the chunk or
    the vector, against float64."""
    fails = []
    gen = torch.Generator().manual_seed(12)
    for N, C, H, k in ((23, 1001, 14, 5), (90, 999, 7, 3)):  # 18.0 / 17.6 MB of output
        x = torch.randn(N, C, H, H, generator=gen, requires_grad=True)
        w = torch.randn(C, 1, k, k, generator=gen)
        b = torch.randn(C, generator=gen)
        y = dsconv_ext.depthwise_conv2d(x, w, b, 1, k // 2)
        assert y.numel() * 4 >= 16 << 20
        go = torch.randn(y.shape, generator=gen)
        (gi,) = torch.autograd.grad(y, x, go)
        x64 = x.detach().double().requires_grad_(True)
        ref = F.conv2d(x64, w.double(), b.double(), 1, k // 2, 1, C)
        ref.backward(go.double())
        for name, got, want in (("forward", y, ref), ("grad input", gi, x64.grad)):
            e = _rel_err(got, want)
            if not e <= TOL[torch.float32]:
                fails.append(f"{N}x{C}x{H}x{H} k{k} {name}: err {e:.2e}")
    assert_ok(fails)


def test_views(isa):
    # strided views read in place (or fall back to the generic kernels): same results
    problems = [(2, 3, 9, 17, 3, 1, 1, 1, 1), (2, 3, 9, 17, 5, 2, 2, 1, 1), (1, 2, 8, 9, 3, 1, 1, 2, 2)]
    assert_ok(check(problems, layouts=("step", "transposed"), dtypes=(torch.float32,)))


def test_large_outputs_stream_path(isa):
    # outputs >= 16 MB take the staged, non-temporal store path of the NCHW kernels
    x = torch.randn(1, 64, 256, 256)
    w = torch.randn(64, 1, 3, 3)
    b = torch.randn(64)
    y = dsconv_ext.depthwise_conv2d(x, w, b, 1, 1)
    assert _rel_err(y, F.conv2d(x.double(), w.double(), b.double(), 1, 1, 1, 64)) <= TOL[torch.float32]
    go = torch.randn_like(y)
    gi, _, _ = torch.ops.dsconv.depthwise_conv2d_backward(go, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [True, False, False])
    ref = torch.nn.grad.conv2d_input(x.shape, w.double(), go.double(), 1, 1, 1, 64)
    assert _rel_err(gi, ref) <= TOL[torch.float32]


def test_channels_last_stream_path(isa):
    # channels_last outputs >= 8 MiB (pixels engine, dw_simd_impl.h pix_stream_bytes_threshold) are
    # written with non-temporal stores: forward, grad input alone and the one-pass backward, on an
    # output just over the threshold (64 channels: whole, aligned channel vectors), stride 1 and 2
    x = torch.randn(2, 64, 128, 130).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 1, 3, 3)
    b = torch.randn(64)
    x64, w64, b64 = x.double(), w.double(), b.double()
    bwd = torch.ops.dsconv.depthwise_conv2d_backward
    for s in (1, 2):
        y = dsconv_ext.depthwise_conv2d(x, w, b, s, 1)
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert _rel_err(y, F.conv2d(x64, w64, b64, s, 1, 1, 64)) <= TOL[torch.float32]
        go = torch.randn_like(y)
        ref = torch.nn.grad.conv2d_input(x.shape, w64, go.double(), s, 1, 1, 64)
        gi = bwd(go, x, w, [s, s], [1, 1, 1, 1], [1, 1], [True, False, False])[0]
        gi1, gw1, _ = bwd(go, x, w, [s, s], [1, 1, 1, 1], [1, 1], [True, True, True])
        assert _rel_err(gi, ref) <= TOL[torch.float32]
        assert torch.equal(gi1, gi)
        ref_w = torch.nn.grad.conv2d_weight(x64, w.shape, go.double(), s, 1, 1, 64)
        assert _rel_err(gw1, ref_w) <= TOL_GRADW[torch.float32]


@pytest.mark.parametrize("width", [21, 7])  # 7: NCHW through the pixels route's bfloat16 transposes
def test_bf16_rounding_matches_torch(isa, width):
    # 1x1 kernel with weight 1: the output is the input widened and rounded back, exactly.
    x = torch.randn(2, 19, 5, width).to(torch.bfloat16)
    x[0, 0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    x[1, 3, 2, :3] = torch.tensor([1e-40, -3e-39, 2.0**-133])  # subnormals stay subnormal
    w = torch.ones(19, 1, 1, 1, dtype=torch.bfloat16)
    for layout in ("nchw", "cl"):
        xl = _layout(x, layout)
        y = dsconv_ext.depthwise_conv2d(xl, w)
        assert torch.equal(y.view(torch.int16), xl.contiguous().view(torch.int16)) or torch.equal(
            y.float().nan_to_num(7.0), xl.float().nan_to_num(7.0)
        )


def _same_bits(a, b):
    """Equal bfloat16 bits, any NaN equal to any NaN (PyTorch's rounding keeps NaN payloads)."""
    return bool(((a.view(torch.int16) == b.view(torch.int16)) | (a.isnan() & b.isnan())).all())


def test_bf16_channels_last_equals_float32_rounded(isa):
    # bfloat16 channels_last widens to float32 and runs the float32 kernels' sums (AVX-512: channel
    # vector pairs loaded as even / odd channels, dw_simd_impl.h pix_eo): forward, grad input and
    # the one-pass backward must give the float32 results rounded, bit for bit. Channel counts:
    # one pair, pair + tail, pair + single block, pairs + single + tail, across channel chunks;
    # inf / NaN / subnormal inputs in even and odd channels.
    op, bwd = torch.ops.dsconv.depthwise_conv2d, torch.ops.dsconv.depthwise_conv2d_backward
    fails = []
    for C in (32, 33, 48, 64, 80, 150):
        for k, s in ((3, 1), (3, 2), (5, 1), (7, 2), (4, 1)):
            x = torch.randn(2, C, 9, 13).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            x[0, 1, 2, 3], x[1, 2, 3, 4], x[0, 3, 1, 1], x[1, 30, 4, 5] = float("inf"), float("nan"), 1e-39, -3e-39
            w = torch.randn(C, 1, k, k).to(torch.bfloat16)
            b = torch.randn(C).to(torch.bfloat16)
            args = ([s, s], [k // 2] * 4, [1, 1])
            y = op(x, w, b, *args)
            go = torch.randn(y.shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            want_y = op(x.float(), w.float(), b.float(), *args).to(torch.bfloat16)
            want_gi = bwd(go.float(), x.float(), w.float(), *args, [True, False, False])[0].to(torch.bfloat16)
            got_gi = bwd(go, x, w, *args, [True, False, False])[0]
            one_gi = bwd(go, x, w, *args, [True, True, True])[0]
            for name, got, want in (("forward", y, want_y), ("grad_input", got_gi, want_gi), ("one-pass", one_gi, got_gi)):
                if not _same_bits(got, want):
                    fails.append(f"C{C} k{k} s{s}: {name} differs from float32 rounded")
    assert_ok(fails)


# --- backward in one pass (grad input + grad weight/bias) -------------------------------------

# (N, C, H, W, (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw)); channels_last: all through
# the one-pass kernel; NCHW: those wider than 16 (narrower planes take the pixels routes)
ONE_PASS_CASES = [
    (2, 19, 13, 11, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # channel tail
    (3, 33, 9, 17, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (2, 40, 15, 20, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    (1, 24, 12, 20, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1)),
    (2, 17, 10, 13, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
    (2, 16, 9, 19, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),  # dilation: the general kernels
    (2, 20, 11, 18, (4, 3), (3, 2), (1, 2, 0, 1), (1, 1)),  # general kernel, stride 3, odd padding
    (2, 48, 28, 28, (3, 3), (1, 1), (0, 2, 1, 1), (1, 1)),  # asymmetric padding
    (1, 32, 30, 30, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1)),  # input rows below the output's reach
    (2, 16, 6, 20, (5, 5), (1, 1), (0, 0, 2, 2), (1, 1)),  # two output rows
    (5, 64, 7, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # small maps: groups span images
    (1, 8, 5, 40, (3, 3), (2, 1), (4, 4, 1, 1), (1, 1)),  # padding rows past the input
]


@pytest.mark.parametrize("layout", ["cl", "nchw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_pass_backward(isa, dtype, layout):
    # grad input and grad weight/bias come from one pass over grad_output where both take the
    # pixels (channels_last) or planes (NCHW) kernels (dw_simd_bwd_one_pass.h): the same bits as
    # the two separate passes, and correct
    op = torch.ops.dsconv.depthwise_conv2d_backward
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    fails = []
    for N, C, H, W, k, s, pad, d in ONE_PASS_CASES:
        x = torch.randn(N, C, H, W).to(dtype).contiguous(memory_format=fmt)
        w = torch.randn(C, 1, *k).to(dtype)
        xp = F.pad(x.double(), (pad[2], pad[3], pad[0], pad[1]))
        xr, wr = xp.requires_grad_(), w.double().requires_grad_()
        br = torch.zeros(C, dtype=torch.float64, requires_grad=True)
        ref = F.conv2d(xr, wr, br, s, 0, d, C)
        go = torch.randn_like(ref).to(dtype).contiguous(memory_format=fmt)
        ref.backward(go.double())
        want_gi = xr.grad[:, :, pad[0] : pad[0] + H, pad[2] : pad[2] + W]
        args = (list(s), list(pad), list(d))
        one = op(go, x, w, *args, [True, True, True])
        gi = op(go, x, w, *args, [True, False, False])[0]
        gw, gb = op(go, x, w, *args, [False, True, True])[1:]
        tag = f"{layout} {dtype} N{N} C{C} {H}x{W} k{k} s{s} p{pad} d{d}"
        for name, a, b in (("grad_input", one[0], gi), ("grad_weight", one[1], gw), ("grad_bias", one[2], gb)):
            if not torch.equal(a, b):
                fails.append(f"{tag}: {name} differs from its separate pass")
        gi_gb = op(go, x, w, *args, [True, False, True])  # grad weight not asked for
        if not (torch.equal(gi_gb[0], gi) and torch.equal(gi_gb[2], gb)):
            fails.append(f"{tag}: mask (grad input, grad bias) differs")
        for name, got, want, tol in (
            ("grad_input", one[0], want_gi, TOL[dtype]),
            ("grad_weight", one[1], wr.grad, TOL_GRADW[dtype]),
            ("grad_bias", one[2], br.grad, TOL_GRADW[dtype]),
        ):
            e = _rel_err(got, want)
            if not e <= tol:
                fails.append(f"{tag}: {name} err {e:.2e}")
    assert_ok(fails)


@pytest.mark.parametrize("layout", ["cl", "nchw"])
def test_one_pass_backward_views(isa, layout):
    # channel slices (channels_last: pixel stride > C; NCHW: image stride > C planes) and
    # row-strided views: read in place with their strides
    op = torch.ops.dsconv.depthwise_conv2d_backward
    fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
    x = torch.randn(2, 40, 28, 35).contiguous(memory_format=fmt)[:, 3:30, ::2]
    w = torch.randn(27, 1, 3, 3)
    go = torch.randn(2, 30, 14, 35).contiguous(memory_format=fmt)[:, 1:28]
    one = op(go, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [True, True, True])
    xr = x.double().requires_grad_()
    wr = w.double().requires_grad_()
    br = torch.zeros(27, dtype=torch.float64, requires_grad=True)
    F.conv2d(xr, wr, br, 1, 1, 1, 27).backward(go.double())
    for got, want in zip(one, (xr.grad, wr.grad, br.grad)):
        assert _rel_err(got, want) <= TOL_GRADW[torch.float32]


# --- determinism: the thread count never changes a bit ---------------------------------------

@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_thread_count_determinism(isa, layout):
    if torch.get_num_threads() < 2 and os.cpu_count() < 2:
        pytest.skip("needs 2 threads")
    cases = [
        ((4, 8, 20, 24), 3, 1, 1),  # few channels: weight gradient split into batch chunks
        ((3, 40, 17, 19), 5, 2, 2),
        ((2, 96, 14, 14), 7, 1, 3),
        ((2, 16, 20, 20), 13, 1, 6),
        ((3, 200, 14, 14), 3, 2, 1),  # NCHW: the pixels kernels on channel chunks, per-image sums
        ((3, 48, 30, 30), 3, 1, 1),  # the one-pass backward
    ]
    for shape, k, s, p in cases:
        x = _layout(torch.randn(*shape), layout)
        w = torch.randn(shape[1], 1, k, k)
        b = torch.randn(shape[1])
        go = None
        results = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            xx, ww, bb = (t.detach().clone().requires_grad_() for t in (x, w, b))
            if layout == "cl":
                xx = x.detach().clone(memory_format=torch.channels_last).requires_grad_()
            y = dsconv_ext.depthwise_conv2d(xx, ww, bb, s, p)
            if go is None:
                go = torch.randn_like(y)
            y.backward(go)
            results.append((y.detach(), xx.grad, ww.grad, bb.grad))
        for a, b2 in zip(results[0], results[1]):
            assert torch.equal(a, b2), f"{shape} k{k}: results differ between 1 and 2 threads"
        for a, b2 in zip(results[0], results[2]):
            assert torch.equal(a, b2)


# --- ISA selection ---------------------------------------------------------------------------

def test_cpu_isa_reports_and_sets():
    assert dsconv_ext.cpu_isa() in ("avx512", "avx2", "generic")
    prev = dsconv_ext.set_cpu_isa("generic")
    try:
        assert dsconv_ext.cpu_isa() == "generic"
        with pytest.raises(RuntimeError, match="unknown CPU ISA"):
            dsconv_ext.set_cpu_isa("sse9")
    finally:
        dsconv_ext.set_cpu_isa(prev)


def test_isas_agree_closely():
    # every ISA computes the same function (up to fp32 summation order)
    if len(ISAS) < 2:
        pytest.skip("one ISA only")
    x = torch.randn(2, 24, 15, 29)
    w = torch.randn(24, 1, 5, 5)
    outs = []
    prev = dsconv_ext.cpu_isa()
    try:
        for isa_name in ISAS:
            dsconv_ext.set_cpu_isa(isa_name)
            outs.append(dsconv_ext.depthwise_conv2d(x, w, None, 1, 2))
    finally:
        dsconv_ext.set_cpu_isa(prev)
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-5)


_ENV_SCRIPT = """
import torch, dsconv_ext
x = torch.randn(1, 3, 8, 8); w = torch.randn(3, 1, 3, 3)
try:
    dsconv_ext.depthwise_conv2d(x, w, None, 1, 1)
    print("ISA", dsconv_ext.cpu_isa())
except RuntimeError as e:
    print("ERROR", e)
"""


def _run_with_env(value):
    env = dict(os.environ)
    env.pop("DSCONV_CPU_ISA", None)
    if value is not None:
        env["DSCONV_CPU_ISA"] = value
    root = os.path.dirname(os.path.dirname(dsconv_ext.__file__))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", _ENV_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    return out.stdout.strip() + out.stderr.strip()


def test_env_var_selects_isa():
    best = ISAS[0]
    assert f"ISA {best}" in _run_with_env(None)
    for isa_name in ISAS:
        assert f"ISA {isa_name}" in _run_with_env(isa_name)
    assert "ERROR" in (r := _run_with_env("avx1024")) and "unknown CPU ISA" in r


_ONE_PASS_SCRIPT = """
import sys, torch, dsconv_ext
torch.manual_seed(0)
op = torch.ops.dsconv.depthwise_conv2d_backward
outs = []
for fmt in (torch.channels_last, torch.contiguous_format):
    x = torch.randn(2, 24, 30, 30).contiguous(memory_format=fmt)
    w = torch.randn(24, 1, 3, 3)
    go = torch.randn(2, 24, 30, 30).contiguous(memory_format=fmt)
    outs += list(op(go, x, w, [1, 1], [1, 1, 1, 1], [1, 1], [True, True, True]))
torch.save(outs, sys.argv[1])
"""


def test_one_pass_switch_changes_no_bits(tmp_path):
    # DSCONV_BWD_ONE_PASS=0 (A/B measurements) runs the two passes: the same results, bit for bit
    root = os.path.dirname(os.path.dirname(dsconv_ext.__file__))
    results = []
    for value in ("1", "0"):
        env = dict(os.environ, DSCONV_BWD_ONE_PASS=value)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        path = tmp_path / f"out{value}.pt"
        out = subprocess.run([sys.executable, "-c", _ONE_PASS_SCRIPT, str(path)], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        results.append(torch.load(path))
    for a, b in zip(*results):
        assert torch.equal(a, b)
