// Weight and bias gradients, deterministic (no atomics):
//
//   grad_w[oc, kh, kw] = sum_{n, oh, ow} go[n, oc, oh, ow] * in[n, oc/M, oh*s - pad + kh*dil, ow*s - pad + kw*dil]
//   grad_b[oc]         = sum_{n, oh, ow} go[n, oc, oh, ow]
//
// Two passes. Pass 1 splits each channel's N*OH*OW reduction into G chunks (G depends only on the
// problem's sizes, never on the device) and writes one partial sum per (oc, tap or bias, chunk)
// to a workspace; pass 2 (wgrad_finalize_kernel) adds each row's G partials in chunk order and
// rounds once. Every sum inside a block has a fixed order, so results are bitwise reproducible.
//
// Pass-1 kernels:
//  - wgrad_plane_kernel (planar layouts, any K / stride / dilation): block = (oc, chunk of tiles).
//    A TH x TW tile of grad_output and its input tile + halo are staged in shared memory as
//    float; each thread owns 4 consecutive taps of one kernel row ("tap strip") and a share of the
//    tile's positions; stride 1 / dilation 1 reads float4s (16 multiply-adds per 3 loads). The
//    shares are then added in fixed order.
//  - wgrad_nhwc_kernel<K, S> (channels innermost, M == 1, K in 3,5,7, dilation 1): thread = one
//    channel (coalesced across the warp) x a strided share of 4-pixel strips; all K*K taps in
//    registers; the block's rows are added in fixed order.
//  - wgrad_generic_kernel (anything, float64): block = (oc, tap or bias, chunk), a fixed-order
//    block reduction over the chunk's positions.
#include <type_traits>

#include "dw_cuda.h"
#include "dw_cuda_device.cuh"

