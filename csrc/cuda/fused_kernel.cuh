// The fused depthwise-separable kernel (see fused_cuda.h for the decomposition and
// bench/CUDA_NOTES.md for the design). Included by one .cu per element type (fused_f32.cu,
// fused_f16.cu, fused_bf16.cu) so that the three compile in parallel.
//
// Shared memory (static, < 48 KiB for every T):
//   fp16/bf16: A  [KC][BP + 8] T   depthwise chunk, channel-major (WMMA matrix_a col_major), so
//                                  a thread's 4 consecutive pixels are one 8-byte store
//              B  [256][KC + 8] T  pointwise weights, channel-out-major (WMMA matrix_b col_major)
//              stage [8 warps][16 x 16] float   epilogue staging of one accumulator fragment
//   fp32:      A  [KC][BP + 4] float  (float4 reads along pixels)
//              B  [KC][128 + 4] float (float4 reads along output channels)
//   both:      dw weights of the chunk [KC][taps] float, dw bias [KC], per pixel of the band:
//              window origin (ih0, iw0) and the image's input / output offsets [BP]
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <mutex>
#include <type_traits>

#include "dw_cuda_device.cuh"
#include "fused_cuda.h"

namespace dsconv {
namespace cuda {
namespace fused {

constexpr int BP = kFusedBP, KC = kFusedKC, NT = kFusedThreads;
constexpr int LDA16 = BP + 8;         // 16-bit A pitch (elements): multiple of 8 (WMMA ldm)
constexpr int LD16 = KC + 8;          // 16-bit B pitch (elements)
constexpr int RUN = 4;                // consecutive output pixels per depthwise thread task
constexpr int LDA32 = BP + 4;         // fp32 A pitch (floats), rows 16-byte aligned
constexpr int LDB32 = kFusedBN32 + 4;  // fp32 B pitch (floats)

template <typename T>
struct Smem16 {
  T a[KC * LDA16];
  T b[kFusedBN16 * LD16];
  float stage[(NT / 32) * 256];
};
struct Smem32 {
  float a[KC * LDA32];
  float b[KC * LDB32];
};
template <typename T>
struct Smem {
  __align__(32) typename std::conditional<std::is_same<T, float>::value, Smem32, Smem16<T>>::type g;
  int64_t in_off[BP];   // n * in_sn
  int64_t out_off[BP];  // n * out_sn + q * out_sq
  float dww[KC * kFusedMaxTaps];
  float dwb[KC];
  int ih0[BP];
  int iw0[BP];
};

// Activation codes as cpu/fused_kernels.h (0 none, 1 relu, 2 relu6, 3 silu, 4 hardswish, 5 gelu).
__device__ __forceinline__ float act_fn(float x, int act) {
  switch (act) {
    case 1: return fmaxf(x, 0.f);
    case 2: return fminf(fmaxf(x, 0.f), 6.f);
    case 3: return x / (1.f + expf(-x));
    case 4: return x * fminf(fmaxf(x + 3.f, 0.f), 6.f) * (1.f / 6.f);
    case 5: return 0.5f * x * (1.f + erff(x * 0.70710678118654752440f));
    default: return x;
  }
}

// Value as the unfused composition would see it: a 16-bit intermediate is rounded to T before
// the activation (the activation's result is rounded again on store).
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  if constexpr (std::is_same<T, __half>::value) return __half2float(__float2half_rn(v));
  if constexpr (std::is_same<T, __nv_bfloat16>::value) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

template <typename T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same<T, __half>::value) return __float2half_rn(v);
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __float2bfloat16_rn(v);
  else return v;
}

template <typename T>
__device__ __forceinline__ float finish(float v, int act) {
  if (act == 0) return v;
  return act_fn(round_to<T>(v), act);
}

// Depthwise output (bias, act applied, not yet rounded) of channel c at the pixel whose window
// starts at input (ih0, iw0). K > 0: K x K, dilation 1; K == 0: runtime kernel.
template <typename T, int K>
__device__ __forceinline__ float dw_point(const FusedArgs& a, const T* src, const float* wk, float bias, int ih0,
                                          int iw0) {
  float acc = bias;
  if constexpr (K > 0) {
    if (ih0 >= 0 && iw0 >= 0 && ih0 + K <= a.H && iw0 + K <= a.W) {
      const T* p0 = src + int64_t(ih0) * a.in_sh + int64_t(iw0) * a.in_sw;
#pragma unroll
      for (int kh = 0; kh < K; ++kh) {
        const T* pr = p0 + int64_t(kh) * a.in_sh;
#pragma unroll
        for (int kw = 0; kw < K; ++kw) acc = fmaf(wk[kh * K + kw], ldf(pr + int64_t(kw) * a.in_sw), acc);
      }
    } else {
#pragma unroll
      for (int kh = 0; kh < K; ++kh) {
        const int ih = ih0 + kh;
        if (ih < 0 || ih >= a.H) continue;
        const T* pr = src + int64_t(ih) * a.in_sh;
#pragma unroll
        for (int kw = 0; kw < K; ++kw) {
          const int iw = iw0 + kw;
          if (iw >= 0 && iw < a.W) acc = fmaf(wk[kh * K + kw], ldf(pr + int64_t(iw) * a.in_sw), acc);
        }
      }
    }
  } else {
    for (int kh = 0; kh < a.KH; ++kh) {
      const int ih = ih0 + kh * a.dil_h;
      if (ih < 0 || ih >= a.H) continue;
      const T* pr = src + int64_t(ih) * a.in_sh;
      for (int kw = 0; kw < a.KW; ++kw) {
        const int iw = iw0 + kw * a.dil_w;
        if (iw >= 0 && iw < a.W) acc = fmaf(wk[kh * a.KW + kw], ldf(pr + int64_t(iw) * a.in_sw), acc);
      }
    }
  }
  return acc;
}

// Depthwise outputs of channel c for the RUN pixels j0 .. j0 + RUN - 1 of the band (zero beyond
// P), finished (bias, act). When the RUN pixels lie in one output row and their windows inside the
// input (K, S compile-time), each input row segment is loaded once into registers and shared by
// the RUN outputs (sliding window); otherwise pixel by pixel with border checks.
// The band's pixels are consecutive in (n, oh, ow) order, so "one row" is iw0 advancing by S at
// every step (a wrap to the next row or image moves it back).
template <typename T, int K, int S>
__device__ __forceinline__ float4 dw_run(const FusedArgs& a, const T* src_c, const float* wk, float bias,
                                         const int* s_ih0, const int* s_iw0, const int64_t* s_in_off, int j0,
                                         int P) {
  float r[RUN];
  if constexpr (K > 0 && S > 0) {
    constexpr int L = (RUN - 1) * S + K;  // input columns the run reads per kernel row
    const int ih0 = s_ih0[j0], iw0 = s_iw0[j0];
    if (j0 + RUN <= P && s_iw0[j0 + RUN - 1] == iw0 + (RUN - 1) * S && ih0 >= 0 && iw0 >= 0 && ih0 + K <= a.H &&
        iw0 + L <= a.W) {
#pragma unroll
      for (int i = 0; i < RUN; ++i) r[i] = bias;
      const T* p0 = src_c + s_in_off[j0] + int64_t(ih0) * a.in_sh + int64_t(iw0) * a.in_sw;
#pragma unroll
      for (int kh = 0; kh < K; ++kh) {
        const T* pr = p0 + int64_t(kh) * a.in_sh;
        float xr[L];
#pragma unroll
        for (int i = 0; i < L; ++i) xr[i] = ldf(pr + int64_t(i) * a.in_sw);
#pragma unroll
        for (int kw = 0; kw < K; ++kw) {
          const float w = wk[kh * K + kw];
#pragma unroll
          for (int i = 0; i < RUN; ++i) r[i] = fmaf(w, xr[i * S + kw], r[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < RUN; ++i) r[i] = finish<T>(r[i], a.act);
      return make_float4(r[0], r[1], r[2], r[3]);
    }
  }
#pragma unroll
  for (int i = 0; i < RUN; ++i) {
    const int j = j0 + i;
    r[i] = j < P ? finish<T>(dw_point<T, K>(a, src_c + s_in_off[j], wk, bias, s_ih0[j], s_iw0[j]), a.act) : 0.f;
  }
  return make_float4(r[0], r[1], r[2], r[3]);
}

// Tile mode: the staged input X holds raw input elements (16-bit: their bits, as unsigned
// short, so staging is a copy; fp32: floats).
template <typename T>
using XT = typename std::conditional<std::is_same<T, float>::value, float, unsigned short>::type;

template <typename T>
__device__ __forceinline__ float x_to_float(XT<T> v) {
  if constexpr (std::is_same<T, __half>::value) return __half2float(__ushort_as_half(v));
  else if constexpr (std::is_same<T, __nv_bfloat16>::value) return __bfloat162float(__ushort_as_bfloat16(v));
  else return v;
}

// Tile mode: stage the input rows ih_base .. ih_base + IR - 1, columns -pad_l .. -pad_l + IWp - 1
// of channels c0 .. c0 + KC - 1 of image `img` into X (zero outside the input and beyond C).
// Channels-innermost input: lanes walk the 32 channels (coalesced), warps the (row, col)
// positions; otherwise lanes walk columns, warps the (channel, row) rows. Four loads per lane are
// issued before their stores, to keep bytes in flight.
template <typename T>
__device__ __forceinline__ void stage_tile(const FusedArgs& a, XT<T>* X, const XT<T>* inx, int ih_base, int c0,
                                           int warp, int lane) {
  constexpr int NW = NT / 32, U = 4;
  const int iw_base = -a.pad_l;
  // No division per element: each warp's (row, column) position advances incrementally, and the
  // channels-major layout computes one 64-bit row address per staged row (ncu on the H200 put an
  // earlier loop's two run-time divisions and per-element 64-bit math at ~70 instructions per
  // staged element; this one measured faster on every block, 2026-11-26).
  if (a.chan_inner) {
    const int items = a.IR * a.IWp;
    const int c = c0 + lane;
    const bool cok = c < a.C;
    const XT<T>* pc = inx + int64_t(c) * a.in_sc;
    int r = 0, col = warp;
    while (col >= a.IWp) col -= a.IWp, ++r;
    for (int i0 = warp; i0 < items; i0 += NW * U) {
      XT<T> v[U];
      int dst[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        v[u] = XT<T>(0);
        dst[u] = -1;
        if (i0 + u * NW < items) {
          const int ih = ih_base + r, iw = iw_base + col;
          dst[u] = lane * a.XCH + r * a.XP + col;
          if (cok && ih >= 0 && ih < a.H && iw >= 0 && iw < a.W)
            v[u] = __ldg(pc + int64_t(ih) * a.in_sh + int64_t(iw) * a.in_sw);
        }
        col += NW;
        while (col >= a.IWp) col -= a.IWp, ++r;
      }
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (dst[u] >= 0) X[dst[u]] = v[u];
    }
  } else {
    constexpr int CI = (kFusedBP + 6 + 31) / 32;  // column steps of a staged row (IWp <= 70)
    const int rows = KC * a.IR;
    int cc = 0, r = warp;
    while (r >= a.IR) r -= a.IR, ++cc;
    for (int row0 = warp; row0 < rows; row0 += NW * U) {
      XT<T> v[U][CI];
      int dbase[U];
#pragma unroll
      for (int u = 0; u < U; ++u) {
        dbase[u] = -1;
#pragma unroll
        for (int j = 0; j < CI; ++j) v[u][j] = XT<T>(0);
        if (row0 + u * NW < rows) {
          const int c = c0 + cc, ih = ih_base + r;
          dbase[u] = cc * a.XCH + r * a.XP;
          if (c < a.C && ih >= 0 && ih < a.H) {
            const XT<T>* src = inx + int64_t(c) * a.in_sc + int64_t(ih) * a.in_sh;
#pragma unroll
            for (int j = 0; j < CI; ++j) {
              const int col = j * 32 + lane, iw = iw_base + col;
              if (col < a.IWp && iw >= 0 && iw < a.W) v[u][j] = __ldg(src + int64_t(iw) * a.in_sw);
            }
          }
        }
        r += NW;
        while (r >= a.IR) r -= a.IR, ++cc;
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        if (dbase[u] < 0) continue;
#pragma unroll
        for (int j = 0; j < CI; ++j) {
          const int col = j * 32 + lane;
          if (col < a.IWp) X[dbase[u] + col] = v[u][j];
        }
      }
    }
  }
}

// Tile mode: depthwise outputs (bias, act) of tile pixels j0 .. j0 + RUN - 1 (zero beyond P) from
// the staged channel Xc (pixel j = output row j / OW of the tile, column j % OW; its window starts
// at staged row (j / OW) * S, column (j % OW) * S). j0 is warp-uniform, so are both branches.
// ws / rs: the staged tile's column and row strides (channels-major planes: 1 / XP; the pipeline
// mode's pixel-major rows: KC / IWp * KC).
template <typename T, int K, int S>
__device__ __forceinline__ float4 dw_tile_run(const FusedArgs& a, const XT<T>* Xc, int ws, int rs, const float* wk,
                                              float bias, int j0, int P) {
  float r[RUN];
#pragma unroll
  for (int i = 0; i < RUN; ++i) r[i] = bias;
  int orow = j0 / a.OW, ow = j0 - orow * a.OW;
  if (j0 + RUN <= P && ow + RUN <= a.OW) {  // one row segment: sliding window
    constexpr int L = (RUN - 1) * S + K;
    const XT<T>* p0 = Xc + orow * S * rs + ow * S * ws;
    // 7x7: rows one at a time (unrolled, the loads of all rows are hoisted: 160 registers).
#pragma unroll(K == 7 ? 1 : K)
    for (int kh = 0; kh < K; ++kh) {
      float xr[L];
#pragma unroll
      for (int i = 0; i < L; ++i) xr[i] = x_to_float<T>(p0[kh * rs + i * ws]);
#pragma unroll
      for (int kw = 0; kw < K; ++kw)
#pragma unroll
        for (int i = 0; i < RUN; ++i) r[i] = fmaf(wk[kh * K + kw], xr[i * S + kw], r[i]);
    }
#pragma unroll
    for (int i = 0; i < RUN; ++i) r[i] = finish<T>(r[i], a.act);
  } else {
#pragma unroll
    for (int i = 0; i < RUN; ++i) {
      if (j0 + i < P) {
        const XT<T>* p0 = Xc + orow * S * rs + ow * S * ws;
#pragma unroll(K == 7 ? 1 : K)
        for (int kh = 0; kh < K; ++kh)
#pragma unroll
          for (int kw = 0; kw < K; ++kw) r[i] = fmaf(wk[kh * K + kw], x_to_float<T>(p0[kh * rs + kw * ws]), r[i]);
        r[i] = finish<T>(r[i], a.act);
      } else {
        r[i] = 0.f;
      }
      if (++ow == a.OW) ow = 0, ++orow;
    }
  }
  return make_float4(r[0], r[1], r[2], r[3]);
}

using FragAcc = nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>;

// fp16/bf16: one chunk's A (BP x KC, channel-major) times B (KC x BN, output-channel-major) into
// the warp's accumulators: warp (wm, wn) owns pixels wm*16 .. +15 and nf fragments of 16 output
// channels from (wn * nf) * 16.
// NFM: accumulator fragments held (>= nf).
template <typename AT, int NFM>
__device__ __forceinline__ void gemm_chunk16(FragAcc (&acc16)[NFM], const AT* As, const AT* Bs, int nf, int wm,
                                             int wn) {
  using namespace nvcuda;
#pragma unroll
  for (int k = 0; k < KC; k += 16) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, AT, wmma::col_major> fa;
    wmma::load_matrix_sync(fa, As + k * LDA16 + wm * 16, LDA16);
#pragma unroll
    for (int f = 0; f < NFM; ++f) {
      if (f < nf) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, AT, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, Bs + (wn * nf + f) * 16 * LD16 + k, LD16);
        wmma::mma_sync(acc16[f], fa, fb, acc16[f]);
      }
    }
  }
}

// fp16/bf16 epilogue: + pw bias, pw act, store each accumulator fragment through the warp's
// staging area st (256 floats); out_off[j]: output offset of tile / band pixel j (64-bit).
template <typename T, int NFM>
__device__ __forceinline__ void epilogue16(const FusedArgs& a, FragAcc (&acc16)[NFM], float* st, const int64_t* out_off,
                                           int co0, int P, int wm, int wn, int lane) {
  using namespace nvcuda;
  T* out = static_cast<T*>(a.out);
#pragma unroll
  for (int f = 0; f < NFM; ++f) {
    const int cb = co0 + (wn * a.nf + f) * 16;  // first output channel of the fragment
    if (f < a.nf && cb < a.Cout) {              // warp-uniform
      // Stage so that consecutive lanes write consecutive addresses: pixels fastest for NCHW
      // output (element (row, col) at col*16 + row), channels fastest for channels_last.
      wmma::store_matrix_sync(st, acc16[f], 16, a.out_cl ? wmma::mem_row_major : wmma::mem_col_major);
      __syncwarp();
#pragma unroll
      for (int r = 0; r < 8; ++r) {
        const int e = lane + 32 * r;
        const int row = a.out_cl ? e / 16 : e % 16, col = a.out_cl ? e % 16 : e / 16;
        const int j = wm * 16 + row, co = cb + col;
        if (j < P && co < a.Cout) {
          float v = st[e];
          if (a.pw_b) v += __ldg(a.pw_b + co);
          v = finish<T>(v, a.pw_act);
          out[out_off[j] + int64_t(co) * a.out_sc] = from_float<T>(v);
        }
      }
      __syncwarp();
    }
  }
}

// TILE: tile mode (see FusedArgs; K > 0 and S > 0 only); otherwise the band mode.
template <typename T, int K, int S, bool TILE>
__global__ void __launch_bounds__(NT) fused_kernel(const FusedArgs a) {
  __shared__ Smem<T> sm;
  constexpr bool kTC = !std::is_same<T, float>::value;  // tensor-core path
  const int tid = threadIdx.x;
  // The band: pixels g0 .. g0 + P - 1 of all N * OH * OW output pixels in (n, oh, ow) order (a
  // band may span images, so small images waste no tile rows).
  // Tile mode: output rows oh0 .. oh0 + tile_R - 1 of image img (pixels j = (oh - oh0) * OW + ow).
  const int64_t g0 = int64_t(blockIdx.x) * BP;
  const int64_t img = TILE ? int64_t(blockIdx.x) / a.tiles_img : 0;
  const int oh0 = TILE ? static_cast<int>(int64_t(blockIdx.x) - img * a.tiles_img) * a.tile_R : 0;
  const int P = TILE ? (a.OH - oh0 < a.tile_R ? a.OH - oh0 : a.tile_R) * a.OW
                     : static_cast<int>(a.NHW - g0 < BP ? a.NHW - g0 : BP);
  const int co0 = static_cast<int>(blockIdx.y) * a.BN;
  const T* in = static_cast<const T*>(a.in);
  const T* pw = static_cast<const T*>(a.pw_w);
  extern __shared__ __align__(16) unsigned char fused_dyn_smem[];
  XT<T>* X = reinterpret_cast<XT<T>*>(fused_dyn_smem);  // tile mode only

  if (TILE && tid < BP) {
    const int q = oh0 * a.OW + (tid < P ? tid : 0);
    sm.out_off[tid] = img * a.out_sn + int64_t(q) * a.out_sq;
  } else if (!TILE && tid < BP) {
    const int64_t g = g0 + (tid < P ? tid : 0);
    const int64_t n = g / a.HW;
    const int q = static_cast<int>(g - n * a.HW);  // < 2^31 (fused_supported)
    const int oh = q / a.OW, ow = q - oh * a.OW;
    sm.ih0[tid] = oh * a.S_h - a.pad_t;
    sm.iw0[tid] = ow * a.S_w - a.pad_l;
    sm.in_off[tid] = n * a.in_sn;
    sm.out_off[tid] = n * a.out_sn + int64_t(q) * a.out_sq;
  }

  // Depthwise thread mapping: 2 tasks per thread and chunk, each RUN consecutive pixels of one
  // channel. Lanes walk channels when the input's channels are contiguous (coalesced NHWC
  // reads), runs of pixels otherwise.
  constexpr int kRuns = BP / RUN;                   // 16 runs per channel
  constexpr int kTasks = BP * KC / (RUN * NT);      // 2
  const int run_a = a.chan_inner ? tid / KC : tid % kRuns;
  const int cc_a = a.chan_inner ? tid % KC : tid / kRuns;
  const int run_step = a.chan_inner ? NT / KC : 0;  // 8
  const int cc_step = a.chan_inner ? 0 : NT / kRuns;  // 16

  // GEMM roles.
  const int warp = tid / 32, lane = tid % 32;
  const int wm = warp % 4, wn = warp / 4;  // 16-bit: warp's 16-row M tile and N half
  const int tx = tid % 16, ty = tid / 16;  // fp32: 4 pixels x 8 output channels per thread

  using AT = typename std::conditional<kTC, T, __half>::type;  // fragment type (unused for fp32)
  FragAcc acc16[8];
  float acc32[4][8];
  if constexpr (kTC) {
#pragma unroll
    for (int f = 0; f < 8; ++f) nvcuda::wmma::fill_fragment(acc16[f], 0.f);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int k = 0; k < 8; ++k) acc32[i][k] = 0.f;
  }

