// NHWC kernels (channels innermost, multiplier 1): forward and grad input.
//
// Each thread owns V consecutive channels (V = 4: one 16-byte float4 / 8-byte half4 access) and
// R = 4 consecutive destination pixels of one row; threadIdx.x runs over channel vectors, so a
// warp's loads and stores are contiguous runs of channels (coalesced). No shared memory: the
// neighbouring pixels' reuse of an input pixel is served by L1 (threadIdx.y runs over pixel
// groups of the same rows). Weights come pre-transposed to (taps, C) float (prep_weights_kernel)
// so that a channel vector of one tap is one aligned float4 load.
//  - nhwc_small_kernel<K, S> (K in 3,5,7, S in 1,2, dilation 1): per kernel row, the thread loads
//    the 3*S + K input pixels its 4 outputs need once and applies every tap (unrolled).
//  - nhwc_generic_kernel<V> (any K, stride, dilation, virtual-source upsampling for grad input):
//    one input load per tap and output; V = 1 when channels or strides are not 4-aligned.
#include "dw_cuda_device.cuh"

namespace dsconv {
namespace cuda {
namespace {

constexpr int R = kNhwcR;

__device__ __forceinline__ void fma4(float4& acc, const float4& w, const float4& x) {
  acc.x = fmaf(w.x, x.x, acc.x);
  acc.y = fmaf(w.y, x.y, acc.y);
  acc.z = fmaf(w.z, x.z, acc.z);
  acc.w = fmaf(w.w, x.w, acc.w);
}

struct PixelPos {
  int64_t n;
  int y, x0, c0;
};

// Returns false for threads past the last channel vector or pixel group.
template <int V>
__device__ __forceinline__ bool pixel_pos(const NhwcArgs& a, PixelPos& p) {
  const int cv = blockIdx.y * blockDim.x + threadIdx.x;
  const int64_t pg = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (cv >= a.CV || pg >= a.PG) return false;
  const int g = static_cast<int>(pg);  // PG < 2^31 (checked on the host)
  const int xg = g % a.DWG;
  const int t = g / a.DWG;
  p.y = t % a.DH;
  p.n = t / a.DH;
  p.x0 = xg * R;
  p.c0 = cv * V;
  return true;
}

template <typename T, int K, int S>
__global__ void __launch_bounds__(256) nhwc_small_kernel(const NhwcArgs a, const T* __restrict__ src,
                                                         const float* __restrict__ wt, T* __restrict__ dst) {
  constexpr int NQ = (R - 1) * S + K;  // input pixels one kernel row of 4 outputs touches
  PixelPos p;
  if (!pixel_pos<4>(a, p)) return;
  const int C = a.C;
  float4 acc[R];
  const float4 b0 = a.has_bias ? ld4(wt + K * K * C + p.c0) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int j = 0; j < R; ++j) acc[j] = b0;

