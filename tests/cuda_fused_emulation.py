"""Host-side emulation of the CUDA fused separable kernel's index math (csrc/cuda/fused_kernel.cuh,
fused_cuda.h, fused_register.cpp).

A per-block / per-thread Python transcription: the tile plan (BN, nf, bands), the per-pixel window
origins, the channel-chunk loop with its shared-memory tiles (poisoned with NaN, every read
checked to hit a written element inside the array), both depthwise thread mappings (channels
fastest / pixels fastest), the tensor-core warp layout (WMMA 16x16x16 fragments emulated as
float64 matrix products on the same shared-memory addresses), the fp32 FMA thread tile, and both
epilogue staging layouts, storing through element strides into flat storages whose every access
is bounds checked (and every output element must be written exactly once). Arithmetic is float64,
so the result must match the float64 F.conv2d composition to rounding: this checks the tiling,
not the CUDA code itself (races, alignment, launch limits, 16-bit rounding: tests/test_cuda_fused.py).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from cuda_emulation import Buf, cdiv, out_buffer

NT, BP, KC, MAX_TAPS = 256, 64, 32, 64
BN16, BN32 = 256, 128
TILE_MAX_BYTES = 64 * 1024
STATIC_SMEM, PIPE_STATIC_SMEM = 48 * 1024, 16 * 1024  # kFusedStaticSmem, kFusedPipeStaticSmem
HOPPER_SMEM = 227 * 1024  # shared memory per block with opt-in
LDA16, LD16, LDA32, LDB32 = BP + 8, KC + 8, BP + 4, BN32 + 4
RUN = 4


def act_fn(x, act):
    if act == 1:
        return max(x, 0.0)
    if act == 2:
        return min(max(x, 0.0), 6.0)
    if act == 3:
        return x / (1.0 + math.exp(-x))
    if act == 4:
        return x * min(max(x + 3.0, 0.0), 6.0) / 6.0
    if act == 5:
        return 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))
    return x


class Smem:
    """One shared-memory array: NaN-poisoned, reads must hit written elements."""

    def __init__(self, n):
        self.d = np.full(n, np.nan)

    def wr(self, i, v):
        assert 0 <= i < self.d.size, f"smem write out of bounds {i} / {self.d.size}"
        self.d[i] = v

    def rd(self, i):
        assert 0 <= i < self.d.size, f"smem read out of bounds {i} / {self.d.size}"
        v = self.d[i]
        assert not np.isnan(v), f"smem read of an unwritten element {i}"
        return v

    def mat(self, base, rows, cols, ld, col_major=False):
        """WMMA load_matrix_sync of a rows x cols tile (row_major: (r, c) at base + r*ld + c)."""
        r = np.arange(rows)[:, None]
        c = np.arange(cols)[None, :]
        idx = base + (c * ld + r if col_major else r * ld + c)
        assert idx.min() >= 0 and idx.max() < self.d.size, "fragment load out of bounds"
        m = self.d[idx]
        assert not np.isnan(m).any(), "fragment load of unwritten elements"
        return m


def plan(N, Cout, OH, OW, tc, min_blocks, geom=None, tile_mode=0, sms=132, smem=HOPPER_SMEM):
    """fused_plan; geom = dict(KH, KW, dil_h, dil_w, S_h, S_w) for the tile-mode decision."""
    a = dict(HW=OH * OW, NHW=N * OH * OW, bands=cdiv(N * OH * OW, BP), tile_R=0, tiles_img=0)
    a["grid_x"] = a["bands"]
    g = geom or {}
    sq = (g.get("KH") == g.get("KW") and g.get("KH") in (3, 5, 7) and g.get("dil_h") == 1 and g.get("dil_w") == 1
          and g.get("S_h") == g.get("S_w") and g.get("S_h") in (1, 2))
    tile_auto = (tile_mode < 0 and g.get("S_h") == 1 and OW <= 32) or (tile_mode == -2 and g.get("KH") == 3)
    if (tile_mode > 0 or tile_auto) and sq and OW <= BP:
        R = min(BP // OW, OH)
        if tile_mode > 0:
            R = min(R, tile_mode)
        else:
            while R > 1 and N * cdiv(OH, R) < sms:
                R = (R + 1) // 2
        tiles = cdiv(OH, R)
        IR, IWp = (R - 1) * g["S_h"] + g["KH"], (OW - 1) * g["S_w"] + g["KW"]
        XCH = IR * IWp
        if tc:
            XCH += (6 - XCH % 4) % 4
            assert XCH % 4 == 2
        else:
            XCH |= 1
        nbytes = KC * XCH * (2 if tc else 4)
        if nbytes <= TILE_MAX_BYTES and nbytes + STATIC_SMEM <= smem:
            a.update(tile_R=R, tiles_img=tiles, IR=IR, IWp=IWp, XP=IWp, XCH=XCH, grid_x=N * tiles)
            min_blocks = min(min_blocks, sms)
    if tc:
        nf = min(8, cdiv(Cout, 32))
        while nf > 1 and a["grid_x"] * cdiv(Cout, 32 * nf) < min_blocks:
            nf = (nf + 1) // 2
        a["nf"] = nf
        a["BN"] = 32 * a["nf"]
    else:
        a["nf"], a["BN"] = 0, BN32
    return a


def stage_tile(a, X, x, img, ih_base, c0):
    """stage_tile: both lane mappings, 4 loads per lane per step, positions advanced incrementally
    as the CUDA loop advances them (every staged element written exactly once)."""
    NW, U = NT // 32, 4
    iw_base = -a["pad_l"]
    H, W, C = a["H"], a["W"], a["C"]

    def load(c, ih, iw):
        if c < C and 0 <= ih < H and 0 <= iw < W:
            return x.rd(img * a["in_sn"] + c * a["in_sc"] + ih * a["in_sh"] + iw * a["in_sw"])
        return 0.0

    written = set()

    def put(i, v):
        assert i not in written, "staged element written twice"
        written.add(i)
        X.wr(i, v)

    def carry(lo, hi, lim):
        """The CUDA loops' `while (lo >= lim) lo -= lim, ++hi;`."""
        while lo >= lim:
            lo, hi = lo - lim, hi + 1
        return lo, hi

    for warp in range(NW):
        for lane in range(32):
            if a["chan_inner"]:
                items = a["IR"] * a["IWp"]
                col, r = carry(warp, 0, a["IWp"])
                for i0 in range(warp, items, NW * U):
                    for u in range(U):
                        if i0 + u * NW < items:
                            put(lane * a["XCH"] + r * a["XP"] + col, load(c0 + lane, ih_base + r, iw_base + col))
                        col, r = carry(col + NW, r, a["IWp"])
            else:
                CI = cdiv(BP + 6, 32)
                rows = KC * a["IR"]
                r, cc = carry(warp, 0, a["IR"])
                for row0 in range(warp, rows, NW * U):
                    for u in range(U):
                        if row0 + u * NW < rows:
                            for j in range(CI):
                                col = j * 32 + lane
                                if col < a["IWp"]:
                                    put(cc * a["XCH"] + r * a["XP"] + col, load(c0 + cc, ih_base + r, iw_base + col))
                        r, cc = carry(r + NW, cc, a["IR"])
    assert len(written) == KC * a["IR"] * a["IWp"], "staged elements missed"


