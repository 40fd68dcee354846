"""Host-side emulation of the CUDA kernels' index math (csrc/cuda/*.cu, dw_dispatch.cpp).

A literal, per-block / per-thread Python transcription of the tiled kernels: tile configuration,
shared-memory staging (poisoned with NaN, bounds checked, float4 alignment asserted), the
per-thread compute loops and the stores, all through element strides into flat storages whose
every read and write is bounds checked. It checks the arithmetic of the tiling against F.conv2d
on a CPU; it proves nothing about the CUDA code itself (races, real alignment, launch limits),
which only a GPU run (tests/test_cuda.py) can. Keep it in sync when the kernels change.

Run directly (python tests/cuda_emulation.py) or through tests/test_cuda_emulation.py.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

RH = RW = 4
SMEM_BUDGET = 48 * 1024
INT32_MAX = 2**31 - 1


def cdiv(a, b):
    return -(-a // b)


def rup(a, b):
    return cdiv(a, b) * b


class Buf:
    """A flat storage with (n, c, h, w) element strides; reads/writes are bounds checked."""

    def __init__(self, t: torch.Tensor):
        self.shape = tuple(t.shape)
        self.strides = tuple(t.stride())
        self.offset = t.storage_offset()
        # Materialise the exact storage of the view.
        st = t.untyped_storage()
        base = torch.empty(0, dtype=t.dtype).set_(st, 0, (st.nbytes() // t.element_size(),), (1,))
        self.data = base.double().numpy().copy()

    def rd(self, off):
        off += self.offset
        assert 0 <= off < self.data.size, f"global read out of bounds: {off} / {self.data.size}"
        return self.data[off]

    def wr(self, off, v):
        off += self.offset
        assert 0 <= off < self.data.size, f"global write out of bounds: {off} / {self.data.size}"
        self.data[off] = v

    def tensor(self):
        t = torch.from_numpy(self.data.copy())
        return t.as_strided(self.shape, self.strides, self.offset)


def out_buffer(shape, channels_last):
    t = torch.full(shape, float("nan"), dtype=torch.float64)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return Buf(t)


# --------------------------------------------------------------------------------------------
# Params (DwParams) and the dispatcher's decisions


class P:
    def __init__(self, x, w, stride, pad, dil):
        self.N, self.C, self.H, self.W = x.shape
        self.OC, _, self.KH, self.KW = w.shape
        self.M = self.OC // self.C
        self.stride_h, self.stride_w = stride
        self.pad_t, self.pad_b, self.pad_l, self.pad_r = pad
        self.dil_h, self.dil_w = dil
        self.OH = (self.H + self.pad_t + self.pad_b - self.dil_h * (self.KH - 1) - 1) // self.stride_h + 1
        self.OW = (self.W + self.pad_l + self.pad_r - self.dil_w * (self.KW - 1) - 1) // self.stride_w + 1
        self.taps = self.KH * self.KW


def virt_to_real(v, up, extent):
    if v < 0:
        return -1
    if up != 1:
        if v % up != 0:
            return -1
        v //= up  # v >= 0 here: C++ division agrees
    return v if v < extent else -1


def plane_config(DH, DW, P_, KH, KW, S_h, S_w, dil_h, dil_w, small):
    bx = min(32, cdiv(DW, RW))
    by = min(256 // bx, cdiv(DH, RH))
    bz = max(1, min(min(64, 256 // (bx * by)), P_))
    while True:
        TH, TW = by * RH, bx * RW
        TIH = (TH - 1) * S_h + (KH - 1) * dil_h + 1
        TIW = (TW - 1) * S_w + (KW - 1) * dil_w + 1
        if small:
            nch = cdiv((RW - 1) * S_w + KW, 4)
            PW = rup(max(TIW, (bx - 1) * RW * S_w + 4 * nch), 4)
            WSZ = 0
        else:
            KWP = rup(KW, 4)
            PW = rup(max(TIW, TW + KWP), 4)
            WSZ = KH * KWP
        smem = bz * (TIH * PW + WSZ) * 4
        if smem <= SMEM_BUDGET:
            c = dict(BX=bx, BY=by, BZ=bz, TH=TH, TW=TW, TIH=TIH, TIW=TIW, PW=PW, WSZ=WSZ,
                     tilesX=cdiv(DW, TW), tilesY=cdiv(DH, TH), smem=smem)
            c["blocks"] = cdiv(P_, bz) * c["tilesX"] * c["tilesY"]
            return c
        if bz > 1:
            bz //= 2
        elif by > 1:
            by = (by + 1) // 2
        elif bx > 1:
            bx = (bx + 1) // 2
        else:
            return None


# --------------------------------------------------------------------------------------------
# Plane kernels (dw_plane.cu)


def load_tile(smem, base, a, sp, src, vy0, vx0, tid, nthr):
    # Thread tid stages elements i = tid + j * nthr of the row-major TIH x PW tile, its (row, col)
    # walked incrementally: one step is dr rows + dc columns, then one wrap test.
    PW, TIH, TIW = a["PW"], a["TIH"], a["TIW"]
    total = TIH * PW
    batch = 8
    dr, dc = divmod(nthr, PW)
    r0 = tid // PW
    c0 = tid - r0 * PW
    if a["up_h"] == 1 and a["up_w"] == 1:
        sy, sx = vy0 + r0, vx0 + c0
        xwrap = vx0 + PW
        yhi = max(0, min(a["SH"], vy0 + TIH))
        xhi = 0 if sp is None else max(0, min(a["SW"], vx0 + TIW))
        off = sy * a["s_sh"] + sx * a["s_sw"]  # the kernel walks sp + off as a byte address
        dstep = dr * a["s_sh"] + dc * a["s_sw"]
        dwrap = a["s_sh"] - PW * a["s_sw"]
        for b in range(tid, total, batch * nthr):
            v = []
            for k in range(batch):
                assert (sy - vy0, sx - vx0) == divmod(b + k * nthr, PW), "load_tile walk lost its position"
                assert off == sy * a["s_sh"] + sx * a["s_sw"], "load_tile walk lost its address"
                # unsigned compares: a negative sy / sx is out of range
                v.append(src.rd(sp + off) if (0 <= sy < yhi and 0 <= sx < xhi) else 0.0)
                sy, sx, off = sy + dr, sx + dc, off + dstep
                if sx >= xwrap:
                    sx, sy, off = sx - PW, sy + 1, off + dwrap
            for k in range(batch):
                i = b + k * nthr
                if i < total:
                    smem[base + i] = v[k]
    else:
        r, col = r0, c0
        for b in range(tid, total, batch * nthr):
            v = []
            for k in range(batch):
                assert (r, col) == divmod(b + k * nthr, PW), "load_tile walk lost its position"
                x = 0.0
                if sp is not None and r < TIH and col < TIW:
                    sy = virt_to_real(vy0 + r, a["up_h"], a["SH"])
                    sx = virt_to_real(vx0 + col, a["up_w"], a["SW"])
                    if sy >= 0 and sx >= 0:
                        x = src.rd(sp + sy * a["s_sh"] + sx * a["s_sw"])
                v.append(x)
                r, col = r + dr, col + dc
                if col >= PW:
                    r, col = r + 1, col - PW
            for k in range(batch):
                i = b + k * nthr
                if i < total:
                    smem[base + i] = v[k]


def smem_rd(smem, i):
    assert 0 <= i < smem.size, f"smem read out of bounds {i} / {smem.size}"
    return smem[i]


def smem_rd4(smem, i):
    assert i % 4 == 0, f"misaligned float4 smem read at {i}"
    return [smem_rd(smem, i + k) for k in range(4)]


def run_plane(a, cfg, K_small, S, src, w, bias, dst):
    BX, BY, BZ = cfg["BX"], cfg["BY"], cfg["BZ"]
    nthr = BX * BY
    for blk in range(cfg["blocks"]):
        smem = np.full(cfg["smem"] // 4, np.nan)
        b = blk
        txi = b % a["tilesX"]
        b //= a["tilesX"]
        tyi = b % a["tilesY"]
        pg = b // a["tilesY"]
        slices = []
        for tz in range(BZ):
            plane = pg * BZ + tz
            active = plane < a["P"]
            n = plane // a["Cd"] if active else 0
            cd = plane % a["Cd"] if active else 0
            slices.append((active, n, cd))
        oy0, ox0 = tyi * a["TH"], txi * a["TW"]
        acc = {}
        for tz in range(BZ):
            active, n, cd = slices[tz]
            b0 = bias[cd] if (active and bias is not None) else 0.0
            for ty in range(BY):
                for tx in range(BX):
                    acc[(tx, ty, tz)] = np.full((RH, RW), b0)
        KWP = (a["KW"] + 3) & ~3
        KK = a["KH"] * a["KW"]
        for m in range(a["Msrc"]):
            # load phase (all slices), then compute (all threads)
            for tz in range(BZ):
                active, n, cd = slices[tz]
                wc = cd * a["M"] + m if a["bwd"] else cd
                sc = wc if a["bwd"] else cd // a["M"]
                sp = n * a["s_sn"] + sc * a["s_sc"] if active else None
                if K_small:
                    tbase = tz * (a["TIH"] * a["PW"])
                    vy0, vx0 = oy0 * S - a["pad_t"], ox0 * S - a["pad_l"]
                else:
                    tbase = tz * (a["TIH"] * a["PW"] + a["WSZ"])
                    vy0, vx0 = oy0 * a["S_h"] - a["pad_t"], ox0 * a["S_w"] - a["pad_l"]
                for tid in range(nthr):
                    load_tile(smem, tbase, a, sp, src, vy0, vx0, tid, nthr)
                if not K_small:
                    wbase = tbase + a["TIH"] * a["PW"]
                    for tid in range(nthr):
                        for i in range(tid, a["WSZ"], nthr):
                            kh, kw = divmod(i, KWP)
                            v = 0.0
                            if active and kw < a["KW"]:
                                t = kh * a["KW"] + kw
                                v = w[wc * KK + (KK - 1 - t if a["bwd"] else t)]
                            smem[wbase + i] = v
            for tz in range(BZ):
                active, n, cd = slices[tz]
                wc = cd * a["M"] + m if a["bwd"] else cd
                for ty in range(BY):
                    for tx in range(BX):
                        ly, lx = ty * RH, tx * RW
                        A = acc[(tx, ty, tz)]
                        if K_small:
                            K = K_small
                            tbase = tz * (a["TIH"] * a["PW"])
                            wr = [w[wc * K * K + (K * K - 1 - t if a["bwd"] else t)] if active else 0.0
                                  for t in range(K * K)]
                            NR = (RH - 1) * S + K
                            NC = (RW - 1) * S + K
                            NCH = (NC + 3) // 4
                            for r in range(NR):
                                row = tbase + (ly * S + r) * a["PW"] + lx * S
                                v = []
                                for q in range(NCH):
                                    v += smem_rd4(smem, row + 4 * q)
                                for i in range(RH):
                                    kh = r - i * S
                                    if kh < 0 or kh >= K:
                                        continue
                                    for j in range(RW):
                                        for kw in range(K):
                                            A[i, j] += wr[kh * K + kw] * v[j * S + kw]
                        else:
                            tbase = tz * (a["TIH"] * a["PW"] + a["WSZ"])
                            wsm = tbase + a["TIH"] * a["PW"]
                            fast = a["S_h"] == 1 and a["S_w"] == 1 and a["dil_h"] == 1 and a["dil_w"] == 1
                            if fast:
                                for kh in range(a["KH"]):
                                    r0 = tbase + (ly + kh) * a["PW"] + lx
                                    wrow = wsm + kh * KWP
                                    cur = [smem_rd4(smem, r0 + i * a["PW"]) for i in range(RH)]
                                    for kw4 in range(0, a["KW"], 4):
                                        wv = smem_rd4(smem, wrow + kw4)
                                        nxt = [smem_rd4(smem, r0 + i * a["PW"] + kw4 + 4) for i in range(RH)]
                                        nq = a["KW"] - kw4
                                        for q in range(4):
                                            if q > 0 and q >= nq:
                                                break
                                            for i in range(RH):
                                                win = cur[i] + nxt[i]
                                                for j in range(RW):
                                                    A[i, j] += wv[q] * win[q + j]
                                        cur = nxt
                            else:
                                for kh in range(a["KH"]):
                                    for kw in range(a["KW"]):
                                        wv = smem_rd(smem, wsm + kh * KWP + kw)
                                        for i in range(RH):
                                            row = (tbase + ((ly + i) * a["S_h"] + kh * a["dil_h"]) * a["PW"]
                                                   + lx * a["S_w"] + kw * a["dil_w"])
                                            for j in range(RW):
                                                A[i, j] += wv * smem_rd(smem, row + j * a["S_w"])
        # stores
        for tz in range(BZ):
            active, n, cd = slices[tz]
            if not active:
                continue
            for ty in range(BY):
                for tx in range(BX):
                    ly, lx = ty * RH, tx * RW
                    A = acc[(tx, ty, tz)]
                    dp = n * a["d_sn"] + cd * a["d_sc"]
                    x0 = ox0 + lx
                    for i in range(RH):
                        y = oy0 + ly + i
                        if y >= a["DH"]:
                            break
                        for j in range(RW):
                            if x0 + j < a["DW"]:
                                dst.wr(dp + y * a["d_sh"] + (x0 + j) * a["d_sw"], A[i, j])


def plane_args_fwd(p, src, dst):
    return dict(P=p.N * p.OC, Cd=p.OC, M=p.M, Msrc=1, bwd=0, DH=p.OH, DW=p.OW,
                d_sn=dst.strides[0], d_sc=dst.strides[1], d_sh=dst.strides[2], d_sw=dst.strides[3],
                SH=p.H, SW=p.W, s_sn=src.strides[0], s_sc=src.strides[1], s_sh=src.strides[2], s_sw=src.strides[3],
                KH=p.KH, KW=p.KW, S_h=p.stride_h, S_w=p.stride_w, dil_h=p.dil_h, dil_w=p.dil_w, up_h=1, up_w=1,
                pad_t=p.pad_t, pad_l=p.pad_l)


def plane_args_bwd(p, go, gi):
    return dict(P=p.N * p.C, Cd=p.C, M=p.M, Msrc=p.M, bwd=1, DH=p.H, DW=p.W,
                d_sn=gi.strides[0], d_sc=gi.strides[1], d_sh=gi.strides[2], d_sw=gi.strides[3],
                SH=p.OH, SW=p.OW, s_sn=go.strides[0], s_sc=go.strides[1], s_sh=go.strides[2], s_sw=go.strides[3],
                KH=p.KH, KW=p.KW, S_h=1, S_w=1, dil_h=p.dil_h, dil_w=p.dil_w, up_h=p.stride_h, up_w=p.stride_w,
                pad_t=(p.KH - 1) * p.dil_h - p.pad_t, pad_l=(p.KW - 1) * p.dil_w - p.pad_l)


def small_square(p):
    return p.KH == p.KW and p.KH in (3, 5, 7) and p.dil_h == 1 and p.dil_w == 1


def plane_forward(p, x, w, b, dst, force_large=False):
    a = plane_args_fwd(p, x, dst)
    if not force_large and small_square(p) and p.stride_h == p.stride_w and p.stride_h <= 2:
        c = plane_config(p.OH, p.OW, a["P"], p.KH, p.KW, p.stride_h, p.stride_w, 1, 1, True)
        a.update({k: c[k] for k in ("TH", "TW", "TIH", "TIW", "PW", "WSZ", "tilesX", "tilesY")})
        run_plane(a, c, p.KH, p.stride_h, x, w, b, dst)
        return "plane_small"
    c = plane_config(p.OH, p.OW, a["P"], p.KH, p.KW, p.stride_h, p.stride_w, p.dil_h, p.dil_w, False)
    a.update({k: c[k] for k in ("TH", "TW", "TIH", "TIW", "PW", "WSZ", "tilesX", "tilesY")})
    run_plane(a, c, 0, 0, x, w, b, dst)
    return "plane_large"


def plane_backward_input(p, go, w, gi, force_large=False):
    a = plane_args_bwd(p, go, gi)
    if not force_large and small_square(p):
        c = plane_config(p.H, p.W, a["P"], p.KH, p.KW, 1, 1, 1, 1, True)
        a.update({k: c[k] for k in ("TH", "TW", "TIH", "TIW", "PW", "WSZ", "tilesX", "tilesY")})
        run_plane(a, c, p.KH, 1, go, w, None, gi)
        return "plane_small"
    c = plane_config(p.H, p.W, a["P"], p.KH, p.KW, 1, 1, p.dil_h, p.dil_w, False)
    a.update({k: c[k] for k in ("TH", "TW", "TIH", "TIW", "PW", "WSZ", "tilesX", "tilesY")})
    run_plane(a, c, 0, 0, go, w, None, gi)
    return "plane_large"


# --------------------------------------------------------------------------------------------
# NHWC kernels (dw_nhwc.cu)


def prep_weights(p, w, bias, flip):
    KK, OC = p.taps, p.OC
    wt = np.zeros((KK + 1) * OC)
    for i in range(wt.size):
        t, oc = divmod(i, OC)
        wt[i] = w[oc * KK + (KK - 1 - t if flip else t)] if t < KK else (bias[oc] if bias is not None else 0.0)
    return wt


def run_nhwc(a, K_small, S, V, src, wt, dst):
    R = 4
    nb = cdiv(a["CV"], 64)
    bx = cdiv(a["CV"], nb)
    by = max(1, 256 // bx)
    gx, gy = cdiv(a["PG"], by), nb
    C = a["C"]
    KK = a["KH"] * a["KW"]

    def ldw(i):
        assert 0 <= i and i + V <= wt.size
        if V == 4:
            assert i % 4 == 0
        return wt[i:i + V].copy()

    def ldv(off):
        if V == 4:
            assert (off + src.offset) % 4 == 0, "misaligned vector load"
        return np.array([src.rd(off + k) for k in range(V)])

    for bxi in range(gx):
        for byi in range(gy):
            for ty in range(by):
                for tx in range(bx):
                    cv = byi * bx + tx
                    pg = bxi * by + ty
                    if cv >= a["CV"] or pg >= a["PG"]:
                        continue
                    xg = pg % a["DWG"]
                    t = pg // a["DWG"]
                    y = t % a["DH"]
                    n = t // a["DH"]
                    x0, c0 = xg * R, cv * V
                    b0 = ldw(KK * C + c0) if a["has_bias"] else np.zeros(V)
                    acc = [b0.copy() for _ in range(R)]
                    sbase = n * a["s_sn"] + c0
                    if K_small:
                        K = K_small
                        NQ = (R - 1) * S + K
                        for kh in range(K):
                            sy = y * S - a["pad_t"] + kh
                            if sy < 0 or sy >= a["SH"]:
                                continue
                            srow = sbase + sy * a["s_sh"]
                            wk = [ldw((kh * K + kw) * C + c0) for kw in range(K)]
                            for q in range(NQ):
                                sx = x0 * S - a["pad_l"] + q
                                if sx < 0 or sx >= a["SW"]:
                                    continue
                                v = ldv(srow + sx * a["s_sw"])
                                for j in range(R):
                                    kw = q - j * S
                                    if 0 <= kw < K:
                                        acc[j] += wk[kw] * v
                    else:
                        for kh in range(a["KH"]):
                            sy = virt_to_real(y * a["S_h"] - a["pad_t"] + kh * a["dil_h"], a["up_h"], a["SH"])
                            if sy < 0:
                                continue
                            srow = sbase + sy * a["s_sh"]
                            for kw in range(a["KW"]):
                                wv = ldw((kh * a["KW"] + kw) * C + c0)
                                for j in range(R):
                                    sx = virt_to_real((x0 + j) * a["S_w"] - a["pad_l"] + kw * a["dil_w"], a["up_w"], a["SW"])
                                    if sx < 0:
                                        continue
                                    acc[j] += wv * ldv(srow + sx * a["s_sw"])
                    dbase = n * a["d_sn"] + y * a["d_sh"] + c0
                    for j in range(R):
                        if x0 + j < a["DW"]:
                            for k in range(V):
                                dst.wr(dbase + (x0 + j) * a["d_sw"] + k, acc[j][k])


def nhwc_forward(p, x, w, b, dst):
    assert p.M == 1 and x.strides[1] == 1 and dst.strides[1] == 1
    wt = prep_weights(p, w, b, False)
    a = dict(C=p.C, DH=p.OH, DW=p.OW, d_sn=dst.strides[0], d_sh=dst.strides[2], d_sw=dst.strides[3],
             SH=p.H, SW=p.W, s_sn=x.strides[0], s_sh=x.strides[2], s_sw=x.strides[3], KH=p.KH, KW=p.KW,
             S_h=p.stride_h, S_w=p.stride_w, dil_h=p.dil_h, dil_w=p.dil_w, up_h=1, up_w=1,
             pad_t=p.pad_t, pad_l=p.pad_l, has_bias=b is not None)
    V = 4 if (p.C % 4 == 0 and all(s % 4 == 0 for s in (x.strides[0], x.strides[2], x.strides[3], dst.strides[0],
                                                         dst.strides[2], dst.strides[3]))
              and x.offset % 4 == 0 and dst.offset % 4 == 0) else 1
    a["DWG"] = cdiv(a["DW"], 4)
    a["CV"] = p.C // V
    a["PG"] = p.N * a["DH"] * a["DWG"]
    small = small_square(p) and p.stride_h == p.stride_w and p.stride_h <= 2 and V == 4
    run_nhwc(a, p.KH if small else 0, p.stride_h, V, x, wt, dst)
    return f"nhwc_{'small' if small else 'generic'}_v{V}"


def nhwc_backward_input(p, go, w, gi):
    wt = prep_weights(p, w, None, True)
    a = dict(C=p.C, DH=p.H, DW=p.W, d_sn=gi.strides[0], d_sh=gi.strides[2], d_sw=gi.strides[3],
             SH=p.OH, SW=p.OW, s_sn=go.strides[0], s_sh=go.strides[2], s_sw=go.strides[3], KH=p.KH, KW=p.KW,
             S_h=1, S_w=1, dil_h=p.dil_h, dil_w=p.dil_w, up_h=p.stride_h, up_w=p.stride_w,
             pad_t=(p.KH - 1) * p.dil_h - p.pad_t, pad_l=(p.KW - 1) * p.dil_w - p.pad_l, has_bias=0)
    V = 4 if (p.C % 4 == 0 and all(s % 4 == 0 for s in (go.strides[0], go.strides[2], go.strides[3], gi.strides[0],
                                                         gi.strides[2], gi.strides[3]))
              and go.offset % 4 == 0 and gi.offset % 4 == 0) else 1
    a["DWG"] = cdiv(a["DW"], 4)
    a["CV"] = p.C // V
    a["PG"] = p.N * a["DH"] * a["DWG"]
    small = small_square(p) and p.stride_h == 1 and p.stride_w == 1 and V == 4
    run_nhwc(a, p.KH if small else 0, 1, V, go, wt, gi)
    return f"nhwc_{'small' if small else 'generic'}_v{V}"


# --------------------------------------------------------------------------------------------
# Weight gradient (dw_wgrad.cu)

TARGET_BLOCKS = 1024


def split(rows, items, min_items):
    g = max(1, cdiv(TARGET_BLOCKS, rows))
    g = min(g, max(1, items // max(1, min_items)))
    pc = cdiv(items, g)
    return cdiv(items, pc), pc


def wgrad_plane(p, go, x):
    KWS = cdiv(p.KW, 4)
    NT = p.KH * KWS
    assert NT <= 1024
    TW = rup(cdiv(p.OW, cdiv(p.OW, 64)), 4)
    th_max = max(1, 2048 // TW)
    TH = cdiv(p.OH, cdiv(p.OH, th_max))
    while True:
        TIH = (TH - 1) * p.stride_h + (p.KH - 1) * p.dil_h + 1
        TIW = (TW - 1) * p.stride_w + (p.KW - 1) * p.dil_w + 1
        PW = rup(max(TIW, TW + 4 * KWS), 4)
        if (TH * TW + TIH * PW) * 4 <= SMEM_BUDGET:
            break
        if TH > 1:
            TH = (TH + 1) // 2
        elif TW > 4:
            TW = rup(TW // 2, 4)
        else:
            raise AssertionError("no tile fits")
    PZ = max(1, 256 // NT)
    PZY = min(PZ, TH)
    PZX = max(1, min(PZ // PZY, TW // 4))
    tilesX, tilesY = cdiv(p.OW, TW), cdiv(p.OH, TH)
    items = p.N * tilesX * tilesY
    G, per_chunk = split(p.OC, items, 1)
    smem_n = max(TH * TW + TIH * PW, PZY * PZX * (NT * 4 + 1))
    KK = p.taps
    part = np.full(p.OC * (KK + 1) * G, np.nan)
    nthr = NT * PZY * PZX
    fast = p.stride_h == 1 and p.stride_w == 1 and p.dil_h == 1 and p.dil_w == 1
    TW4 = TW // 4
    for blk in range(p.OC * G):
        oc, g = divmod(blk, G)
        c = oc // p.M
        smem = np.full(smem_n, np.nan)
        acc = np.zeros((nthr, 4))
        accb = np.zeros(nthr)
        i0 = g * per_chunk
        i1 = min(i0 + per_chunk, items)
        for item in range(i0, i1):
            txi = item % tilesX
            r = item // tilesX
            tyi = r % tilesY
            n = r // tilesY
            oy0, ox0 = tyi * TH, txi * TW
            gp = n * go.strides[0] + oc * go.strides[1]
            ip = n * x.strides[0] + c * x.strides[1]
            vy0, vx0 = oy0 * p.stride_h - p.pad_t, ox0 * p.stride_w - p.pad_l
            ng = TH * TW
            total = ng + TIH * PW
            for tid in range(nthr):
                for base in range(tid, total, 8 * nthr):
                    for k in range(8):
                        i = base + k * nthr
                        if i >= total:
                            continue
                        v = 0.0
                        if i < ng:
                            y, xx = divmod(i, TW)
                            oy, ox = oy0 + y, ox0 + xx
                            if oy < p.OH and ox < p.OW:
                                v = go.rd(gp + oy * go.strides[2] + ox * go.strides[3])
                        else:
                            j = i - ng
                            rr, col = divmod(j, PW)
                            iy, ix = vy0 + rr, vx0 + col
                            if col < TIW and 0 <= iy < p.H and 0 <= ix < p.W:
                                v = x.rd(ip + iy * x.strides[2] + ix * x.strides[3])
                        smem[i] = v
            gt, it = 0, TH * TW
            for tid in range(nthr):
                ts, pz = tid % NT, tid // NT
                py, px = pz % PZY, pz // PZY
                kh, kw0 = ts // KWS, (ts % KWS) * 4
                if fast:
                    for y in range(py, TH, PZY):
                        gr = gt + y * TW
                        ir = it + (y + kh) * PW + kw0
                        for xc in range(px, TW4, PZX):
                            xx = xc * 4
                            gv = smem_rd4(smem, gr + xx)
                            win = smem_rd4(smem, ir + xx) + smem_rd4(smem, ir + xx + 4)
                            for q in range(4):
                                # unused taps (kw >= KW) may read the zero/NaN-free padding; they are discarded
                                acc[tid, q] += sum(gv[jj] * win[q + jj] for jj in range(4))
                            if ts == 0:
                                accb[tid] += sum(gv)
                else:
                    for y in range(py, TH, PZY):
                        gr = gt + y * TW
                        ir = it + (y * p.stride_h + kh * p.dil_h) * PW + kw0 * p.dil_w
                        for xx in range(px, TW, PZX):
                            gv = smem_rd(smem, gr + xx)
                            irx = ir + xx * p.stride_w
                            for q in range(4):
                                if kw0 + q < p.KW:
                                    acc[tid, q] += gv * smem_rd(smem, irx + q * p.dil_w)
                            if ts == 0:
                                accb[tid] += gv
        stride = NT * 4 + 1
        red = np.full(smem_n, np.nan)
        for tid in range(nthr):
            ts, pz = tid % NT, tid // NT
            for q in range(4):
                red[pz * stride + ts * 4 + q] = acc[tid, q]
            if ts == 0:
                red[pz * stride + NT * 4] = accb[tid]
        for i in range(stride):
            s = sum(red[z * stride + i] for z in range(PZY * PZX))
            if i < NT * 4:
                ts_ = i // 4
                kw = (ts_ % KWS) * 4 + i % 4
                if kw >= p.KW:
                    continue
                t = (ts_ // KWS) * p.KW + kw
            else:
                t = KK
            part[(oc * (KK + 1) + t) * G + g] = s
    return finalize(p, part, G), "wgrad_plane"


def wgrad_nhwc(p, go, x):
    K, S = p.KH, p.stride_h
    R, BY = 4, 8
    NQ = (R - 1) * S + K
    KK = K * K
    OWG = cdiv(p.OW, 4)
    items = p.N * p.OH * OWG
    cblocks = cdiv(p.OC, 32)
    G, per_chunk = split(cblocks, items, BY)
    part = np.full(p.OC * (KK + 1) * G, np.nan)
    for blk in range(cblocks * G):
        cb, g = divmod(blk, G)
        red = np.zeros((KK + 1, BY, 32))
        for ty in range(BY):
            for tx in range(32):
                c = cb * 32 + tx
                if c >= p.OC:
                    continue
                acc = np.zeros(KK)
                accb = 0.0
                i0 = g * per_chunk
                i1 = min(i0 + per_chunk, items)
                for s in range(i0 + ty, i1, BY):
                    xg = s % OWG
                    r = s // OWG
                    oy = r % p.OH
                    n = r // p.OH
                    x0 = xg * R
                    gp = n * go.strides[0] + oy * go.strides[2] + c
                    gv = [go.rd(gp + (x0 + j) * go.strides[3]) if x0 + j < p.OW else 0.0 for j in range(R)]
                    accb += sum(gv)
                    ip = n * x.strides[0] + c
                    for kh in range(K):
                        iy = oy * S - p.pad_t + kh
                        if iy < 0 or iy >= p.H:
                            continue
                        irow = ip + iy * x.strides[2]
                        v = []
                        for q in range(NQ):
                            ix = x0 * S - p.pad_l + q
                            v.append(x.rd(irow + ix * x.strides[3]) if 0 <= ix < p.W else 0.0)
                        for kw in range(K):
                            for j in range(R):
                                acc[kh * K + kw] += gv[j] * v[j * S + kw]
                red[:KK, ty, tx] = acc
                red[KK, ty, tx] = accb
        for tx in range(32):
            c = cb * 32 + tx
            if c >= p.OC:
                continue
            for t in range(KK + 1):
                part[(c * (KK + 1) + t) * G + g] = red[t, :, tx].sum()
    return finalize(p, part, G), "wgrad_nhwc"


def finalize(p, part, G):
    KK = p.taps
    gw = np.zeros((p.OC, KK))
    gb = np.zeros(p.OC)
    for idx in range(p.OC * (KK + 1)):
        oc, t = divmod(idx, KK + 1)
        s = part[idx * G:(idx + 1) * G]
        assert not np.isnan(s).any(), "unwritten partial sum"
        if t < KK:
            gw[oc, t] = s.sum()
        else:
            gb[oc] = s.sum()
    return gw, gb


# --------------------------------------------------------------------------------------------
# Driver


def make_input(shape, layout, gen):
    N, C, H, W = shape
    if layout == "nchw":
        return torch.randn(shape, generator=gen, dtype=torch.float64)
    if layout == "cl":
        return torch.randn(shape, generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    if layout == "view":  # a strided, offset view of a larger tensor
        big = torch.randn(N + 1, C + 2, 2 * H + 1, W + 3, generator=gen, dtype=torch.float64)
        return big[1:, 1:C + 1, 1::2, 2:W + 2]
    if layout == "clview":  # channels innermost but not 4-aligned strides / offset
        big = torch.randn(N, H, W + 1, C + 1, generator=gen, dtype=torch.float64)
        return big[:, :, 1:, :C].permute(0, 3, 1, 2)
    raise ValueError(layout)


def check_case(shape, K, stride, pad, dil, M, layout, seed=0, force_large=False, bias=True):
    gen = torch.Generator().manual_seed(seed)
    N, C, H, W = shape
    KH, KW = K
    x = make_input(shape, layout, gen)
    w = torch.randn(C * M, 1, KH, KW, generator=gen, dtype=torch.float64)
    b = torch.randn(C * M, generator=gen, dtype=torch.float64) if bias else None
    p = P(x, w, stride, pad, dil)
    xp = F.pad(x, (pad[2], pad[3], pad[0], pad[1]))
    ref = F.conv2d(xp, w, b, stride, 0, dil, groups=C)
    go_t = make_input(tuple(ref.shape), layout if layout != "clview" else "cl", gen)
    xr = x.clone().requires_grad_(True)
    wr_ = w.clone().requires_grad_(True)
    br = b.clone().requires_grad_(True) if bias else None
    out = F.conv2d(F.pad(xr, (pad[2], pad[3], pad[0], pad[1])), wr_, br, stride, 0, dil, groups=C)
    out.backward(go_t)

    X, GO = Buf(x), Buf(go_t)
    wf = w.reshape(-1).numpy()
    bf = b.numpy() if bias else None
    cl = x.stride(1) == 1 and C > 1
    results = {}
    # forward
    Y = out_buffer(tuple(ref.shape), cl)
    if cl and M == 1 and not force_large:
        path = nhwc_forward(p, X, wf, bf, Y)
    else:
        path = plane_forward(p, X, wf, bf, Y, force_large)
    results["fwd:" + path] = (Y.tensor(), ref)
    # grad input
    GI = out_buffer(tuple(x.shape), cl)
    if cl and M == 1 and go_t.stride(1) == 1 and not force_large:
        path = nhwc_backward_input(p, GO, wf, GI)
    else:
        path = plane_backward_input(p, GO, wf, GI, force_large)
    results["gi:" + path] = (GI.tensor(), xr.grad)
    # grad weight / bias
    nhwc_wg = (M == 1 and C > 1 and x.stride(1) == 1 and go_t.stride(1) == 1 and KH == KW and KH in (3, 5, 7)
               and dil == (1, 1) and stride[0] == stride[1] and stride[0] <= 2 and not force_large)
    (gw, gb), path = wgrad_nhwc(p, GO, X) if nhwc_wg else wgrad_plane(p, GO, X)
    results["gw:" + path] = (torch.from_numpy(gw).reshape(w.shape), wr_.grad)
    if bias:
        results["gb:" + path] = (torch.from_numpy(gb), br.grad)
    errs = {}
    for k, (got, want) in results.items():
        assert not torch.isnan(got).any(), f"{k}: NaN (unwritten output or poisoned shared memory read)"
        errs[k] = (got - want).abs().max().item()
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9), f"{k}: max err {errs[k]}"
    return errs


CASES = [
    # shape, K, stride, pad (t, b, l, r), dil, M, layout
    ((2, 3, 9, 11), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "nchw"),
    ((1, 2, 10, 9), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 2, "nchw"),
    ((1, 2, 7, 13), (5, 5), (1, 1), (2, 1, 0, 3), (1, 1), 1, "view"),
    ((1, 2, 9, 8), (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, "nchw"),
    ((1, 1, 12, 12), (9, 9), (1, 1), (4, 4, 4, 4), (1, 1), 1, "nchw"),   # large fast
    ((1, 2, 11, 9), (3, 2), (2, 1), (1, 0, 2, 1), (2, 1), 2, "view"),    # large slow, M=2
    ((2, 8, 7, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "cl"),       # nhwc small V4
    ((1, 8, 9, 7), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 1, "cl"),       # nhwc small s2 + bwd generic up2
    ((1, 5, 8, 6), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "cl"),       # nhwc V1 (C % 4)
    ((1, 4, 7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "clview"),   # nhwc V1 (strides)
    ((1, 8, 9, 10), (4, 2), (1, 2), (2, 1, 0, 1), (1, 2), 1, "cl"),      # nhwc generic V4, dil
    ((2, 4, 6, 5), (3, 3), (1, 1), (2, 0, 0, 2), (1, 1), 2, "cl"),       # cl with M=2 -> plane kernels
]


def run_all(verbose=True):
    for case in CASES:
        errs = check_case(*case)
        if verbose:
            print(case, {k: f"{v:.1e}" for k, v in errs.items()})
    # the runtime-K kernel on small kernels too (exercises its fast path's tail handling)
    errs = check_case((1, 2, 9, 10), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1, "nchw", force_large=True)
    if verbose:
        print("force_large", {k: f"{v:.1e}" for k, v in errs.items()})
    # several tiles along x (TW = 128), several planes per block with a large kernel
    for case in [((1, 1, 5, 133), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "nchw"),
                 ((1, 3, 16, 15), (13, 13), (1, 1), (6, 6, 6, 6), (1, 1), 1, "nchw")]:
        errs = check_case(*case)
        if verbose:
            print(case, {k: f"{v:.1e}" for k, v in errs.items()})
    # plane tiles with nthr >= PW: load_tile's walk steps more than a row (forward, grad input at
    # up 1 and up 2, a strided view, M = 2)
    for case in [((1, 2, 30, 29), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "view"),
                 ((1, 2, 29, 30), (3, 3), (2, 2), (1, 1, 0, 2), (1, 1), 1, "nchw"),
                 ((1, 1, 26, 27), (5, 5), (2, 2), (2, 2, 2, 2), (1, 1), 2, "nchw")]:
        errs = check_case(*case)
        if verbose:
            print(case, {k: f"{v:.1e}" for k, v in errs.items()})
    # weight-gradient chunks holding several items (as with many channels on a GPU)
    global TARGET_BLOCKS
    saved = TARGET_BLOCKS
    TARGET_BLOCKS = 1
    try:
        for case in [CASES[0], CASES[6], CASES[4]]:
            errs = check_case(*case)
            if verbose:
                print("1 chunk/row", case, {k: f"{v:.1e}" for k, v in errs.items()})
    finally:
        TARGET_BLOCKS = saved


if __name__ == "__main__":
    run_all()