  for (int c0 = 0; c0 < a.C; c0 += KC) {
    __syncthreads();  // previous chunk's A / B / dw weights consumed (first pass: ih0 / iw0 written)
    // dw weights and bias of the chunk (zero beyond C).
    for (int i = tid; i < KC * a.taps; i += NT) {
      const int c = c0 + i / a.taps;
      sm.dww[i] = c < a.C ? __ldg(a.dw_w + int64_t(c0) * a.taps + i) : 0.f;
    }
    if (tid < KC) sm.dwb[tid] = (a.dw_b && c0 + tid < a.C) ? __ldg(a.dw_b + c0 + tid) : 0.f;
    // Pointwise weights of the chunk (zero beyond C and Cout).
    if constexpr (kTC) {
      const unsigned short* pwb = reinterpret_cast<const unsigned short*>(pw);
      unsigned short* bs = reinterpret_cast<unsigned short*>(sm.g.b);
      for (int i = tid; i < a.BN * KC; i += NT) {
        const int kk = i % KC, nn = i / KC, co = co0 + nn, c = c0 + kk;
        bs[nn * LD16 + kk] = (co < a.Cout && c < a.C) ? __ldg(pwb + int64_t(co) * a.C + c) : 0;
      }
    } else {
      for (int i = tid; i < kFusedBN32 * KC; i += NT) {
        const int kk = i % KC, nn = i / KC, co = co0 + nn, c = c0 + kk;
        sm.g.b[kk * LDB32 + nn] = (co < a.Cout && c < a.C) ? ldf(pw + int64_t(co) * a.C + c) : 0.f;
      }
    }
    if constexpr (TILE) {
      stage_tile<T>(a, X, reinterpret_cast<const XT<T>*>(in) + img * a.in_sn, oh0 * S - a.pad_t, c0, warp, lane);
    }
    __syncthreads();
    if constexpr (TILE) {
      // Depthwise chunk -> A: lane = channel c0 + lane, warps walk the runs of 4 pixels.
      // Weights in registers up to 5x5; 7x7 reads them from shared memory (49 more registers
      // would take the kernel past 128 and to one block per SM).
      constexpr int KKr = K <= 5 ? K * K : 1;
      float wkr[KKr];
#pragma unroll
      for (int t = 0; t < KKr; ++t) wkr[t] = sm.dww[lane * (K * K) + t];
      const float* wk = K <= 5 ? wkr : sm.dww + lane * (K * K);
      const float bias = sm.dwb[lane];
      const XT<T>* Xc = X + lane * a.XCH;
#pragma unroll
      for (int t = 0; t < kTasks; ++t) {
        const int j0 = (warp + t * (NT / 32)) * RUN;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (j0 < P && c0 + lane < a.C) v = dw_tile_run<T, K, S>(a, Xc, 1, a.XP, wk, bias, j0, P);
        if constexpr (kTC) {
          st4(sm.g.a + lane * LDA16 + j0, v);
        } else {
          st4(sm.g.a + lane * LDA32 + j0, v);
        }
      }
    }
    // Depthwise chunk -> A (zero for pixels beyond the band and channels beyond C).
#pragma unroll 1
    for (int t = 0; t < (TILE ? 0 : kTasks); ++t) {
      const int cc = cc_a + t * cc_step, j0 = (run_a + t * run_step) * RUN, c = c0 + cc;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (c < a.C)
        v = dw_run<T, K, S>(a, in + int64_t(c) * a.in_sc, sm.dww + cc * a.taps, sm.dwb[cc], sm.ih0, sm.iw0, sm.in_off,
                            j0, P);
      if constexpr (kTC) {
        st4(sm.g.a + cc * LDA16 + j0, v);
      } else {
        st4(sm.g.a + cc * LDA32 + j0, v);
      }
    }
    __syncthreads();
    // A (BP x KC) x B (KC x BN) into the accumulators.
    if constexpr (kTC) {
      gemm_chunk16<AT, 8>(acc16, sm.g.a, sm.g.b, a.nf, wm, wn);
    } else {
      if (co0 + ty * 8 < a.Cout) {
#pragma unroll 4
        for (int k = 0; k < KC; ++k) {
          const float4 x = *reinterpret_cast<const float4*>(sm.g.a + k * LDA32 + tx * 4);
          const float4 w0 = *reinterpret_cast<const float4*>(sm.g.b + k * LDB32 + ty * 8);
          const float4 w1 = *reinterpret_cast<const float4*>(sm.g.b + k * LDB32 + ty * 8 + 4);
          const float xv[4] = {x.x, x.y, x.z, x.w};
          const float wv[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
          for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int m = 0; m < 8; ++m) acc32[i][m] = fmaf(xv[i], wv[m], acc32[i][m]);
        }
      }
    }
  }

