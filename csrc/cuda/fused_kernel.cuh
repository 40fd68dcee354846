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

template <typename T, int K, int S>
__global__ void __launch_bounds__(NT) fused_kernel(const FusedArgs a) {
  __shared__ Smem<T> sm;
  constexpr bool kTC = !std::is_same<T, float>::value;  // tensor-core path
  const int tid = threadIdx.x;
  // The band: pixels g0 .. g0 + P - 1 of all N * OH * OW output pixels in (n, oh, ow) order (a
  // band may span images, so small images waste no tile rows).
  const int64_t g0 = int64_t(blockIdx.x) * BP;
  const int P = static_cast<int>(a.NHW - g0 < BP ? a.NHW - g0 : BP);
  const int co0 = static_cast<int>(blockIdx.y) * a.BN;
  const T* in = static_cast<const T*>(a.in);
  const T* pw = static_cast<const T*>(a.pw_w);

  if (tid < BP) {
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

  using namespace nvcuda;
  using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;
  using AT = typename std::conditional<kTC, T, __half>::type;  // fragment type (unused for fp32)
  FragAcc acc16[8];
  float acc32[4][8];
  if constexpr (kTC) {
#pragma unroll
    for (int f = 0; f < 8; ++f) wmma::fill_fragment(acc16[f], 0.f);
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
    __syncthreads();
    // Depthwise chunk -> A (zero for pixels beyond the band and channels beyond C).
#pragma unroll 1
    for (int t = 0; t < kTasks; ++t) {
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
#pragma unroll
      for (int k = 0; k < KC; k += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, AT, wmma::col_major> fa;
        wmma::load_matrix_sync(fa, sm.g.a + k * LDA16 + wm * 16, LDA16);
#pragma unroll
        for (int f = 0; f < 8; ++f) {
          if (f < a.nf) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, AT, wmma::col_major> fb;
            wmma::load_matrix_sync(fb, sm.g.b + (wn * a.nf + f) * 16 * LD16 + k, LD16);
            wmma::mma_sync(acc16[f], fa, fb, acc16[f]);
          }
        }
      }
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
    float* st = sm.g.stage + warp * 256;
#pragma unroll
    for (int f = 0; f < 8; ++f) {
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
            out[sm.out_off[j] + int64_t(co) * a.out_sc] = from_float<T>(v);
          }
        }
        __syncwarp();
      }
    }
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

template <typename T>
cudaError_t launch(const FusedArgs& a, cudaStream_t stream) {
  if (a.NHW == 0 || a.Cout == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(a.bands), static_cast<unsigned>((a.Cout + a.BN - 1) / a.BN));
  // Templated K x K (dilation 1, equal strides 1 or 2); anything else: the runtime-K kernel.
  const bool sq = a.KH == a.KW && a.dil_h == 1 && a.dil_w == 1 && a.S_h == a.S_w && (a.S_h == 1 || a.S_h == 2);
  const int K = sq ? a.KH : 0, S = a.S_h;
#define DSCONV_FUSED_CASE(KK, SS) \
  if (K == KK && S == SS) return fused_kernel<T, KK, SS><<<grid, NT, 0, stream>>>(a), cudaGetLastError();
  DSCONV_FUSED_CASE(3, 1)
  DSCONV_FUSED_CASE(3, 2)
  DSCONV_FUSED_CASE(5, 1)
  DSCONV_FUSED_CASE(5, 2)
  DSCONV_FUSED_CASE(7, 1)
  DSCONV_FUSED_CASE(7, 2)
#undef DSCONV_FUSED_CASE
  fused_kernel<T, 0, 0><<<grid, NT, 0, stream>>>(a);
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