namespace dsconv {
namespace cuda {
namespace {

// Pass 1 aims for about this many blocks in total (fixed, so the split is device independent).
constexpr int64_t kTargetBlocks = 1024;
constexpr int kLoadBatch = 8;  // independent loads in flight per thread when staging tiles

struct WgArgs {
  int N, OC, M;
  int OH, OW, H, W;
  int64_t g_sn, g_sc, g_sh, g_sw;  // grad_output strides
  int64_t i_sn, i_sc, i_sh, i_sw;  // input strides
  int KH, KW, S_h, S_w, dil_h, dil_w, pad_t, pad_l;
  int G;              // chunks per channel
  int64_t items;      // work items per channel: tiles (plane) or 4-pixel strips (nhwc)
  int64_t per_chunk;  // items per chunk
  // plane kernel tiling
  int TH, TW, TIH, TIW, PW, tilesX, tilesY;
  int KWS, NT, PZY, PZX;  // tap strips per kernel row, tap strips, position shares (y, x)
  // nhwc kernel
  int OWG;  // ceil(OW / 4)
};

// ---------------------------------------------------------------------------------------------
template <typename T>
__global__ void __launch_bounds__(1024) wgrad_plane_kernel(const WgArgs a, const T* __restrict__ go,
                                                           const T* __restrict__ in, float* __restrict__ part) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  float* gt = smem;                   // TH x TW grad_output tile
  float* it = smem + a.TH * a.TW;     // TIH x PW input tile
  const int tid = threadIdx.x, nthr = blockDim.x;
  const int oc = blockIdx.x / a.G, g = blockIdx.x % a.G;
  const int c = oc / a.M;
  const int ts = tid % a.NT, pz = tid / a.NT;  // tap strip, position share
  const int py = pz % a.PZY, px = pz / a.PZY;
  const int kh = ts / a.KWS, kw0 = (ts % a.KWS) * 4;
  const int KK = a.KH * a.KW;
  const bool fast = a.S_h == 1 && a.S_w == 1 && a.dil_h == 1 && a.dil_w == 1;
  const int TW4 = a.TW / 4;

  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  float accb = 0.f;
  const int64_t i0 = g * a.per_chunk;
  const int64_t i1 = min(i0 + a.per_chunk, a.items);
  const T* gbase = go + static_cast<int64_t>(oc) * a.g_sc;
  const T* ibase = in + static_cast<int64_t>(c) * a.i_sc;
  for (int64_t item = i0; item < i1; ++item) {
    const int txi = static_cast<int>(item % a.tilesX);
    const int64_t r = item / a.tilesX;
    const int tyi = static_cast<int>(r % a.tilesY);
    const int64_t n = r / a.tilesY;
    const int oy0 = tyi * a.TH, ox0 = txi * a.TW;
    __syncthreads();  // the previous tile is consumed
    const T* gp = gbase + n * a.g_sn;
    const T* ip = ibase + n * a.i_sn;
    const int vy0 = oy0 * a.S_h - a.pad_t, vx0 = ox0 * a.S_w - a.pad_l;
    // Both tiles as one index space [grad_output tile | input tile], kLoadBatch loads in flight.
    const int ng = a.TH * a.TW, total = ng + a.TIH * a.PW;
    for (int base = tid; base < total; base += kLoadBatch * nthr) {
      float v[kLoadBatch];
#pragma unroll
      for (int k = 0; k < kLoadBatch; ++k) {
        const int i = base + k * nthr;
        v[k] = 0.f;
        if (i < ng) {
          const int y = i / a.TW, x = i - y * a.TW;
          const int oy = oy0 + y, ox = ox0 + x;
          if (oy < a.OH && ox < a.OW) v[k] = ldf(gp + oy * a.g_sh + ox * a.g_sw);
        } else if (i < total) {
          const int j = i - ng;
          const int rr = j / a.PW, col = j - rr * a.PW;
          const int iy = vy0 + rr, ix = vx0 + col;
          if (col < a.TIW && iy >= 0 && iy < a.H && ix >= 0 && ix < a.W) v[k] = ldf(ip + iy * a.i_sh + ix * a.i_sw);
        }
      }
#pragma unroll
      for (int k = 0; k < kLoadBatch; ++k) {
        const int i = base + k * nthr;
        if (i < total) smem[i] = v[k];  // gt and it are contiguous
      }
    }
    __syncthreads();
    if (fast) {
      for (int y = py; y < a.TH; y += a.PZY) {
        const float* gr = gt + y * a.TW;
        const float* ir = it + (y + kh) * a.PW + kw0;
        for (int xc = px; xc < TW4; xc += a.PZX) {
          const int x = xc * 4;
          const float4 gv = *reinterpret_cast<const float4*>(gr + x);
          const float4 lo = *reinterpret_cast<const float4*>(ir + x);
          const float4 hi = *reinterpret_cast<const float4*>(ir + x + 4);
          const float win[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            float s = acc[q];
            s = fmaf(gv.x, win[q + 0], s);
            s = fmaf(gv.y, win[q + 1], s);
            s = fmaf(gv.z, win[q + 2], s);
            s = fmaf(gv.w, win[q + 3], s);
            acc[q] = s;
          }
          if (ts == 0) accb += (gv.x + gv.y) + (gv.z + gv.w);
        }
      }
    } else {
      for (int y = py; y < a.TH; y += a.PZY) {
        const float* gr = gt + y * a.TW;
        const float* ir = it + (y * a.S_h + kh * a.dil_h) * a.PW + kw0 * a.dil_w;
        for (int x = px; x < a.TW; x += a.PZX) {
          const float gv = gr[x];
          const float* irx = ir + x * a.S_w;
#pragma unroll
          for (int q = 0; q < 4; ++q)
            if (kw0 + q < a.KW) acc[q] = fmaf(gv, irx[q * a.dil_w], acc[q]);
          if (ts == 0) accb += gv;
        }
      }
    }
  }
  // Add the position shares in fixed order.
  __syncthreads();
  const int stride = a.NT * 4 + 1;
  float* red = smem;  // (PZY*PZX) x stride
#pragma unroll
  for (int q = 0; q < 4; ++q) red[pz * stride + ts * 4 + q] = acc[q];
  if (ts == 0) red[pz * stride + a.NT * 4] = accb;
  __syncthreads();
  const int nshare = a.PZY * a.PZX;
  for (int i = tid; i < stride; i += nthr) {
    float s = 0.f;
    for (int z = 0; z < nshare; ++z) s += red[z * stride + i];
    int t;
    if (i < a.NT * 4) {
      const int ts_ = i / 4, kw = (ts_ % a.KWS) * 4 + (i % 4);
      if (kw >= a.KW) continue;  // padding lane of the last strip
      t = (ts_ / a.KWS) * a.KW + kw;
    } else {
      t = KK;
    }
    part[(static_cast<int64_t>(oc) * (KK + 1) + t) * a.G + g] = s;
  }
}

// ---------------------------------------------------------------------------------------------
constexpr int kNhwcWgBY = 8;  // strip shares per block (threadIdx.y); threadIdx.x = 32 channels

template <typename T, int K, int S>
__global__ void __launch_bounds__(256) wgrad_nhwc_kernel(const WgArgs a, const T* __restrict__ go,
                                                         const T* __restrict__ in, float* __restrict__ part) {
  constexpr int R = 4, NQ = (R - 1) * S + K, KK = K * K;
  __shared__ float red[kNhwcWgBY][32];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int cb = blockIdx.x / a.G, g = blockIdx.x % a.G;
  const int c = cb * 32 + tx;
  const bool cok = c < a.OC;
  float acc[KK];
#pragma unroll
  for (int t = 0; t < KK; ++t) acc[t] = 0.f;
  float accb = 0.f;
  const int64_t i0 = g * a.per_chunk;
  const int64_t i1 = min(i0 + a.per_chunk, a.items);
  if (cok) {
    for (int64_t s = i0 + ty; s < i1; s += kNhwcWgBY) {
      const int xg = static_cast<int>(s % a.OWG);
      const int64_t r = s / a.OWG;
      const int oy = static_cast<int>(r % a.OH);
      const int64_t n = r / a.OH;
      const int x0 = xg * R;
      const T* gp = go + n * a.g_sn + oy * a.g_sh + c;
      float gv[R];
#pragma unroll
      for (int j = 0; j < R; ++j) gv[j] = (x0 + j < a.OW) ? ldf(gp + (x0 + j) * a.g_sw) : 0.f;
      accb += (gv[0] + gv[1]) + (gv[2] + gv[3]);
      const T* ip = in + n * a.i_sn + c;
#pragma unroll
      for (int kh = 0; kh < K; ++kh) {
        const int iy = oy * S - a.pad_t + kh;
        if (iy < 0 || iy >= a.H) continue;
        const T* irow = ip + iy * a.i_sh;
        float v[NQ];
#pragma unroll
        for (int q = 0; q < NQ; ++q) {
          const int ix = x0 * S - a.pad_l + q;
          v[q] = (ix >= 0 && ix < a.W) ? ldf(irow + ix * a.i_sw) : 0.f;
        }
#pragma unroll
        for (int kw = 0; kw < K; ++kw)
#pragma unroll
          for (int j = 0; j < R; ++j) acc[kh * K + kw] = fmaf(gv[j], v[j * S + kw], acc[kh * K + kw]);
      }
    }
  }
  // Add the kNhwcWgBY rows of each channel in fixed order, one tap at a time.
#pragma unroll
  for (int t = 0; t <= KK; ++t) {
    __syncthreads();
    red[ty][tx] = t < KK ? acc[t] : accb;
    __syncthreads();
    if (ty == 0 && cok) {
      float s = 0.f;
#pragma unroll
      for (int y = 0; y < kNhwcWgBY; ++y) s += red[y][tx];
      part[(static_cast<int64_t>(c) * (KK + 1) + t) * a.G + g] = s;
    }
  }
}

// ---------------------------------------------------------------------------------------------
template <typename T, typename I>
__global__ void __launch_bounds__(256) wgrad_generic_kernel(const DwParams p, const T* __restrict__ go,
                                                            const T* __restrict__ in,
                                                            typename AccType<T>::type* __restrict__ part, int G,
                                                            I per_chunk, I NP, int t_lo, int nt) {
  using A = typename AccType<T>::type;
  __shared__ A red[8];
  int64_t b = blockIdx.x;
  const int g = static_cast<int>(b % G);
  b /= G;
  const int t = t_lo + static_cast<int>(b % nt);
  const I oc = static_cast<I>(b / nt);
  const int taps = static_cast<int>(p.KH * p.KW);
  const bool is_bias = t == taps;
  const I kh = is_bias ? 0 : t / static_cast<int>(p.KW), kw = is_bias ? 0 : t % static_cast<int>(p.KW);
  const I OH = static_cast<I>(p.OH), OW = static_cast<I>(p.OW), H = static_cast<I>(p.H), W = static_cast<I>(p.W);
  const I offh = kh * static_cast<I>(p.dil_h) - static_cast<I>(p.pad_t);
  const I offw = kw * static_cast<I>(p.dil_w) - static_cast<I>(p.pad_l);
  const I sh = static_cast<I>(p.stride_h), sw = static_cast<I>(p.stride_w);
  const T* gp = go + oc * static_cast<I>(p.out_sc);
  const T* ip = in + (oc / static_cast<I>(p.M)) * static_cast<I>(p.in_sc);
  const I q0 = static_cast<I>(g) * per_chunk;
  const I q1 = q0 + per_chunk < NP ? q0 + per_chunk : NP;
  A acc = A(0);
  for (I q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
    const I ow = q % OW;
    const I r = q / OW;
    const I oh = r % OH, n = r / OH;
    const A gv = static_cast<A>(ldf(gp + n * static_cast<I>(p.out_sn) + oh * static_cast<I>(p.out_sh) +
                                    ow * static_cast<I>(p.out_sw)));
    if (is_bias) {
      acc += gv;
    } else {
      const I ih = oh * sh + offh, iw = ow * sw + offw;
      if (ih >= 0 && ih < H && iw >= 0 && iw < W)
        acc += gv * static_cast<A>(ldf(ip + n * static_cast<I>(p.in_sn) + ih * static_cast<I>(p.in_sh) +
                                       iw * static_cast<I>(p.in_sw)));
    }
  }
  acc = warp_sum(acc);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    A s = A(0);
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) s += red[w];
    part[(static_cast<int64_t>(oc) * (taps + 1) + t) * G + g] = s;
  }
}