  // Epilogue: + pw bias, pw act, store (64-bit offsets).
  T* out = static_cast<T*>(a.out);
  if constexpr (kTC) {
    epilogue16<T, 8>(a, acc16, sm.g.stage + warp * 256, sm.out_off, co0, P, wm, wn, lane);
  } else {
#pragma unroll
    for (int m = 0; m < 8; ++m) {
      const int co = co0 + ty * 8 + m;
      if (co >= a.Cout) break;
      const float bias = a.pw_b ? __ldg(a.pw_b + co) : 0.f;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int j = tx * 4 + i;
        if (j < P) out[sm.out_off[j] + int64_t(co) * a.out_sc] = act_fn(acc32[i][m] + bias, a.pw_act);
      }
    }
  }
}

// ---- Pipeline mode (16-bit tile mode with aligned operands: a.pipe, see FusedArgs) ----
// ncu on the H200 (2026-11-26) put the tile kernel at ~2000 warp-instructions per chunk and warp
// for 576->96 at 14x14: scalar 2-byte loads of the pointwise weights and of the input rows, each
// with its own index math, in several dependent rounds per chunk. Here each chunk is a handful of
// 4- or 16-byte cp.async copies per thread, issued one chunk ahead into the other buffer.

__device__ __forceinline__ void cp_async4(void* dst, const void* src, bool ok) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool ok) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

