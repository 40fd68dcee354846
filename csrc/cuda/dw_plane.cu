// Plane kernels: tiled depthwise conv for layouts whose planes are the natural unit (NCHW and any
// view that is not channels-innermost). Used for the forward and for grad input (see the
// "virtual source" formulation in dw_cuda_internal.h).
//
// Block = BX x BY x BZ threads; each z-slice owns one destination plane (n, cd) and a TH x TW
// output tile (TH = BY*4, TW = BX*4), so small planes (7x7, 14x14) pack several planes per block.
// Each slice stages its input tile plus halo in shared memory as float, read coalesced along rows
// through the source's own strides (no layout copies); every thread then computes a 4 x 4 block of
// outputs:
//  - plane_small_kernel<K, S> (K in 3,5,7, S in 1,2, dilation 1): weights in registers, the
//    thread walks the (3*S + K) input rows it needs once, reading each as float4 chunks, and
//    applies every tap of every output row that uses that input row (fully unrolled).
//  - plane_large_kernel (any K, stride, dilation): weights in shared memory. For stride 1 and
//    dilation 1 (the large-kernel case: RepLKNet, ConvNeXt) it slides a 4-wide window along each
//    row: per 4 taps, one float4 of weights (a broadcast) and one float4 per output row give 64
//    multiply-adds. Other strides/dilations read shared memory per multiply-add (correct, slower).
// Accumulation is in float; outputs are rounded once.
#include "dw_cuda_device.cuh"