PIPE_MAX_SMEM = 160 * 1024
LAST_PIPE = [0]  # whether the last emulate() call ran the pipeline mode


def pipe_plan(a, in_offset, smem=HOPPER_SMEM):
    """fused_pipe_plan (16-bit tile mode); in_offset: the input's storage offset in elements (the
    data pointer's alignment: storages themselves are 256-byte aligned)."""
    a.update(pipe=0, x_il=0, XS=0)
    if a["tile_R"] <= 0 or a["nf"] <= 0 or a["C"] % 8:
        return
    if a["chan_inner"]:
        if (in_offset * 2) % 16 or a["in_sc"] != 1 or a["in_sw"] % 8 or a["in_sh"] % 8 or a["in_sn"] % 8:
            return
        il, XS, XP, XCH = 1, 0, a["IWp"], 1
        xe = a["IR"] * a["IWp"] * KC
    else:
        if (in_offset * 2) % 4 or a["in_sw"] != 1 or a["in_sh"] % 2 or a["in_sc"] % 2 or a["in_sn"] % 2 or a["W"] % 2:
            return
        il, XS = 0, a["pad_l"] & 1
        XP = (a["IWp"] + XS + 1) // 2 * 2
        XCH = a["IR"] * XP
        XCH += (6 - XCH % 4) % 4
        assert XCH % 4 == 2
        xe = KC * XCH

    def up32(b):
        return (b + 31) // 32 * 32

    xb, bb, wb = up32(xe * 2), up32(a["BN"] * LD16 * 2), up32(KC * a["taps"] * 4)
    buf = xb + bb + wb + KC * 4
    if 2 * buf > PIPE_MAX_SMEM or 2 * buf + PIPE_STATIC_SMEM > smem:
        return
    a.update(pipe=1, x_il=il, XS=XS, XP=XP, XCH=XCH, pipe_xb=xb, pipe_bb=bb, pipe_wb=wb, pipe_buf=buf)