  const T* sbase = src + p.n * a.s_sn + p.c0;
#pragma unroll
  for (int kh = 0; kh < K; ++kh) {
    const int sy = p.y * S - a.pad_t + kh;
    if (sy < 0 || sy >= a.SH) continue;
    const T* srow = sbase + sy * a.s_sh;
    float4 wk[K];
#pragma unroll
    for (int kw = 0; kw < K; ++kw) wk[kw] = ld4(wt + (kh * K + kw) * C + p.c0);
#pragma unroll
    for (int q = 0; q < NQ; ++q) {
      const int sx = p.x0 * S - a.pad_l + q;
      if (sx < 0 || sx >= a.SW) continue;
      const float4 v = ld4(srow + sx * a.s_sw);
#pragma unroll
      for (int j = 0; j < R; ++j) {
        const int kw = q - j * S;
        if (kw >= 0 && kw < K) fma4(acc[j], wk[kw], v);  // resolved at compile time
      }
    }
  }
  T* dbase = dst + p.n * a.d_sn + p.y * a.d_sh + p.c0;
#pragma unroll
  for (int j = 0; j < R; ++j)
    if (p.x0 + j < a.DW) st4(dbase + (p.x0 + j) * a.d_sw, acc[j]);
}

template <typename T, int V>
__global__ void __launch_bounds__(256) nhwc_generic_kernel(const NhwcArgs a, const T* __restrict__ src,
                                                           const float* __restrict__ wt, T* __restrict__ dst) {
  PixelPos p;
  if (!pixel_pos<V>(a, p)) return;
  const int C = a.C;
  const int KK = a.KH * a.KW;
  VecF<V> acc[R];
  {
    VecF<V> b0;
    if (a.has_bias) {
      b0 = ldv<V>(wt + KK * C + p.c0);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) b0.v[k] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < R; ++j) acc[j] = b0;
  }
  const T* sbase = src + p.n * a.s_sn + p.c0;
  for (int kh = 0; kh < a.KH; ++kh) {
    const int sy = virt_to_real(p.y * a.S_h - a.pad_t + kh * a.dil_h, a.up_h, a.SH);
    if (sy < 0) continue;
    const T* srow = sbase + sy * a.s_sh;
    for (int kw = 0; kw < a.KW; ++kw) {
      const VecF<V> wv = ldv<V>(wt + (kh * a.KW + kw) * C + p.c0);
#pragma unroll
      for (int j = 0; j < R; ++j) {
        const int sx = virt_to_real((p.x0 + j) * a.S_w - a.pad_l + kw * a.dil_w, a.up_w, a.SW);
        if (sx < 0) continue;
        const VecF<V> v = ldv<V>(srow + sx * a.s_sw);
#pragma unroll
        for (int k = 0; k < V; ++k) acc[j].v[k] = fmaf(wv.v[k], v.v[k], acc[j].v[k]);
      }
    }
  }
  T* dbase = dst + p.n * a.d_sn + p.y * a.d_sh + p.c0;
#pragma unroll
  for (int j = 0; j < R; ++j)
    if (p.x0 + j < a.DW) stv<V>(dbase + (p.x0 + j) * a.d_sw, acc[j]);
}

template <typename T>
__global__ void prep_weights_kernel(const T* __restrict__ w, const T* __restrict__ bias, int OC, int KK, int flip,
                                    float* __restrict__ wt) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(KK + 1) * OC;
  if (i >= total) return;
  const int t = static_cast<int>(i / OC), oc = static_cast<int>(i % OC);
  float v;
  if (t < KK)
    v = ldf(w + static_cast<int64_t>(oc) * KK + (flip ? KK - 1 - t : t));
  else
    v = bias != nullptr ? ldf(bias + oc) : 0.f;
  wt[i] = v;
}

}  // namespace

template <typename T>
cudaError_t launch_nhwc(const NhwcArgs& a, int K_small, int S, int V, const T* src, const float* wt, T* dst,
                        cudaStream_t stream) {
  // Channel vectors across threadIdx.x (at most 64 per block, split evenly), pixel groups across
  // threadIdx.y, about 256 threads in all.
  const int64_t nb = ceil_div(a.CV, 64);
  const int bx = static_cast<int>(ceil_div(a.CV, nb));
  const int by = std::max(1, 256 / bx);
  const dim3 block(bx, by);
  const dim3 grid(static_cast<unsigned>(ceil_div(a.PG, by)), static_cast<unsigned>(nb));
#define DSCONV_NHWC_SMALL(KK, SS)                                                   \
  case KK * 10 + SS:                                                                \
    nhwc_small_kernel<T, KK, SS><<<grid, block, 0, stream>>>(a, src, wt, dst); \
    break;
  if (V == 4 && K_small != 0) {
    switch (K_small * 10 + S) {
      DSCONV_NHWC_SMALL(3, 1)
      DSCONV_NHWC_SMALL(3, 2)
      DSCONV_NHWC_SMALL(5, 1)
      DSCONV_NHWC_SMALL(5, 2)
      DSCONV_NHWC_SMALL(7, 1)
      DSCONV_NHWC_SMALL(7, 2)
      default:
        return cudaErrorInvalidValue;
    }
  } else if (V == 4) {
    nhwc_generic_kernel<T, 4><<<grid, block, 0, stream>>>(a, src, wt, dst);
  } else {
    nhwc_generic_kernel<T, 1><<<grid, block, 0, stream>>>(a, src, wt, dst);
  }
#undef DSCONV_NHWC_SMALL
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_prep_weights(const DwParams& p, const T* w, const T* bias, bool flip, float* wt,
                                cudaStream_t stream) {
  const int64_t total = (p.taps() + 1) * p.OC();
  const int threads = 256;
  prep_weights_kernel<T><<<static_cast<unsigned>(ceil_div(total, threads)), threads, 0, stream>>>(
      w, bias, static_cast<int>(p.OC()), static_cast<int>(p.taps()), flip ? 1 : 0, wt);
  return cudaGetLastError();
}

#define DSCONV_INSTANTIATE(T)                                                                                    \
  template cudaError_t launch_nhwc<T>(const NhwcArgs&, int, int, int, const T*, const float*, T*, cudaStream_t); \
  template cudaError_t launch_prep_weights<T>(const DwParams&, const T*, const T*, bool, float*, cudaStream_t);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(__half)
DSCONV_INSTANTIATE(__nv_bfloat16)
#undef DSCONV_INSTANTIATE

}  // namespace cuda
}  // namespace dsconv