namespace dsconv {
namespace cuda {
namespace {

constexpr int RH = kPlaneRH, RW = kPlaneRW;
static_assert(RW == 4, "the vector paths below assume 4 outputs per thread along x");

// TIH x PW float tile of the virtual source with origin (vy0, vx0); zero outside the source, in
// the padding columns past TIW and for inactive slices (sp == nullptr). Thread tid stages the
// elements i = tid + j * nthr (j = 0, 1, ...) of the row-major tile, so a warp's loads and shared
// stores are consecutive along rows. Each thread issues kLoadBatch independent loads before storing
// any, to keep enough bytes in flight.
//
// Why the position is walked incrementally: on an H200 (Nsight Compute), plane_small_kernel<float,
// 3, 1> on a 32x144x56x56 fp32 forward took 99 us at 20% of DRAM bandwidth, issue bound: 67.7M warp
// instructions, ~127 thread-instructions per output (9 of them the FMAs), the integer pipe the
// busiest. The previous loader, with ~18 staged elements per thread there, spent ~75 SASS
// instructions per element (sm_90, in-bounds, up == 1): a runtime signed division i / PW,
// virt_to_real's up != 1 tests and 64-bit index products. Now (row, col) of element i is computed
// once per call (one division) and advanced by nthr = dr rows + dc columns per element with one wrap
// test, the source address alongside. With unit upsampling (up_h == up_w == 1: every forward, grad
// input at stride 1) validity is two unsigned compares against bounds folded once per call from
// SH/SW, TIH/TIW and sp == nullptr: ~17 instructions per element plus ~3 for its shared store. The
// grad-input case with up > 1 keeps virt_to_real per element (only the i / PW is gone). Measured
// with a standalone old-vs-new harness on an H200 (outputs byte-identical): that forward went from
// 67.7M to 36.8M warp instructions and 100 us to 52 us; 32x144x112x112 stride 2 from 227M to 80M and
// 305 us to 112 us. The ~31% excess shared wavefronts ncu reports come from the compute loop's row
// reads (pitch PW against 14-wide blocks), not from this loader; they are unchanged.
constexpr int kLoadBatch = 8;

// tp[k * nthr] = v[k] for the k with k * nthr < left.
__device__ __forceinline__ void store_batch(float* tp, const float (&v)[kLoadBatch], int left, int nthr) {
#pragma unroll
  for (int k = 0; k < kLoadBatch; ++k) {
    if (left <= 0) break;
    *tp = v[k];
    tp += nthr, left -= nthr;
  }
}

template <typename T>
__device__ __forceinline__ void load_tile(float* tile, const PlaneArgs& a, const T* sp, int vy0, int vx0,
                                          int tid, int nthr) {
  const int PW = a.PW;
  const int total = a.TIH * PW;
  const int dr = nthr / PW, dc = nthr - dr * PW;  // one step of nthr elements: dr rows + dc columns
  const int r0 = tid / PW;
  if (a.up_h == 1 && a.up_w == 1) {
    // Source coordinates of this thread's next element, walked in step with i. Valid iff
    // 0 <= sy < min(SH, vy0 + TIH) (the second bound is i < total) and 0 <= sx < min(SW, vx0 + TIW)
    // (the second is col < TIW); one unsigned compare each. An inactive slice gets an empty x range.
    int sy = vy0 + r0, sx = vx0 + (tid - r0 * PW);
    const int xwrap = vx0 + PW;  // sx reaching it means col == PW: next row
    const unsigned yhi = static_cast<unsigned>(max(0, min(a.SH, vy0 + a.TIH)));
    const unsigned xhi = sp == nullptr ? 0u : static_cast<unsigned>(max(0, min(a.SW, vx0 + a.TIW)));
    // Address of (sy, sx), walked alongside as an integer (it leaves the source where (sy, sx) does;
    // it is dereferenced only for valid ones).
    constexpr int64_t E = sizeof(T);
    uintptr_t addr = reinterpret_cast<uintptr_t>(sp) + static_cast<uintptr_t>((sy * a.s_sh + sx * a.s_sw) * E);
    const uintptr_t dstep = static_cast<uintptr_t>((dr * a.s_sh + dc * a.s_sw) * E);
    const uintptr_t dwrap = static_cast<uintptr_t>((a.s_sh - PW * a.s_sw) * E);
    for (int base = tid; base < total; base += kLoadBatch * nthr) {
      float v[kLoadBatch];
#pragma unroll
      for (int k = 0; k < kLoadBatch; ++k) {
        v[k] = 0.f;
        if (static_cast<unsigned>(sy) < yhi && static_cast<unsigned>(sx) < xhi)
          v[k] = ldf(reinterpret_cast<const T*>(addr));
        sy += dr, sx += dc, addr += dstep;
        if (sx >= xwrap) sx -= PW, sy += 1, addr += dwrap;
      }
      store_batch(tile + base, v, total - base, nthr);
    }
  } else {
    // General virtual source (grad input of a strided conv): same walk over (r, col), the source
    // coordinates through virt_to_real per element.
    int r = r0, col = tid - r0 * PW;
    for (int base = tid; base < total; base += kLoadBatch * nthr) {
      float v[kLoadBatch];
#pragma unroll
      for (int k = 0; k < kLoadBatch; ++k) {
        v[k] = 0.f;
        if (sp != nullptr && r < a.TIH && col < a.TIW) {
          const int sy = virt_to_real(vy0 + r, a.up_h, a.SH);
          const int sx = virt_to_real(vx0 + col, a.up_w, a.SW);
          if (sy >= 0 && sx >= 0) v[k] = ldf(sp + sy * a.s_sh + sx * a.s_sw);
        }
        r += dr, col += dc;
        if (col >= PW) col -= PW, r += 1;
      }
      store_batch(tile + base, v, total - base, nthr);
    }
  }
}

struct SlicePos {
  int64_t n;
  int cd;
  bool active;
  int oy0, ox0;  // tile origin in the destination
};

__device__ __forceinline__ SlicePos slice_pos(const PlaneArgs& a) {
  SlicePos s;
  // blockIdx.x, tilesX and tilesY are non-negative 32-bit values: unsigned 32-bit division (the
  // int64 one is a runtime test plus a call to the 64-bit routine). The plane index may need 64 bits.
  unsigned b = blockIdx.x;
  const int txi = static_cast<int>(b % static_cast<unsigned>(a.tilesX));
  b /= static_cast<unsigned>(a.tilesX);
  const int tyi = static_cast<int>(b % static_cast<unsigned>(a.tilesY));
  const int64_t plane = static_cast<int64_t>(b / static_cast<unsigned>(a.tilesY)) * blockDim.z + threadIdx.z;
  s.active = plane < a.P;
  s.n = s.active ? plane / a.Cd : 0;
  s.cd = s.active ? static_cast<int>(plane % a.Cd) : 0;
  s.oy0 = tyi * a.TH;
  s.ox0 = txi * a.TW;
  return s;
}

template <typename T>
__device__ __forceinline__ void store_block(const PlaneArgs& a, const SlicePos& s, int ly, int lx,
                                            const float (&acc)[RH][RW], T* dst) {
  T* dp = dst + s.n * a.d_sn + static_cast<int64_t>(s.cd) * a.d_sc;
  const int x0 = s.ox0 + lx;
#pragma unroll
  for (int i = 0; i < RH; ++i) {
    const int y = s.oy0 + ly + i;
    if (y >= a.DH) break;
    T* drow = dp + y * a.d_sh;
    T* d4 = drow + x0;
    if (a.d_sw == 1 && x0 + RW <= a.DW && (reinterpret_cast<uintptr_t>(d4) % (RW * sizeof(T))) == 0) {
      st4(d4, make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
    } else {
#pragma unroll
      for (int j = 0; j < RW; ++j)
        if (x0 + j < a.DW) stf(drow + (x0 + j) * a.d_sw, acc[i][j]);
    }
  }
}

template <typename T, int K, int S>
__global__ void __launch_bounds__(256) plane_small_kernel(const PlaneArgs a, const T* __restrict__ src,
                                                          const T* __restrict__ w, const T* __restrict__ bias,
                                                          T* __restrict__ dst) {
  constexpr int NR = (RH - 1) * S + K;  // input rows one thread reads
  constexpr int NC = (RW - 1) * S + K;  // input columns it needs per row
  constexpr int NCH = (NC + 3) / 4;     // ... read as float4 chunks
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);

  const int tid = threadIdx.y * blockDim.x + threadIdx.x, nthr = blockDim.x * blockDim.y;
  const SlicePos s = slice_pos(a);
  float* tile = smem + threadIdx.z * (a.TIH * a.PW);
  const int ly = threadIdx.y * RH, lx = threadIdx.x * RW;

  float acc[RH][RW];
  const float b0 = (s.active && bias != nullptr) ? ldf(bias + s.cd) : 0.f;
#pragma unroll
  for (int i = 0; i < RH; ++i)
#pragma unroll
    for (int j = 0; j < RW; ++j) acc[i][j] = b0;

  for (int m = 0; m < a.Msrc; ++m) {
    const int wc = a.bwd ? s.cd * a.M + m : s.cd;  // weight channel (= output channel)
    const int sc = a.bwd ? wc : s.cd / a.M;        // source channel
    if (m > 0) __syncthreads();                    // previous tile fully consumed
    load_tile(tile, a, s.active ? src + s.n * a.s_sn + static_cast<int64_t>(sc) * a.s_sc : nullptr,
              s.oy0 * S - a.pad_t, s.ox0 * S - a.pad_l, tid, nthr);
    float wr[K * K];
    const T* wp = w + static_cast<int64_t>(wc) * (K * K);
#pragma unroll
    for (int t = 0; t < K * K; ++t) wr[t] = s.active ? ldf(wp + (a.bwd ? K * K - 1 - t : t)) : 0.f;
    __syncthreads();

#pragma unroll
    for (int r = 0; r < NR; ++r) {
      const float4* row = reinterpret_cast<const float4*>(tile + (ly * S + r) * a.PW + lx * S);
      float v[NCH * 4];
#pragma unroll
      for (int q = 0; q < NCH; ++q) {
        const float4 f = row[q];
        v[4 * q + 0] = f.x, v[4 * q + 1] = f.y, v[4 * q + 2] = f.z, v[4 * q + 3] = f.w;
      }
#pragma unroll
      for (int i = 0; i < RH; ++i) {
        const int kh = r - i * S;
        if (kh < 0 || kh >= K) continue;  // resolved at compile time
#pragma unroll
        for (int j = 0; j < RW; ++j)
#pragma unroll
          for (int kw = 0; kw < K; ++kw) acc[i][j] = fmaf(wr[kh * K + kw], v[j * S + kw], acc[i][j]);
      }
    }
  }
  if (s.active) store_block(a, s, ly, lx, acc, dst);
}

template <typename T>
__global__ void __launch_bounds__(256) plane_large_kernel(const PlaneArgs a, const T* __restrict__ src,
                                                          const T* __restrict__ w, const T* __restrict__ bias,
                                                          T* __restrict__ dst) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);