template <typename T, typename A>
__global__ void wgrad_finalize_kernel(const A* __restrict__ part, int64_t OC, int taps, int G, T* __restrict__ gw,
                                      T* __restrict__ gb) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= OC * (taps + 1)) return;
  const int64_t oc = idx / (taps + 1);
  const int t = static_cast<int>(idx % (taps + 1));
  if (t < taps ? gw == nullptr : gb == nullptr) return;
  A s = A(0);
  for (int g = 0; g < G; ++g) s += part[idx * G + g];
  if (t < taps)
    stf(gw + oc * taps + t, s);
  else
    stf(gb + oc, s);
}

// ---------------------------------------------------------------------------------------------
// Plan: which pass-1 kernel, its tiling and G. Shared by the workspace query and the launcher.

enum class WgKind { Generic, Plane, Nhwc };

struct WgPlan {
  WgKind kind = WgKind::Generic;
  WgArgs a{};
  int64_t smem = 0;
  int threads = 0;
  // generic
  int G = 1;
  int64_t per_chunk = 0, NP = 0;
  int t_lo = 0, nt = 0;
};

bool wg_fits_fast(const DwParams& p) {
  const int64_t lim = int64_t(1) << 29;
  return p.N < lim && p.OC() < lim && p.H < lim && p.W < lim && p.OH < lim && p.OW < lim &&
         p.KH * p.dil_h < lim && p.KW * p.dil_w < lim && p.pad_t < lim && p.pad_l < lim &&
         p.OH * p.stride_h < lim && p.OW * p.stride_w < lim && (p.taps() + 1) * p.OC() < lim;
}