template <typename T>
struct SmemPipe {
  __align__(32) T a[KC * LDA16];
  float stage[(NT / 32) * 256];
  int64_t out_off[BP];
};

// A thread's copy units of X repeat every chunk: its first unit's position, and the steps that
// move it on by NT units, computed once (no division per copy).
struct PipeWalk {
  int r0, c0, x0;   // first unit: staged row, column (pair or pixel), channel (planes only)
  int dr, dc, dx;   // steps per NT units (row, column, channel)
  int cols;         // columns per staged row: pairs (planes) or pixels (pixel-major)
};

__device__ __forceinline__ PipeWalk pipe_walk(const FusedArgs& a, int tid) {
  PipeWalk w;
  if (a.x_il) {  // units (pixel, group of 8 channels); a thread's group is tid % 4 (NT % 4 == 0)
    w.cols = a.IWp;
    const int pc = tid / 4, step = NT / 4;
    w.r0 = pc / w.cols, w.c0 = pc - w.r0 * w.cols, w.x0 = 0;
    w.dr = step / w.cols, w.dc = step - w.dr * w.cols, w.dx = 0;
  } else {  // units (channel, row, pair of columns)
    w.cols = a.XP / 2;
    const int row = tid / w.cols, drow = NT / w.cols;
    w.c0 = tid - row * w.cols, w.dc = NT - drow * w.cols;
    w.x0 = row / a.IR, w.r0 = row - w.x0 * a.IR;
    w.dx = drow / a.IR, w.dr = drow - w.dx * a.IR;
  }
  return w;
}