  const int tid = threadIdx.y * blockDim.x + threadIdx.x, nthr = blockDim.x * blockDim.y;
  const SlicePos s = slice_pos(a);
  float* tile = smem + threadIdx.z * (a.TIH * a.PW + a.WSZ);
  float* wsm = tile + a.TIH * a.PW;  // KH x KWP, zero padded
  const int KWP = (a.KW + 3) & ~3;
  const int KK = a.KH * a.KW;
  const int ly = threadIdx.y * RH, lx = threadIdx.x * RW;
  const bool fast = a.S_h == 1 && a.S_w == 1 && a.dil_h == 1 && a.dil_w == 1;

  float acc[RH][RW];
  const float b0 = (s.active && bias != nullptr) ? ldf(bias + s.cd) : 0.f;
#pragma unroll
  for (int i = 0; i < RH; ++i)
#pragma unroll
    for (int j = 0; j < RW; ++j) acc[i][j] = b0;

  for (int m = 0; m < a.Msrc; ++m) {
    const int wc = a.bwd ? s.cd * a.M + m : s.cd;
    const int sc = a.bwd ? wc : s.cd / a.M;
    if (m > 0) __syncthreads();
    load_tile(tile, a, s.active ? src + s.n * a.s_sn + static_cast<int64_t>(sc) * a.s_sc : nullptr,
              s.oy0 * a.S_h - a.pad_t, s.ox0 * a.S_w - a.pad_l, tid, nthr);
    const T* wp = w + static_cast<int64_t>(wc) * KK;
    for (int i = tid; i < a.WSZ; i += nthr) {
      const int kh = i / KWP, kw = i - kh * KWP;
      float v = 0.f;
      if (s.active && kw < a.KW) {
        const int t = kh * a.KW + kw;
        v = ldf(wp + (a.bwd ? KK - 1 - t : t));
      }
      wsm[i] = v;
    }
    __syncthreads();

    if (fast) {
      for (int kh = 0; kh < a.KH; ++kh) {
        const float* r0 = tile + (ly + kh) * a.PW + lx;
        const float* wr = wsm + kh * KWP;
        float4 cur[RH];
#pragma unroll
        for (int i = 0; i < RH; ++i) cur[i] = *reinterpret_cast<const float4*>(r0 + i * a.PW);
        for (int kw4 = 0; kw4 < a.KW; kw4 += 4) {
          const float4 wv = *reinterpret_cast<const float4*>(wr + kw4);
          float4 nxt[RH];
#pragma unroll
          for (int i = 0; i < RH; ++i) nxt[i] = *reinterpret_cast<const float4*>(r0 + i * a.PW + kw4 + 4);
          const int nq = a.KW - kw4;  // taps left in this row; only the last chunk has < 4
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            if (q > 0 && q >= nq) break;  // skip padded taps (0 * inf would poison the sum)
            const float wq = f4get(wv, q);
#pragma unroll
            for (int i = 0; i < RH; ++i)
#pragma unroll
              for (int j = 0; j < RW; ++j) {
                const int k = q + j;  // window column: 0..6
                const float x = k < 4 ? f4get(cur[i], k) : f4get(nxt[i], k - 4);
                acc[i][j] = fmaf(wq, x, acc[i][j]);
              }
          }
#pragma unroll
          for (int i = 0; i < RH; ++i) cur[i] = nxt[i];
        }
      }
    } else {
      for (int kh = 0; kh < a.KH; ++kh) {
        for (int kw = 0; kw < a.KW; ++kw) {
          const float wv = wsm[kh * KWP + kw];
#pragma unroll
          for (int i = 0; i < RH; ++i) {
            const float* row = tile + ((ly + i) * a.S_h + kh * a.dil_h) * a.PW + lx * a.S_w + kw * a.dil_w;
#pragma unroll
            for (int j = 0; j < RW; ++j) acc[i][j] = fmaf(wv, row[j * a.S_w], acc[i][j]);
          }
        }
      }
    }
  }
  if (s.active) store_block(a, s, ly, lx, acc, dst);
}

}  // namespace

