// Device helpers shared by the .cu files: loads that convert to the accumulation type, stores
// that round back (round-to-nearest-even, as PyTorch), 4-wide vector forms, warp sums.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "dw_cuda_internal.h"

namespace dsconv {
namespace cuda {

template <typename T>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

// ---- scalar ---------------------------------------------------------------------------------
__device__ __forceinline__ float ldf(const float* p) { return __ldg(p); }
__device__ __forceinline__ double ldf(const double* p) { return __ldg(p); }
__device__ __forceinline__ float half_bits_to_float(unsigned b) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(b & 0xffffu)));
}
__device__ __forceinline__ float ldf(const __half* p) {
  return half_bits_to_float(__ldg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ float ldf(const __nv_bfloat16* p) {
  return __uint_as_float(static_cast<unsigned>(__ldg(reinterpret_cast<const unsigned short*>(p))) << 16);
}

__device__ __forceinline__ void stf(float* p, float v) { *p = v; }
__device__ __forceinline__ void stf(double* p, double v) { *p = v; }
__device__ __forceinline__ void stf(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void stf(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// ---- 4-wide (the pointer must be aligned to 4 elements) -------------------------------------
__device__ __forceinline__ float4 ld4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ float4 ld4(const __half* p) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
  return make_float4(half_bits_to_float(u.x), half_bits_to_float(u.x >> 16), half_bits_to_float(u.y),
                     half_bits_to_float(u.y >> 16));
}
__device__ __forceinline__ float4 ld4(const __nv_bfloat16* p) {
  const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xffff0000u));
}

__device__ __forceinline__ unsigned half_bits(float v) { return __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ unsigned bf16_bits(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

__device__ __forceinline__ void st4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void st4(__half* p, float4 v) {
  uint2 u;
  u.x = half_bits(v.x) | (half_bits(v.y) << 16);
  u.y = half_bits(v.z) | (half_bits(v.w) << 16);
  *reinterpret_cast<uint2*>(p) = u;
}
__device__ __forceinline__ void st4(__nv_bfloat16* p, float4 v) {
  uint2 u;
  u.x = bf16_bits(v.x) | (bf16_bits(v.y) << 16);
  u.y = bf16_bits(v.z) | (bf16_bits(v.w) << 16);
  *reinterpret_cast<uint2*>(p) = u;
}

__device__ __forceinline__ float f4get(const float4& v, int i) {  // i must be a compile-time constant
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// ---- V-wide channel vectors (V = 4 or 1) -----------------------------------------------------
template <int V>
struct VecF {
  float v[V];
};

template <int V, typename T>
__device__ __forceinline__ VecF<V> ldv(const T* p) {
  VecF<V> r;
  if constexpr (V == 4) {
    const float4 f = ld4(p);
    r.v[0] = f.x, r.v[1] = f.y, r.v[2] = f.z, r.v[3] = f.w;
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) r.v[i] = ldf(p + i);
  }
  return r;
}

template <int V, typename T>
__device__ __forceinline__ void stv(T* p, const VecF<V>& r) {
  if constexpr (V == 4) {
    st4(p, make_float4(r.v[0], r.v[1], r.v[2], r.v[3]));
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) stf(p + i, r.v[i]);
  }
}

// ---- reductions (fixed order: results depend only on the inputs and the block shape) ---------
template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Source-coordinate mapping of the virtual source U (see dw_cuda_internal.h): returns the real
// index, or -1 when U is zero there.
__device__ __forceinline__ int virt_to_real(int v, int up, int extent) {
  if (v < 0) return -1;
  if (up != 1) {
    if (v % up != 0) return -1;
    v /= up;
  }
  return v < extent ? v : -1;
}

}  // namespace cuda
}  // namespace dsconv