// Issues chunk c0's copies into buffer `buf` (X | B | dw weights | dw bias); every element the
// compute reads is written, zero where outside the input, beyond C or beyond Cout.
template <typename T>
__device__ __forceinline__ void pipe_issue(const FusedArgs& a, unsigned char* buf, const XT<T>* inx, int ih_base,
                                           int c0, int co0, int tid, const PipeWalk& w) {
  XT<T>* X = reinterpret_cast<XT<T>*>(buf);
  if (a.x_il) {
    const int g = tid % 4, c = c0 + 8 * g;
    const bool cok = c < a.C;
    int r = w.r0, col = w.c0;
    for (int pc = tid / 4; pc < a.IR * a.IWp; pc += NT / 4) {
      const int ih = ih_base + r, iw = col - a.pad_l;
      const bool ok = cok && ih >= 0 && ih < a.H && iw >= 0 && iw < a.W;
      const XT<T>* src = ok ? inx + int64_t(ih) * a.in_sh + int64_t(iw) * a.in_sw + c : inx;
      cp_async16(X + pc * KC + 8 * g, src, ok);
      col += w.dc, r += w.dr;
      if (col >= w.cols) col -= w.cols, ++r;
    }
  } else {
    const int iwb = -a.pad_l - a.XS;  // input column of staged column 0 (even)
    int r = w.r0, pr = w.c0, cc = w.x0;
    for (int u = tid; u < KC * a.IR * w.cols; u += NT) {
      const int c = c0 + cc, ih = ih_base + r, iw = iwb + 2 * pr;
      // iw even and W even: the pair (iw, iw + 1) is all inside or all outside the row
      const bool ok = c < a.C && ih >= 0 && ih < a.H && iw >= 0 && iw < a.W;
      const XT<T>* src = ok ? inx + int64_t(c) * a.in_sc + int64_t(ih) * a.in_sh + iw : inx;
      cp_async4(X + cc * a.XCH + r * a.XP + 2 * pr, src, ok);
      pr += w.dc;
      int carry = 0;
      if (pr >= w.cols) pr -= w.cols, carry = 1;
      r += w.dr + carry, cc += w.dx;
      if (r >= a.IR) r -= a.IR, ++cc;
    }
  }
  // Pointwise weights B[nn][kk] (pitch LD16) of output channels co0 + nn, channels c0 + kk.
  unsigned short* Bs = reinterpret_cast<unsigned short*>(buf + a.pipe_xb);
  const unsigned short* pw = static_cast<const unsigned short*>(a.pw_w);
  {
    const int g = tid % 4, c = c0 + 8 * g;
    for (int nn = tid / 4; nn < a.BN; nn += NT / 4) {
      const int co = co0 + nn;
      const bool ok = co < a.Cout && c < a.C;
      cp_async16(Bs + nn * LD16 + 8 * g, ok ? pw + int64_t(co) * a.C + c : pw, ok);
    }
  }
  // Depthwise weights [KC][taps] and bias [KC] (float; C % 8 == 0, so a 4-float group is all in).
  float* dww = reinterpret_cast<float*>(buf + a.pipe_xb + a.pipe_bb);
  const int wvalid = (a.C - c0) * a.taps;
  for (int u = tid; u < KC * a.taps / 4; u += NT) {
    const bool ok = 4 * u < wvalid;
    cp_async16(dww + 4 * u, ok ? a.dw_w + int64_t(c0) * a.taps + 4 * u : a.dw_w, ok);
  }
  if (tid < KC / 4) {
    float* dwb = reinterpret_cast<float*>(buf + a.pipe_xb + a.pipe_bb + a.pipe_wb);
    const bool ok = a.dw_b != nullptr && c0 + 4 * tid < a.C;
    cp_async16(dwb + 4 * tid, ok ? a.dw_b + c0 + 4 * tid : a.dw_w, ok);
  }
}