template <typename T>
cudaError_t launch_plane(const PlaneArgs& a, const PlaneCfg& c, int K_small, int S, const T* src, const T* w,
                         const T* bias, T* dst, cudaStream_t stream) {
  const dim3 block(c.BX, c.BY, c.BZ);
  const dim3 grid(static_cast<unsigned>(c.blocks));
  const size_t smem = static_cast<size_t>(c.smem);
#define DSCONV_PLANE_SMALL(KK, SS)                                                       \
  case KK * 10 + SS:                                                                     \
    plane_small_kernel<T, KK, SS><<<grid, block, smem, stream>>>(a, src, w, bias, dst); \
    break;
  switch (K_small * 10 + S) {
    DSCONV_PLANE_SMALL(3, 1)
    DSCONV_PLANE_SMALL(3, 2)
    DSCONV_PLANE_SMALL(5, 1)
    DSCONV_PLANE_SMALL(5, 2)
    DSCONV_PLANE_SMALL(7, 1)
    DSCONV_PLANE_SMALL(7, 2)
    default:
      plane_large_kernel<T><<<grid, block, smem, stream>>>(a, src, w, bias, dst);
  }
#undef DSCONV_PLANE_SMALL
  return cudaGetLastError();
}

#define DSCONV_INSTANTIATE(T)                                                                                \
  template cudaError_t launch_plane<T>(const PlaneArgs&, const PlaneCfg&, int, int, const T*, const T*, \
                                       const T*, T*, cudaStream_t);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(__half)
DSCONV_INSTANTIATE(__nv_bfloat16)
#undef DSCONV_INSTANTIATE

}  // namespace cuda
}  // namespace dsconv