void fill_common(WgArgs& a, const DwParams& p) {
  a.N = static_cast<int>(p.N), a.OC = static_cast<int>(p.OC()), a.M = static_cast<int>(p.M);
  a.OH = static_cast<int>(p.OH), a.OW = static_cast<int>(p.OW), a.H = static_cast<int>(p.H), a.W = static_cast<int>(p.W);
  a.g_sn = p.out_sn, a.g_sc = p.out_sc, a.g_sh = p.out_sh, a.g_sw = p.out_sw;
  a.i_sn = p.in_sn, a.i_sc = p.in_sc, a.i_sh = p.in_sh, a.i_sw = p.in_sw;
  a.KH = static_cast<int>(p.KH), a.KW = static_cast<int>(p.KW);
  a.S_h = static_cast<int>(p.stride_h), a.S_w = static_cast<int>(p.stride_w);
  a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
  a.pad_t = static_cast<int>(p.pad_t), a.pad_l = static_cast<int>(p.pad_l);
}

// Chunks per row: about kTargetBlocks blocks in all, at least one item per chunk, and no empty
// trailing chunk.
void split(int64_t rows, int64_t items, int64_t min_items, int* G, int64_t* per_chunk) {
  int64_t g = std::max<int64_t>(1, ceil_div(kTargetBlocks, rows));
  g = std::min<int64_t>(g, std::max<int64_t>(1, items / std::max<int64_t>(1, min_items)));
  int64_t pc = ceil_div(items, g);
  g = ceil_div(items, pc);
  *G = static_cast<int>(g);
  *per_chunk = pc;
}