// The pipeline kernel's body. NFM: accumulator fragments per warp (>= a.nf).
template <typename T, int K, int S, int NFM>
__device__ __forceinline__ void pipe_body(const FusedArgs& a) {
  __shared__ SmemPipe<T> sm;
  extern __shared__ __align__(128) unsigned char fused_pipe_smem[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp % 4, wn = warp / 4;
  const int64_t img = int64_t(blockIdx.x) / a.tiles_img;
  const int oh0 = static_cast<int>(int64_t(blockIdx.x) - img * a.tiles_img) * a.tile_R;
  const int P = (a.OH - oh0 < a.tile_R ? a.OH - oh0 : a.tile_R) * a.OW;
  const int co0 = static_cast<int>(blockIdx.y) * a.BN;
  if (tid < BP) {
    const int q = oh0 * a.OW + (tid < P ? tid : 0);
    sm.out_off[tid] = img * a.out_sn + int64_t(q) * a.out_sq;
  }
  const XT<T>* inx = static_cast<const XT<T>*>(a.in) + img * a.in_sn;
  const int ih_base = oh0 * S - a.pad_t;
  const PipeWalk w = pipe_walk(a, tid);
  FragAcc acc16[NFM];
#pragma unroll
  for (int f = 0; f < NFM; ++f) nvcuda::wmma::fill_fragment(acc16[f], 0.f);
  // The depthwise thread's view of the staged tile: channel lane, (row, column) strides.
  const int ws = a.x_il ? KC : 1, rs = a.x_il ? a.XP * KC : a.XP;
  const int xoff = a.x_il ? lane : lane * a.XCH + a.XS;

  pipe_issue<T>(a, fused_pipe_smem, inx, ih_base, 0, co0, tid, w);
  cp_async_commit();
  for (int c0 = 0, i = 0; c0 < a.C; c0 += KC, ++i) {
    unsigned char* cur = fused_pipe_smem + (i & 1) * a.pipe_buf;
    if (c0 + KC < a.C) {
      pipe_issue<T>(a, fused_pipe_smem + ((i + 1) & 1) * a.pipe_buf, inx, ih_base, c0 + KC, co0, tid, w);
      cp_async_commit();
      cp_async_wait<1>();  // all but the copies just issued: chunk i has landed (this thread's)
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // chunk i visible to all; the previous GEMM is done with A
    {
      const float* dww = reinterpret_cast<const float*>(cur + a.pipe_xb + a.pipe_bb);
      constexpr int KKr = K <= 5 ? K * K : 1;  // as the tile kernel: 7x7 reads weights from smem
      float wkr[KKr];
#pragma unroll
      for (int t = 0; t < KKr; ++t) wkr[t] = dww[lane * (K * K) + t];
      const float* wk = K <= 5 ? wkr : dww + lane * (K * K);
      const float bias = reinterpret_cast<const float*>(cur + a.pipe_xb + a.pipe_bb + a.pipe_wb)[lane];
      const XT<T>* Xc = reinterpret_cast<const XT<T>*>(cur) + xoff;
#pragma unroll
      for (int t = 0; t < BP * KC / (RUN * NT); ++t) {
        const int j0 = (warp + t * (NT / 32)) * RUN;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (j0 < P && c0 + lane < a.C) v = dw_tile_run<T, K, S>(a, Xc, ws, rs, wk, bias, j0, P);
        st4(sm.a + lane * LDA16 + j0, v);
      }
    }
    __syncthreads();  // A complete
    gemm_chunk16<T, NFM>(acc16, sm.a, reinterpret_cast<const T*>(cur + a.pipe_xb), a.nf, wm, wn);
    __syncthreads();  // buffer i & 1 is free for chunk i + 2's copies
  }
  epilogue16<T, NFM>(a, acc16, sm.stage + warp * 256, sm.out_off, co0, P, wm, wn, lane);
}

// The kernel the H200 ran (8 accumulator fragments, 124 registers: 2 blocks of 256 threads per SM).
template <typename T, int K, int S>
__global__ void __launch_bounds__(NT) fused_kernel_pipe(const FusedArgs a) {
  pipe_body<T, K, S, 8>(a);
}

// DSCONV_FUSED_NFMAX=1 (for the next GPU run; compiles, not yet run on a GPU): as few fragments
// as nf needs (NFM 2 / 4, Cout <= 128) and a register cap for 3 blocks per SM (80 registers;
// ptxas spills ~40 bytes for 5x5), to measure occupancy against the default.
template <typename T, int K, int S, int NFM>
__global__ void __launch_bounds__(NT, 3) fused_kernel_pipe_nf(const FusedArgs a) {
  pipe_body<T, K, S, NFM>(a);
}

// A tile-mode launch: the staged tile is dynamic shared memory; past 48 KiB in all (static +
// dynamic) the kernel must be allowed more first. The allowance is raised once per kernel, device
// and size (cached), not on every call: it costs host time, and a call captured into a CUDA graph
// after its warm-up then issues no attribute call inside the capture.
template <void (*Kern)(FusedArgs)>
cudaError_t launch_dyn(size_t static_bytes, const dim3& grid, const FusedArgs& a, cudaStream_t stream) {
  if (static_bytes + a.x_bytes > 48 * 1024) {
    // Under a lock, so that the attribute only grows: two threads raising it to different sizes
    // must not leave it below what the cache says.
    static std::mutex mu;
    static int allowed[64] = {0};  // dynamic bytes allowed so far, per device
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    std::lock_guard<std::mutex> lock(mu);
    if (dev < 0 || dev >= 64 || allowed[dev] < a.x_bytes) {
      e = cudaFuncSetAttribute(Kern, cudaFuncAttributeMaxDynamicSharedMemorySize, a.x_bytes);
      if (e != cudaSuccess) return e;
      if (dev >= 0 && dev < 64) allowed[dev] = a.x_bytes;
    }
  }
  Kern<<<grid, NT, a.x_bytes, stream>>>(a);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch(const FusedArgs& a, cudaStream_t stream) {
  if (a.NHW == 0 || a.Cout == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(a.grid_x), static_cast<unsigned>((a.Cout + a.BN - 1) / a.BN));
  // Templated K x K (dilation 1, equal strides 1 or 2); anything else: the runtime-K kernel.
  const bool sq = a.KH == a.KW && a.dil_h == 1 && a.dil_w == 1 && a.S_h == a.S_w && (a.S_h == 1 || a.S_h == 2);
  const int K = sq ? a.KH : 0, S = a.S_h;
  if (a.tile_R > 0) {  // fused_plan sets tile mode only for the K / S cases below
    constexpr bool kPipe = !std::is_same<T, float>::value;  // the pipeline: 16-bit only
#define DSCONV_FUSED_TILE_CASE(KK, SS)                                                              \
  if (K == KK && S == SS) {                                                                         \
    if constexpr (kPipe) {                                                                          \
      if (a.pipe && a.pipe_nfm == 2)                                                                \
        return launch_dyn<fused_kernel_pipe_nf<T, KK, SS, 2>>(sizeof(SmemPipe<T>), grid, a, stream); \
      if (a.pipe && a.pipe_nfm == 4)                                                                \
        return launch_dyn<fused_kernel_pipe_nf<T, KK, SS, 4>>(sizeof(SmemPipe<T>), grid, a, stream); \
      if (a.pipe) return launch_dyn<fused_kernel_pipe<T, KK, SS>>(sizeof(SmemPipe<T>), grid, a, stream); \
    }                                                                                               \
    return launch_dyn<fused_kernel<T, KK, SS, true>>(sizeof(Smem<T>), grid, a, stream);             \
  }
    DSCONV_FUSED_TILE_CASE(3, 1)
    DSCONV_FUSED_TILE_CASE(3, 2)
    DSCONV_FUSED_TILE_CASE(5, 1)
    DSCONV_FUSED_TILE_CASE(5, 2)
    DSCONV_FUSED_TILE_CASE(7, 1)
    DSCONV_FUSED_TILE_CASE(7, 2)
#undef DSCONV_FUSED_TILE_CASE
    return cudaErrorInvalidValue;
  }
#define DSCONV_FUSED_CASE(KK, SS) \
  if (K == KK && S == SS) return fused_kernel<T, KK, SS, false><<<grid, NT, 0, stream>>>(a), cudaGetLastError();
  DSCONV_FUSED_CASE(3, 1)
  DSCONV_FUSED_CASE(3, 2)
  DSCONV_FUSED_CASE(5, 1)
  DSCONV_FUSED_CASE(5, 2)
  DSCONV_FUSED_CASE(7, 1)
  DSCONV_FUSED_CASE(7, 2)
#undef DSCONV_FUSED_CASE
  fused_kernel<T, 0, 0, false><<<grid, NT, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace fused
}  // namespace cuda
}  // namespace dsconv

#define DSCONV_FUSED_INSTANTIATE(T)                                                              \
  namespace dsconv {                                                                             \
  namespace cuda {                                                                               \
  template <>                                                                                    \
  cudaError_t fused_forward<T>(const FusedArgs& a, cudaStream_t stream) {                        \
    return fused::launch<T>(a, stream);                                                          \
  }                                                                                              \
  }                                                                                              \
  }