def pipe_walk(a, tid):
    """pipe_walk: a thread's first X copy unit and its steps per NT units."""
    if a["x_il"]:
        cols = a["IWp"]
        pc, step = tid // 4, NT // 4
        return dict(cols=cols, r0=pc // cols, c0=pc % cols, x0=0, dr=step // cols, dc=step % cols, dx=0)
    cols = a["XP"] // 2
    row, drow = tid // cols, NT // cols
    return dict(cols=cols, c0=tid % cols, dc=NT % cols, x0=row // a["IR"], r0=row % a["IR"],
                dx=drow // a["IR"], dr=drow % a["IR"])


def pipe_issue(a, X, Bp, dwwp, dwbp, x, img, ih_base, c0, co0, pw_w, dw_w, dw_b):
    """pipe_issue for all threads of a block: every copy unit aligned (4 / 16 bytes in global and
    shared memory), all valid or all zero, each shared element written once."""
    C, H, W, IR, IWp = a["C"], a["H"], a["W"], a["IR"], a["IWp"]
    written = set()

    def put(arr, i, v, tag):
        assert (tag, i) not in written, f"{tag}: element {i} copied twice"
        written.add((tag, i))
        arr.wr(i, v)

    for tid in range(NT):
        w = pipe_walk(a, tid)
        if a["x_il"]:
            g = tid % 4
            c = c0 + 8 * g
            r, col = w["r0"], w["c0"]
            for pc in range(tid // 4, IR * IWp, NT // 4):
                assert (r, col) == divmod(pc, IWp), "pixel walk"
                ih, iw = ih_base + r, col - a["pad_l"]
                ok = c < C and 0 <= ih < H and 0 <= iw < W
                dst = pc * KC + 8 * g
                assert (dst * 2) % 16 == 0
                src = img * a["in_sn"] + ih * a["in_sh"] + iw * a["in_sw"] + c
                assert not ok or ((x.offset + src) * 2) % 16 == 0, "16-byte source alignment"
                for e in range(8):
                    put(X, dst + e, x.rd(src + e) if ok else 0.0, "X")
                col, r = col + w["dc"], r + w["dr"]
                if col >= w["cols"]:
                    col, r = col - w["cols"], r + 1
        else:
            iwb = -a["pad_l"] - a["XS"]
            assert iwb % 2 == 0
            r, pr, cc = w["r0"], w["c0"], w["x0"]
            for u in range(tid, KC * IR * w["cols"], NT):
                row, p2 = divmod(u, w["cols"])
                assert (cc, r, pr) == (row // IR, row % IR, p2), "pair walk"
                c, ih, iw = c0 + cc, ih_base + r, iwb + 2 * pr
                ok = c < C and 0 <= ih < H and 0 <= iw < W
                dst = cc * a["XCH"] + r * a["XP"] + 2 * pr
                assert dst % 2 == 0
                src = img * a["in_sn"] + c * a["in_sc"] + ih * a["in_sh"] + iw
                assert not ok or ((x.offset + src) * 2) % 4 == 0, "4-byte source alignment"
                for e in range(2):
                    if ok:
                        assert iw + e < W, "pair straddles the right border"
                    put(X, dst + e, x.rd(src + e) if ok else 0.0, "X")
                pr += w["dc"]
                carry = 0
                if pr >= w["cols"]:
                    pr, carry = pr - w["cols"], 1
                r, cc = r + w["dr"] + carry, cc + w["dx"]
                if r >= IR:
                    r, cc = r - IR, cc + 1
        g = tid % 4
        c = c0 + 8 * g
        for nn in range(tid // 4, a["BN"], NT // 4):
            co = co0 + nn
            ok = co < a["Cout"] and c < C
            assert ((nn * LD16 + 8 * g) * 2) % 16 == 0 and (co * C + c) % 8 == 0
            for e in range(8):
                put(Bp, nn * LD16 + 8 * g + e, pw_w[co * C + c + e] if ok else 0.0, "B")
        taps = a["taps"]
        for u in range(tid, KC * taps // 4, NT):
            ok = 4 * u < (C - c0) * taps
            for e in range(4):
                put(dwwp, 4 * u + e, dw_w[c0 * taps + 4 * u + e] if ok else 0.0, "dww")
        if tid < KC // 4:
            ok = dw_b is not None and c0 + 4 * tid < C
            for e in range(4):
                put(dwbp, 4 * tid + e, dw_b[c0 + 4 * tid + e] if ok else 0.0, "dwb")


def dw_tile_run(a, Xc, X, wk, bias, j0, P, K, S, ws=1, rs=None):
    """dw_tile_run: RUN outputs from the staged channel at offset Xc (column / row strides ws / rs)."""
    r = [bias] * RUN
    orow, ow = j0 // a["OW"], j0 % a["OW"]
    XP = a["XP"] if rs is None else rs
    if j0 + RUN <= P and ow + RUN <= a["OW"]:
        L = (RUN - 1) * S + K
        p0 = Xc + orow * S * XP + ow * S * ws
        for kh in range(K):
            xr = [X.rd(p0 + kh * XP + i * ws) for i in range(L)]
            for kw in range(K):
                for i in range(RUN):
                    r[i] += wk[kh * K + kw] * xr[i * S + kw]
        a["fast_runs"] += 1
        return [act_fn(v, a["act"]) for v in r]
    for i in range(RUN):
        if j0 + i < P:
            p0 = Xc + orow * S * XP + ow * S * ws
            for kh in range(K):
                for kw in range(K):
                    r[i] += wk[kh * K + kw] * X.rd(p0 + kh * XP + kw * ws)
            r[i] = act_fn(r[i], a["act"])
        else:
            r[i] = 0.0
        ow += 1
        if ow == a["OW"]:
            ow, orow = 0, orow + 1
    return r


def dw_point(a, x, src_off, dww, wbase, bias, ih0, iw0, K):
    acc = bias
    if K > 0:
        if ih0 >= 0 and iw0 >= 0 and ih0 + K <= a["H"] and iw0 + K <= a["W"]:
            p0 = src_off + ih0 * a["in_sh"] + iw0 * a["in_sw"]
            for kh in range(K):
                for kw in range(K):
                    acc += dww.rd(wbase + kh * K + kw) * x.rd(p0 + kh * a["in_sh"] + kw * a["in_sw"])
        else:
            for kh in range(K):
                ih = ih0 + kh
                if ih < 0 or ih >= a["H"]:
                    continue
                for kw in range(K):
                    iw = iw0 + kw
                    if 0 <= iw < a["W"]:
                        acc += dww.rd(wbase + kh * K + kw) * x.rd(src_off + ih * a["in_sh"] + iw * a["in_sw"])
    else:
        for kh in range(a["KH"]):
            ih = ih0 + kh * a["dil_h"]
            if ih < 0 or ih >= a["H"]:
                continue
            for kw in range(a["KW"]):
                iw = iw0 + kw * a["dil_w"]
                if 0 <= iw < a["W"]:
                    acc += dww.rd(wbase + kh * a["KW"] + kw) * x.rd(src_off + ih * a["in_sh"] + iw * a["in_sw"])
    return acc


def dw_run(a, x, src_c, dww, wbase, bias, ih0s, iw0s, in_offs, j0, P, K, S):
    """RUN outputs of one channel: sliding window when the run is one interior row segment."""
    if K > 0 and S > 0:
        L = (RUN - 1) * S + K
        ih0, iw0 = int(ih0s.rd(j0)), int(iw0s.rd(j0))
        if (j0 + RUN <= P and int(iw0s.rd(j0 + RUN - 1)) == iw0 + (RUN - 1) * S and ih0 >= 0 and iw0 >= 0
                and ih0 + K <= a["H"] and iw0 + L <= a["W"]):
            r = [bias] * RUN
            p0 = src_c + int(in_offs.rd(j0)) + ih0 * a["in_sh"] + iw0 * a["in_sw"]
            for kh in range(K):
                pr = p0 + kh * a["in_sh"]
                xr = [x.rd(pr + i * a["in_sw"]) for i in range(L)]
                for kw in range(K):
                    w = dww.rd(wbase + kh * K + kw)
                    for i in range(RUN):
                        r[i] += w * xr[i * S + kw]
            a["fast_runs"] += 1
            return [act_fn(v, a["act"]) for v in r]
    out = []
    for i in range(RUN):
        j = j0 + i
        if j < P:
            v = dw_point(a, x, src_c + int(in_offs.rd(j)), dww, wbase, bias, int(ih0s.rd(j)), int(iw0s.rd(j)), K)
            out.append(act_fn(v, a["act"]))
        else:
            out.append(0.0)
    return out


def run_block(a, bx, by, tc, K, S, x, dw_w, dw_b, pw_w, pw_b, out, written):
    tile = a["tile_R"] > 0
    g0 = bx * BP
    P = min(BP, a["NHW"] - g0)
    if tile:
        img = bx // a["tiles_img"]
        oh0 = (bx - img * a["tiles_img"]) * a["tile_R"]
        P = min(a["tile_R"], a["OH"] - oh0) * a["OW"]
    co0 = by * a["BN"]
    C, Cout, taps = a["C"], a["Cout"], a["taps"]
    ih0s, iw0s, dww, dwb = Smem(BP), Smem(BP), Smem(KC * MAX_TAPS), Smem(KC)
    in_offs, out_offs = Smem(BP), Smem(BP)
    A = Smem(KC * LDA16) if tc else Smem(KC * LDA32)
    B = Smem(BN16 * LD16) if tc else Smem(KC * LDB32)
    stage = Smem((NT // 32) * 256)
    for tid in range(BP if not tile else 0):
        g = g0 + (tid if tid < P else 0)
        n = g // a["HW"]
        q = g - n * a["HW"]
        oh, ow = q // a["OW"], q - (q // a["OW"]) * a["OW"]
        ih0s.wr(tid, oh * a["S_h"] - a["pad_t"])
        iw0s.wr(tid, ow * a["S_w"] - a["pad_l"])
        in_offs.wr(tid, n * a["in_sn"])
        out_offs.wr(tid, n * a["out_sn"] + q * a["out_sq"])
    if tile:
        assert P <= BP
        for tid in range(BP):
            q = oh0 * a["OW"] + (tid if tid < P else 0)
            out_offs.wr(tid, img * a["out_sn"] + q * a["out_sq"])
    acc16 = {(w, f): np.zeros((16, 16)) for w in range(NT // 32) for f in range(8)}
    acc32 = {tid: np.zeros((4, 8)) for tid in range(NT)}
    runs, tasks = BP // RUN, BP * KC // (RUN * NT)
    for c0 in range(0, C, KC):
        # a new chunk overwrites everything the previous one wrote (after __syncthreads)
        for tid in range(NT):
            for i in range(tid, KC * taps, NT):
                c = c0 + i // taps
                dww.wr(i, dw_w[c0 * taps + i] if c < C else 0.0)
            if tid < KC:
                dwb.wr(tid, dw_b[c0 + tid] if (dw_b is not None and c0 + tid < C) else 0.0)
            if tc:
                for i in range(tid, a["BN"] * KC, NT):
                    kk, nn = i % KC, i // KC
                    co, c = co0 + nn, c0 + kk
                    B.wr(nn * LD16 + kk, pw_w[co * C + c] if (co < Cout and c < C) else 0.0)
            else:
                for i in range(tid, BN32 * KC, NT):
                    kk, nn = i % KC, i // KC
                    co, c = co0 + nn, c0 + kk
                    B.wr(kk * LDB32 + nn, pw_w[co * C + c] if (co < Cout and c < C) else 0.0)
        if tile:
            xdw, xdb = dww, dwb
            if a.get("pipe"):
                # the pipeline kernel's buffers (fresh and poisoned: double buffering only times)
                assert tc and a["pipe_xb"] % 32 == 0 and a["pipe_bb"] % 32 == 0 and a["pipe_buf"] % 32 == 0
                X = Smem(a["pipe_xb"] // 2)
                B = Smem(a["pipe_bb"] // 2)
                xdw, xdb = Smem(a["pipe_wb"] // 4), Smem(KC)
                pipe_issue(a, X, B, xdw, xdb, x, img, oh0 * S - a["pad_t"], c0, co0, pw_w, dw_w, dw_b)
                ws, rs = (KC, a["XP"] * KC) if a["x_il"] else (1, a["XP"])
            else:
                X = Smem(KC * a["XCH"])  # poisoned: the compute below may read only what staging wrote
                stage_tile(a, X, x, img, oh0 * S - a["pad_t"], c0)
                ws, rs = 1, a["XP"]
            for warp in range(NT // 32):
                for lane in range(32):
                    wk = [xdw.rd(lane * K * K + t) for t in range(K * K)]
                    bias = xdb.rd(lane)
                    xoff = (lane if a["x_il"] else lane * a["XCH"] + a["XS"]) if a.get("pipe") else lane * a["XCH"]
                    for t in range(tasks):
                        j0 = (warp + t * (NT // 32)) * RUN
                        v = [0.0] * RUN
                        if j0 < P and c0 + lane < C:
                            v = dw_tile_run(a, xoff, X, wk, bias, j0, P, K, S, ws, rs)
                        base = lane * (LDA16 if tc else LDA32) + j0
                        assert base % 4 == 0, "4-element vector store alignment"
                        for i in range(RUN):
                            A.wr(base + i, v[i])
        for tid in range(NT if not tile else 0):
            run_a = tid // KC if a["chan_inner"] else tid % runs
            cc_a = tid % KC if a["chan_inner"] else tid // runs
            run_step = NT // KC if a["chan_inner"] else 0
            cc_step = 0 if a["chan_inner"] else NT // runs
            for t in range(tasks):
                cc, j0 = cc_a + t * cc_step, (run_a + t * run_step) * RUN
                c = c0 + cc
                v = [0.0] * RUN
                if c < C:
                    v = dw_run(a, x, c * a["in_sc"], dww, cc * taps, dwb.rd(cc), ih0s, iw0s, in_offs, j0, P, K, S)
                base = cc * (LDA16 if tc else LDA32) + j0
                assert base % 4 == 0, "4-element vector store alignment"
                for i in range(RUN):
                    A.wr(base + i, v[i])
        if tc:
            for warp in range(NT // 32):
                wm, wn = warp % 4, warp // 4
                for k in range(0, KC, 16):
                    fa = A.mat(k * LDA16 + wm * 16, 16, 16, LDA16, col_major=True)
                    for f in range(8):
                        if f < a["nf"]:
                            fb = B.mat((wn * a["nf"] + f) * 16 * LD16 + k, 16, 16, LD16, col_major=True)
                            acc16[warp, f] += fa @ fb
        else:
            for tid in range(NT):
                tx, ty = tid % 16, tid // 16
                if co0 + ty * 8 < Cout:
                    for k in range(KC):
                        xv = [A.rd(k * LDA32 + tx * 4 + i) for i in range(4)]
                        assert (k * LDA32 + tx * 4) % 4 == 0 and (k * LDB32 + ty * 8) % 4 == 0, "float4 alignment"
                        wv = [B.rd(k * LDB32 + ty * 8 + m) for m in range(8)]
                        acc32[tid] += np.outer(xv, wv)
    # epilogue
    if tc:
        for warp in range(NT // 32):
            wm, wn = warp % 4, warp // 4
            st = warp * 256
            for f in range(8):
                cb = co0 + (wn * a["nf"] + f) * 16
                if f < a["nf"] and cb < Cout:
                    frag = acc16[warp, f]
                    for row in range(16):  # store_matrix_sync, ldm 16
                        for col in range(16):
                            stage.wr(st + (row * 16 + col if a["out_cl"] else col * 16 + row), frag[row, col])
                    for lane in range(32):
                        for r in range(8):
                            e = lane + 32 * r
                            row = e // 16 if a["out_cl"] else e % 16
                            col = e % 16 if a["out_cl"] else e // 16
                            j, co = wm * 16 + row, cb + col
                            if j < P and co < Cout:
                                v = stage.rd(st + e)
                                if pw_b is not None:
                                    v += pw_b[co]
                                store(out, written, int(out_offs.rd(j)) + co * a["out_sc"], act_fn(v, a["pw_act"]))
    else:
        for tid in range(NT):
            tx, ty = tid % 16, tid // 16
            for m in range(8):
                co = co0 + ty * 8 + m
                if co >= Cout:
                    break
                bias = pw_b[co] if pw_b is not None else 0.0
                for i in range(4):
                    j = tx * 4 + i
                    if j < P:
                        store(out, written, int(out_offs.rd(j)) + co * a["out_sc"],
                              act_fn(acc32[tid][i, m] + bias, a["pw_act"]))


def store(out, written, off, v):
    assert off not in written, f"output element {off} written twice"
    written.add(off)
    out.wr(off, v)


def emulate(x, dw_w, dw_b, pw_w, pw_b, stride, pad, dil, act, pw_act, tc, out_cl, min_blocks=264, tile_mode=0,
            sms=132, pipe=False, smem=HOPPER_SMEM):
    """The fused kernel's output (float64) for input x (any strides), pad = (t, b, l, r)."""
    N, C, H, W = x.shape
    Cout = pw_w.shape[0]
    KH, KW = dw_w.shape[2:]
    OH = (H + pad[0] + pad[1] - dil[0] * (KH - 1) - 1) // stride[0] + 1
    OW = (W + pad[2] + pad[3] - dil[1] * (KW - 1) - 1) // stride[1] + 1
    assert KH * KW <= MAX_TAPS
    geom = dict(KH=KH, KW=KW, dil_h=dil[0], dil_w=dil[1], S_h=stride[0], S_w=stride[1])
    def planned(tile_mode):
        a = plan(N, Cout, OH, OW, tc, min_blocks, geom, tile_mode, sms, smem)
        a.update(C=C, Cout=Cout, H=H, W=W, OH=OH, OW=OW, KH=KH, KW=KW, taps=KH * KW, S_h=stride[0], S_w=stride[1],
                 dil_h=dil[0], dil_w=dil[1], pad_t=pad[0], pad_l=pad[2], act=act, pw_act=pw_act,
                 out_cl=int(out_cl), pipe=0)
        a["in_sn"], a["in_sc"], a["in_sh"], a["in_sw"] = x.stride()
        a["chan_inner"] = int(x.stride(1) == 1 and C > 1)
        return a

    # as fused_register.cpp: the pipeline's automatic plan also takes 3x3 tiles on wider maps; if
    # the pipeline cannot run there, the staging loops' own automatic plan
    a = planned(-2 if pipe and tc and tile_mode < 0 else tile_mode)
    if pipe and tc:
        pipe_plan(a, x.storage_offset(), smem)
        if not a["pipe"] and tile_mode < 0:
            a = planned(-1)
    out = out_buffer((N, Cout, OH, OW), out_cl)
    a["out_sn"], a["out_sc"], osh, a["out_sq"] = out.strides
    assert OH == 1 or osh == OW * a["out_sq"]
    sq = KH == KW and dil == (1, 1) and stride[0] == stride[1] and stride[0] in (1, 2)
    K = KH if sq and KH in (3, 5, 7) else 0
    S = stride[0] if K else 0
    a["fast_runs"] = 0
    xb = Buf(x.double())
    dw = dw_w.double().reshape(C, -1).flatten().tolist()
    db = None if dw_b is None else dw_b.double().tolist()
    pw = pw_w.double().reshape(Cout, C).flatten().tolist()
    pb = None if pw_b is None else pw_b.double().tolist()
    written = set()
    LAST_PIPE[0] = a["pipe"]
    if a["tile_R"]:
        assert K > 0 and S > 0
    for bx in range(a["grid_x"]):
        for by in range(cdiv(Cout, a["BN"])):
            run_block(a, bx, by, tc, K, S, xb, dw, db, pw, pb, out, written)
    assert len(written) == N * Cout * OH * OW, "output elements left unwritten"
    return out.tensor(), a["fast_runs"], a["tile_R"]


ACTS = [None, F.relu, F.relu6, F.silu, F.hardswish, F.gelu]


def reference(x, dw_w, dw_b, pw_w, pw_b, stride, pad, dil, act, pw_act):
    xd = F.pad(x.double(), (pad[2], pad[3], pad[0], pad[1]))
    y = F.conv2d(xd, dw_w.double(), None if dw_b is None else dw_b.double(), stride, 0, dil, groups=x.shape[1])
    y = ACTS[act](y) if act else y
    z = F.conv2d(y, pw_w.double(), None if pw_b is None else pw_b.double())
    return ACTS[pw_act](z) if pw_act else z


# (N, C, H, W), Cout, (KH, KW), stride, pad (t, b, l, r), dil, act, pw_act, input layout, bias
CASES = [
    ((1, 40, 9, 11), 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, 0, "nchw", True),  # 2 bands, channel tail
    ((2, 33, 7, 10), 70, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, 3, "cl", False),  # stride 2, Cout tail
    ((1, 8, 6, 13), 300, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 5, 4, "view", True),  # 2 Cout blocks (16-bit)
    ((1, 5, 11, 9), 3, (7, 7), (1, 2), (3, 3, 2, 4), (1, 1), 4, 1, "cl", True),  # 7x7, C < chunk, odd pad
    ((1, 6, 10, 9), 17, (3, 2), (1, 1), (2, 0, 1, 1), (2, 3), 3, 5, "nchw", True),  # runtime K, dilation
    ((1, 1, 12, 12), 150, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 0, 0, "cl", False),  # C = 1, fp32: 2 Cout blocks
    ((1, 8, 9, 40), 20, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, 0, "cl", True),  # sliding window 7x7 s2
    ((1, 12, 6, 30), 12, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 3, 2, "view", True),  # sliding window 5x5 s1
    ((5, 36, 5, 6), 100, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, 0, "cl", True),  # bands span images (30 px)
    ((3, 8, 2, 2), 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, 1, "nchw", True),  # tiny images, OH = OW = 1
    # the cp.async pipeline (stage 3): channels-major pairs with the odd-padding shift, chunk tail
    ((2, 40, 9, 10), 40, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2, 0, "nchw", True),
    ((1, 8, 10, 12), 16, (7, 7), (1, 1), (3, 3, 3, 3), (1, 1), 0, 0, "nchw", False),  # 7x7, XS = 1
    ((1, 16, 9, 20), 24, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 3, 1, "cl", True),  # pixel-major, stride 2
]


def make_input(shape, layout, gen):
    N, C, H, W = shape
    if layout == "nchw":
        return torch.randn(shape, generator=gen, dtype=torch.float64)
    if layout == "cl":
        return torch.randn(shape, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    big = torch.randn(N + 1, C + 2, 2 * H + 1, W + 3, generator=gen, dtype=torch.float64)
    return big[1:, 1 : C + 1, 1::2, 2 : W + 2]


def check_case(shape, Cout, k, stride, pad, dil, act, pw_act, layout, bias, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = make_input(shape, layout, gen)
    C = shape[1]
    dw_w = torch.randn(C, 1, *k, generator=gen, dtype=torch.float64)
    pw_w = torch.randn(Cout, C, 1, 1, generator=gen, dtype=torch.float64)
    dw_b = torch.randn(C, generator=gen, dtype=torch.float64) if bias else None
    pw_b = torch.randn(Cout, generator=gen, dtype=torch.float64) if bias else None
    ref = reference(x, dw_w, dw_b, pw_w, pw_b, stride, pad, dil, act, pw_act)
    errs = {}
    errs["fast_runs"] = errs["tile_runs"] = 0
    # bands (0); automatic with the most rows that fit (-1 with 1 SM) and with the rows halved for
    # 132 SMs (-1); tiles forced on every eligible shape, most rows (64)
    # pipe: the cp.async pipeline where it applies (16-bit, aligned), forced tiles and automatic;
    # smem: a device with 99 KiB per block (sm_86 / sm_89) takes smaller plans
    for tile_mode, sms, pipe, smem in ((0, 132, False, HOPPER_SMEM), (-1, 1, False, HOPPER_SMEM),
                                       (-1, 132, False, HOPPER_SMEM), (64, 1, False, HOPPER_SMEM),
                                       (64, 1, True, HOPPER_SMEM), (-1, 132, True, HOPPER_SMEM),
                                       (64, 1, True, 99 * 1024)):
        for tc in ((True,) if pipe else (True, False)):
            for out_cl in (False, True):
                # the 16-bit N tile: split to the narrowest (many blocks wanted) and to the widest
                got, fast, R = emulate(x, dw_w, dw_b, pw_w, pw_b, stride, pad, dil, act, pw_act, tc, out_cl,
                                       min_blocks=264 if out_cl else 0, tile_mode=tile_mode, sms=sms, pipe=pipe,
                                       smem=smem)
                errs["tile_runs" if R else "fast_runs"] += fast
                if tile_mode:
                    errs.setdefault("tile_R", set()).add(R)
                assert got.shape == ref.shape
                err = ((got - ref).norm() / ref.norm()).item()
                name = (("tc" if tc else "fp32") + ("_cl" if out_cl else "") + (f"_tile{tile_mode}" if tile_mode else "")
                        + ("_pipe" if pipe else "") + ("" if smem == HOPPER_SMEM else f"_smem{smem // 1024}"))
                if pipe and R:
                    errs["pipe_blocks"] = errs.get("pipe_blocks", 0) + int(got is not None and LAST_PIPE[0])
                assert err < 1e-12, f"{name}: rel err {err}"
                errs[name] = err
    return errs


def check_plan_limits():
    """Plans fit the device's shared memory per block: a 7x7 tile on 64-wide rows (fp16, C = 256,
    Cout = 256) takes the pipeline on Hopper, the staging loop with 99 KiB (sm_86 / sm_89), and
    bands with 64 KiB."""
    geom = dict(KH=7, KW=7, dil_h=1, dil_w=1, S_h=1, S_w=1)
    got = {}
    for smem in (HOPPER_SMEM, 99 * 1024, 64 * 1024):
        a = plan(1, 256, 7, 64, True, 0, geom, 64, 132, smem)  # forced tiles; min_blocks 0: widest N tile
        a.update(C=256, W=64, pad_l=3, taps=49, chan_inner=0, in_sn=256 * 7 * 64, in_sc=7 * 64, in_sh=64, in_sw=1)
        pipe_plan(a, 0, smem)
        x_bytes = 2 * a["pipe_buf"] + PIPE_STATIC_SMEM if a["pipe"] else KC * a.get("XCH", 0) * 2 + STATIC_SMEM
        assert not a["tile_R"] or x_bytes <= smem, (smem, x_bytes)
        got[smem] = ("pipe" if a["pipe"] else "tile") if a["tile_R"] else "bands"
    assert got == {HOPPER_SMEM: "pipe", 99 * 1024: "tile", 64 * 1024: "bands"}, got


def run_all(verbose=True):
    check_plan_limits()
    for case in CASES:
        errs = check_case(*case)
        if verbose:
            print(case, {k: (f"{v:.1e}" if isinstance(v, float) else v) for k, v in errs.items()})
        if case[2] in ((5, 5), (7, 7)) and case[3][0] == case[3][1] or case[0] == (1, 40, 9, 11):  # sliding window ran
            assert errs["fast_runs"] > 0, case
        if case in CASES[-3:]:  # the pipeline cases ran it
            assert errs.get("pipe_blocks", 0) > 0, case


if __name__ == "__main__":
    run_all()