bool plan_plane(const DwParams& p, WgPlan& pl) {
  WgArgs& a = pl.a;
  const int64_t KWS = ceil_div(p.KW, 4), NT = p.KH * KWS;
  if (NT > 1024) return false;
  // Tiles of at most 64 columns and about 2048 positions, evened out so the last one is not
  // mostly empty.
  int64_t TW = round_up(ceil_div(p.OW, ceil_div(p.OW, 64)), 4);
  const int64_t th_max = std::max<int64_t>(1, 2048 / TW);
  int64_t TH = ceil_div(p.OH, ceil_div(p.OH, th_max));
  int64_t TIH = 0, TIW = 0, PW = 0;
  for (;;) {
    TIH = (TH - 1) * p.stride_h + (p.KH - 1) * p.dil_h + 1;
    TIW = (TW - 1) * p.stride_w + (p.KW - 1) * p.dil_w + 1;
    PW = round_up(std::max(TIW, TW + 4 * KWS), 4);
    if ((TH * TW + TIH * PW) * 4 <= kSmemBudget) break;
    if (TH > 1)
      TH = (TH + 1) / 2;
    else if (TW > 4)
      TW = round_up(TW / 2, 4);
    else
      return false;
  }
  // Position shares: fill about 256 threads (or one thread per tap strip when there are more).
  const int64_t PZ = std::max<int64_t>(1, 256 / NT);
  const int64_t PZY = std::min<int64_t>(PZ, TH);
  const int64_t PZX = std::max<int64_t>(1, std::min<int64_t>(PZ / PZY, TW / 4));
  const int64_t red = PZY * PZX * (NT * 4 + 1) * 4;
  if (red > kSmemBudget) return false;
  fill_common(a, p);
  a.TH = static_cast<int>(TH), a.TW = static_cast<int>(TW), a.TIH = static_cast<int>(TIH);
  a.TIW = static_cast<int>(TIW), a.PW = static_cast<int>(PW);
  a.tilesX = static_cast<int>(ceil_div(p.OW, TW));
  a.tilesY = static_cast<int>(ceil_div(p.OH, TH));
  a.KWS = static_cast<int>(KWS), a.NT = static_cast<int>(NT), a.PZY = static_cast<int>(PZY), a.PZX = static_cast<int>(PZX);
  a.items = p.N * a.tilesX * a.tilesY;
  split(p.OC(), a.items, 1, &a.G, &a.per_chunk);
  pl.kind = WgKind::Plane;
  pl.smem = std::max<int64_t>((TH * TW + TIH * PW) * 4, red);
  pl.threads = static_cast<int>(NT * PZY * PZX);
  return p.OC() * a.G <= kInt32Max;
}

