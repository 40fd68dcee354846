// Internal host-side pieces shared by the CUDA translation units: the kernels' argument structs,
// their tiling configurations and the per-family launchers. Plain C++ (no device code), so both
// the .cu files and the host-only dispatcher (dw_dispatch.cpp) include it.
//
// Two kernel families run both the forward and grad input, through one formulation:
//
//   dst[y, x] = (bias) + sum_{kh,kw} wt[kh,kw] * U[y*S_h - pad_t + kh*dil_h, x*S_w - pad_l + kw*dil_w]
//
// where U is a "virtual source": U[v] = src[v / up] when v >= 0, v % up == 0 and v / up is inside
// the source, else 0.
//  - forward: src = input, dst = output, up = 1, S = stride, pad = padding, wt = w[oc].
//  - grad input (gather form): src = grad_output, dst = grad_input, S = 1, up = stride,
//    pad = (K-1)*dil - pad (may be negative), wt = w flipped in both axes, summed over the M
//    output channels c*M + m of input channel c. (For stride 2 three quarters of U are zeros:
//    wasted multiply-adds, but the layer is memory bound for the kernel sizes that matter.)
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "../dw_params.h"

namespace dsconv {
namespace cuda {

constexpr int64_t kSmemBudget = 48 * 1024;  // default dynamic shared memory limit, all archs
constexpr int64_t kInt32Max = 2147483647;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---------------------------------------------------------------------------------------------
// Plane kernels (NCHW-like: each block works on 2-D tiles of whole (n, channel) planes).

struct PlaneArgs {
  int64_t P;     // number of destination planes: N * Cd
  int Cd;        // destination channels per image (OC forward, C grad input)
  int M;         // channel multiplier
  int Msrc;      // source planes summed per destination plane: 1 forward, M grad input
  int bwd;       // 1: grad input (source channel cd*M+m, flipped weights); 0: forward (cd / M)
  int DH, DW;    // destination extents
  int64_t d_sn, d_sc, d_sh, d_sw;
  int SH, SW;    // real source extents
  int64_t s_sn, s_sc, s_sh, s_sw;
  int KH, KW;
  int S_h, S_w, dil_h, dil_w, up_h, up_w;
  int pad_t, pad_l;  // in virtual-source coordinates (may be negative)
  // tiling (PlaneCfg, copied here so the kernel gets one struct)
  int TH, TW, TIH, TIW, PW, WSZ;  // output tile, input tile, smem pitch, weight floats per slice
  int tilesX, tilesY;
};

struct PlaneCfg {
  bool ok = false;
  int BX = 0, BY = 0, BZ = 0;
  int TH = 0, TW = 0, TIH = 0, TIW = 0, PW = 0, WSZ = 0;
  int tilesX = 0, tilesY = 0;
  int64_t smem = 0;    // bytes of dynamic shared memory
  int64_t blocks = 0;  // grid.x
};

// Per-thread register block of the plane kernels: RH rows x RW columns of outputs.
constexpr int kPlaneRH = 4, kPlaneRW = 4;

// Thread-block shape and tile for a plane kernel. `small`: the templated K x K kernel (square,
// dil 1, S = S_h = S_w); otherwise the runtime-K kernel. Starts from <= 256 threads covering the
// destination plane (several planes per block when planes are small) and shrinks the tile until
// its shared memory fits kSmemBudget. ok = false when nothing fits.
inline PlaneCfg plane_config(int64_t DH, int64_t DW, int64_t P, int64_t KH, int64_t KW, int64_t S_h,
                             int64_t S_w, int64_t dil_h, int64_t dil_w, bool small) {
  const int RH = kPlaneRH, RW = kPlaneRW;
  PlaneCfg c;
  int64_t bx = std::min<int64_t>(32, ceil_div(DW, RW));
  int64_t by = std::min<int64_t>(256 / bx, ceil_div(DH, RH));
  int64_t bz = std::min<int64_t>(std::min<int64_t>(64, 256 / (bx * by)), P);
  if (bz < 1) bz = 1;
  for (;;) {
    const int64_t TH = by * RH, TW = bx * RW;
    const int64_t TIH = (TH - 1) * S_h + (KH - 1) * dil_h + 1;
    const int64_t TIW = (TW - 1) * S_w + (KW - 1) * dil_w + 1;
    int64_t PW, WSZ;
    if (small) {
      const int64_t nch = ceil_div((RW - 1) * S_w + KW, 4);  // float4 chunks one thread reads per row
      PW = round_up(std::max(TIW, (bx - 1) * RW * S_w + 4 * nch), 4);
      WSZ = 0;
    } else {
      const int64_t KWP = round_up(KW, 4);
      PW = round_up(std::max(TIW, TW + KWP), 4);
      WSZ = KH * KWP;
    }
    const int64_t smem = bz * (TIH * PW + WSZ) * 4;
    if (smem <= kSmemBudget) {
      c.ok = true;
      c.BX = (int)bx, c.BY = (int)by, c.BZ = (int)bz;
      c.TH = (int)TH, c.TW = (int)TW, c.TIH = (int)TIH, c.TIW = (int)TIW, c.PW = (int)PW, c.WSZ = (int)WSZ;
      c.tilesX = (int)ceil_div(DW, TW);
      c.tilesY = (int)ceil_div(DH, TH);
      c.smem = smem;
      c.blocks = ceil_div(P, bz) * c.tilesX * c.tilesY;
      if (c.blocks > kInt32Max) c.ok = false;
      return c;
    }
    if (bz > 1) {
      bz /= 2;
    } else if (by > 1) {
      by = (by + 1) / 2;
    } else if (bx > 1) {
      bx = (bx + 1) / 2;
    } else {
      return c;  // not even one 4x4 output block fits: the caller falls back
    }
  }
}

inline void plane_args_set_cfg(PlaneArgs& a, const PlaneCfg& c) {
  a.TH = c.TH, a.TW = c.TW, a.TIH = c.TIH, a.TIW = c.TIW, a.PW = c.PW, a.WSZ = c.WSZ;
  a.tilesX = c.tilesX, a.tilesY = c.tilesY;
}

// K_small in {3, 5, 7} with S in {1, 2}, or 0 for the runtime-K kernel.
template <typename T>
cudaError_t launch_plane(const PlaneArgs& a, const PlaneCfg& c, int K_small, int S, const T* src,
                         const T* w, const T* bias, T* dst, cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// NHWC kernels (channels innermost, M == 1): each thread owns V consecutive channels and R
// consecutive destination pixels of one row. Weights come pre-transposed to (taps, C) float
// (launch_prep_weights), the bias (when present) right after them.

constexpr int kNhwcR = 4;

struct NhwcArgs {
  int C;
  int DH, DW;
  int64_t d_sn, d_sh, d_sw;  // destination strides (channel stride 1)
  int SH, SW;
  int64_t s_sn, s_sh, s_sw;  // source strides (channel stride 1)
  int KH, KW;
  int S_h, S_w, dil_h, dil_w, up_h, up_w;
  int pad_t, pad_l;
  int DWG;     // ceil(DW / R)
  int CV;      // channel vectors: C / V
  int64_t PG;  // pixel groups: N * DH * DWG
  int has_bias;
};

// K_small in {3, 5, 7} (S in {1, 2}, dil 1, up 1, V = 4) or 0 for the runtime kernel (V 4 or 1).
template <typename T>
cudaError_t launch_nhwc(const NhwcArgs& a, int K_small, int S, int V, const T* src, const float* wt,
                        T* dst, cudaStream_t stream);

// wt[t * OC + oc] = w[oc, t] (t flipped, KK-1-t, when flip), then wt[KK*OC + oc] = bias[oc] or 0.
template <typename T>
cudaError_t launch_prep_weights(const DwParams& p, const T* w, const T* bias, bool flip, float* wt,
                                cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// Generic kernels: one thread per written element, grid-stride, any strides / sizes / dtype,
// 64-bit indices when a tensor needs them.
template <typename T>
cudaError_t launch_generic_forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out,
                                   cudaStream_t stream);
template <typename T>
cudaError_t launch_generic_backward_input(const DwParams& p, const T* go, const T* w, T* gi,
                                          cudaStream_t stream);

// Largest element offset a tensor with these sizes/strides reaches (strides are >= 0 in torch).
inline int64_t max_offset(int64_t n, int64_t c, int64_t h, int64_t w, int64_t sn, int64_t sc, int64_t sh,
                          int64_t sw) {
  return (n - 1) * sn + (c - 1) * sc + (h - 1) * sh + (w - 1) * sw;
}

}  // namespace cuda
}  // namespace dsconv