bool plan_nhwc(const DwParams& p, WgPlan& pl) {
  if (!(p.M == 1 && p.C > 1 && p.in_sc == 1 && p.out_sc == 1)) return false;
  if (!(p.KH == p.KW && (p.KH == 3 || p.KH == 5 || p.KH == 7) && p.dil_h == 1 && p.dil_w == 1 &&
        p.stride_h == p.stride_w && p.stride_h <= 2))
    return false;
  WgArgs& a = pl.a;
  fill_common(a, p);
  a.OWG = static_cast<int>(ceil_div(p.OW, 4));
  a.items = p.N * p.OH * a.OWG;
  const int64_t cblocks = ceil_div(p.OC(), 32);
  split(cblocks, a.items, kNhwcWgBY, &a.G, &a.per_chunk);
  pl.kind = WgKind::Nhwc;
  pl.threads = 32 * kNhwcWgBY;
  return cblocks * a.G <= kInt32Max;
}

void plan_generic(const DwParams& p, bool need_w, bool need_b, WgPlan& pl) {
  pl.kind = WgKind::Generic;
  const int64_t taps = p.taps();
  pl.t_lo = need_w ? 0 : static_cast<int>(taps);
  pl.nt = static_cast<int>((need_b ? taps + 1 : taps) - pl.t_lo);
  pl.NP = p.N * p.OH * p.OW;
  int64_t pc;
  split(p.OC() * pl.nt, pl.NP, 256, &pl.G, &pc);
  pl.per_chunk = pc;
}

template <typename T>
WgPlan make_plan(const DwParams& p, bool need_w, bool need_b) {
  WgPlan pl;
  if (!std::is_same<T, double>::value && need_w && wg_fits_fast(p)) {
    if (plan_nhwc(p, pl)) return pl;
    pl = WgPlan();
    if (plan_plane(p, pl)) return pl;
    pl = WgPlan();
  }
  plan_generic(p, need_w, need_b, pl);
  return pl;
}

int plan_G(const WgPlan& pl) { return pl.kind == WgKind::Generic ? pl.G : pl.a.G; }

bool generic_fits_int32(const DwParams& p) {
  const int64_t lim = int64_t(1) << 30;
  return p.N * p.OH * p.OW < lim &&
         max_offset(p.N, p.C, p.H, p.W, p.in_sn, p.in_sc, p.in_sh, p.in_sw) < lim &&
         max_offset(p.N, p.OC(), p.OH, p.OW, p.out_sn, p.out_sc, p.out_sh, p.out_sw) < lim &&
         p.OH * p.stride_h + p.KH * p.dil_h + p.pad_t < lim && p.OW * p.stride_w + p.KW * p.dil_w + p.pad_l < lim &&
         p.H + p.W < lim;
}

}  // namespace

template <typename T>
size_t backward_weight_workspace_bytes(const DwParams& p, bool need_w, bool need_b) {
  if (!need_w && !need_b) return 0;
  if (p.N * p.OH * p.OW == 0) return 0;
  const WgPlan pl = make_plan<T>(p, need_w, need_b);
  using A = typename AccType<T>::type;
  return static_cast<size_t>(p.OC() * (p.taps() + 1) * plan_G(pl)) * sizeof(A);
}

template <typename T>
cudaError_t backward_weight_bias(const DwParams& p, const T* go, const T* in, T* gw, T* gb, void* ws,
                                 cudaStream_t stream) {
  using A = typename AccType<T>::type;
  const bool need_w = gw != nullptr, need_b = gb != nullptr;
  if (!need_w && !need_b) return cudaSuccess;
  if (p.N * p.OH * p.OW == 0) return cudaErrorInvalidValue;  // the op layer zero-fills this case
  const WgPlan pl = make_plan<T>(p, need_w, need_b);
  A* part = static_cast<A*>(ws);
  if (pl.kind == WgKind::Plane) {
    if constexpr (!std::is_same<T, double>::value) {
      wgrad_plane_kernel<T><<<static_cast<unsigned>(p.OC() * pl.a.G), pl.threads, static_cast<size_t>(pl.smem),
                              stream>>>(pl.a, go, in, part);
    }
  } else if (pl.kind == WgKind::Nhwc) {
    if constexpr (!std::is_same<T, double>::value) {
      const unsigned grid = static_cast<unsigned>(ceil_div(p.OC(), 32) * pl.a.G);
      const dim3 block(32, kNhwcWgBY);
      const int key = static_cast<int>(p.KH * 10 + p.stride_h);
      switch (key) {
        case 31: wgrad_nhwc_kernel<T, 3, 1><<<grid, block, 0, stream>>>(pl.a, go, in, part); break;
        case 32: wgrad_nhwc_kernel<T, 3, 2><<<grid, block, 0, stream>>>(pl.a, go, in, part); break;
        case 51: wgrad_nhwc_kernel<T, 5, 1><<<grid, block, 0, stream>>>(pl.a, go, in, part); break;
        case 52: wgrad_nhwc_kernel<T, 5, 2><<<grid, block, 0, stream>>>(pl.a, go, in, part); break;
        case 71: wgrad_nhwc_kernel<T, 7, 1><<<grid, block, 0, stream>>>(pl.a, go, in, part); break;
        case 72: wgrad_nhwc_kernel<T, 7, 2><<<grid, block, 0, stream>>>(pl.a, go, in, part); break;
        default: return cudaErrorInvalidValue;
      }
    }
  } else {
    if (p.OC() * pl.nt * pl.G > kInt32Max) return cudaErrorInvalidConfiguration;
    const unsigned grid = static_cast<unsigned>(p.OC() * pl.nt * pl.G);
    if (generic_fits_int32(p))
      wgrad_generic_kernel<T, int32_t><<<grid, 256, 0, stream>>>(p, go, in, part, pl.G,
                                                                 static_cast<int32_t>(pl.per_chunk),
                                                                 static_cast<int32_t>(pl.NP), pl.t_lo, pl.nt);
    else
      wgrad_generic_kernel<T, int64_t><<<grid, 256, 0, stream>>>(p, go, in, part, pl.G, pl.per_chunk, pl.NP, pl.t_lo,
                                                                 pl.nt);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t rows = p.OC() * (p.taps() + 1);
  wgrad_finalize_kernel<T, A><<<static_cast<unsigned>(ceil_div(rows, 256)), 256, 0, stream>>>(
      part, p.OC(), static_cast<int>(p.taps()), plan_G(pl), gw, gb);
  return cudaGetLastError();
}

#define DSCONV_INSTANTIATE(T)                                                                        \
  template size_t backward_weight_workspace_bytes<T>(const DwParams&, bool, bool);                  \
  template cudaError_t backward_weight_bias<T>(const DwParams&, const T*, const T*, T*, T*, void*, \
                                               cudaStream_t);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(double)
DSCONV_INSTANTIATE(__half)
DSCONV_INSTANTIATE(__nv_bfloat16)
#undef DSCONV_INSTANTIATE

}  // namespace cuda
}  // namespace dsconv
