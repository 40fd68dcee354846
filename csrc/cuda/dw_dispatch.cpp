// Path selection for the CUDA forward and grad input (host code only; the kernels live in the
// .cu files). Weight gradients choose their own path in dw_wgrad.cu.
//
//   dtype float64                                   -> generic (one thread per element)
//   channels innermost on both sides, M == 1        -> NHWC kernels:
//       K in {3,5,7} square, dilation 1, stride 1|2 (forward) or 1 (grad input),
//       channels and strides 4-aligned              -> nhwc_small<K,S> (4 channels x 4 pixels)
//       otherwise                                   -> nhwc_generic<V = 4 or 1>
//   any other layout (NCHW, views, M > 1)           -> plane kernels:
//       K in {3,5,7} square, dilation 1, stride 1|2 -> plane_small<K,S> (grad input: any stride)
//       otherwise, when the tile fits shared memory -> plane_large (runtime K/stride/dilation)
//   sizes whose coordinates do not fit the fast kernels' int math, or tiles that do not fit
//                                                   -> generic (64-bit indices where needed)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "dw_cuda.h"
#include "dw_cuda_internal.h"

namespace dsconv {
namespace cuda {
namespace {

// The tiled/vector kernels index coordinates with int and build pointers with 64-bit offsets.
// Every coordinate expression they form (o*stride - pad + k*dil, and the grad-input form with
// pad' = (K-1)*dil - pad) stays below 3 * 2^29 in magnitude under these bounds.
bool fits_fast(const DwParams& p) {
  const int64_t lim = int64_t(1) << 29;
  return p.N < lim && p.OC() < lim && p.H < lim && p.W < lim && p.OH < lim && p.OW < lim &&
         p.KH * p.dil_h < lim && p.KW * p.dil_w < lim && p.pad_t < lim && p.pad_l < lim &&
         p.OH * p.stride_h < lim && p.OW * p.stride_w < lim && (p.taps() + 1) * p.OC() < lim;
}

bool small_square(const DwParams& p) {
  return p.KH == p.KW && (p.KH == 3 || p.KH == 5 || p.KH == 7) && p.dil_h == 1 && p.dil_w == 1;
}

bool aligned(const void* ptr, size_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

// NHWC path: channels innermost for both the source and the destination, multiplier 1, and the
// pixel-group count within int.
bool nhwc_ok(const DwParams& p, int64_t DH, int64_t DW, int64_t src_sc, int64_t dst_sc) {
  if (!(p.M == 1 && p.C > 1 && src_sc == 1 && dst_sc == 1)) return false;
  if (ceil_div(p.C, 64) > 65535) return false;  // channel blocks go on grid.y
  return p.N * DH * ceil_div(DW, kNhwcR) < (int64_t(1) << 31) - 256;
}

bool fwd_uses_nhwc(const DwParams& p) { return fits_fast(p) && nhwc_ok(p, p.OH, p.OW, p.in_sc, p.out_sc); }
bool bwd_uses_nhwc(const DwParams& p) { return fits_fast(p) && nhwc_ok(p, p.H, p.W, p.out_sc, p.in_sc); }

template <typename T>
int nhwc_vec(const NhwcArgs& a, const T* src, const T* dst) {
  const bool ok = a.C % 4 == 0 && a.s_sn % 4 == 0 && a.s_sh % 4 == 0 && a.s_sw % 4 == 0 && a.d_sn % 4 == 0 &&
                  a.d_sh % 4 == 0 && a.d_sw % 4 == 0 && aligned(src, 4 * sizeof(T)) && aligned(dst, 4 * sizeof(T));
  return ok ? 4 : 1;
}

void nhwc_finish(NhwcArgs& a, int V, int64_t N) {
  a.DWG = static_cast<int>(ceil_div(a.DW, kNhwcR));
  a.CV = a.C / V;
  a.PG = N * a.DH * a.DWG;
}

}  // namespace

template <typename T>
size_t forward_workspace_bytes(const DwParams& p) {
  if (std::is_same<T, double>::value || !fwd_uses_nhwc(p)) return 0;
  return static_cast<size_t>((p.taps() + 1) * p.OC()) * sizeof(float);
}

template <typename T>
size_t backward_input_workspace_bytes(const DwParams& p) {
  if (std::is_same<T, double>::value || !bwd_uses_nhwc(p)) return 0;
  return static_cast<size_t>((p.taps() + 1) * p.OC()) * sizeof(float);
}

template <typename T>
cudaError_t forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out, void* ws,
                    cudaStream_t stream) {
  if (p.N * p.OC() * p.OH * p.OW == 0) return cudaSuccess;
  if constexpr (!std::is_same<T, double>::value) {
    if (fwd_uses_nhwc(p)) {
      float* wt = static_cast<float*>(ws);
      cudaError_t err = launch_prep_weights<T>(p, w, bias, /*flip=*/false, wt, stream);
      if (err != cudaSuccess) return err;
      NhwcArgs a{};
      a.C = static_cast<int>(p.C);
      a.DH = static_cast<int>(p.OH), a.DW = static_cast<int>(p.OW);
      a.d_sn = p.out_sn, a.d_sh = p.out_sh, a.d_sw = p.out_sw;
      a.SH = static_cast<int>(p.H), a.SW = static_cast<int>(p.W);
      a.s_sn = p.in_sn, a.s_sh = p.in_sh, a.s_sw = p.in_sw;
      a.KH = static_cast<int>(p.KH), a.KW = static_cast<int>(p.KW);
      a.S_h = static_cast<int>(p.stride_h), a.S_w = static_cast<int>(p.stride_w);
      a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
      a.up_h = 1, a.up_w = 1;
      a.pad_t = static_cast<int>(p.pad_t), a.pad_l = static_cast<int>(p.pad_l);
      a.has_bias = bias != nullptr;
      const int V = nhwc_vec(a, in, out);
      nhwc_finish(a, V, p.N);
      const bool small = small_square(p) && p.stride_h == p.stride_w && p.stride_h <= 2 && V == 4;
      return launch_nhwc<T>(a, small ? static_cast<int>(p.KH) : 0, static_cast<int>(p.stride_h), V, in, wt, out,
                            stream);
    }
    if (fits_fast(p)) {
      PlaneArgs a{};
      a.P = p.N * p.OC();
      a.Cd = static_cast<int>(p.OC());
      a.M = static_cast<int>(p.M);
      a.Msrc = 1;
      a.bwd = 0;
      a.DH = static_cast<int>(p.OH), a.DW = static_cast<int>(p.OW);
      a.d_sn = p.out_sn, a.d_sc = p.out_sc, a.d_sh = p.out_sh, a.d_sw = p.out_sw;
      a.SH = static_cast<int>(p.H), a.SW = static_cast<int>(p.W);
      a.s_sn = p.in_sn, a.s_sc = p.in_sc, a.s_sh = p.in_sh, a.s_sw = p.in_sw;
      a.KH = static_cast<int>(p.KH), a.KW = static_cast<int>(p.KW);
      a.S_h = static_cast<int>(p.stride_h), a.S_w = static_cast<int>(p.stride_w);
      a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
      a.up_h = 1, a.up_w = 1;
      a.pad_t = static_cast<int>(p.pad_t), a.pad_l = static_cast<int>(p.pad_l);
      if (small_square(p) && p.stride_h == p.stride_w && p.stride_h <= 2) {
        const PlaneCfg c = plane_config(p.OH, p.OW, a.P, p.KH, p.KW, p.stride_h, p.stride_w, 1, 1, true);
        if (c.ok) {
          plane_args_set_cfg(a, c);
          return launch_plane<T>(a, c, static_cast<int>(p.KH), static_cast<int>(p.stride_h), in, w, bias, out,
                                 stream);
        }
      }
      const PlaneCfg c =
          plane_config(p.OH, p.OW, a.P, p.KH, p.KW, p.stride_h, p.stride_w, p.dil_h, p.dil_w, false);
      if (c.ok) {
        plane_args_set_cfg(a, c);
        return launch_plane<T>(a, c, 0, 0, in, w, bias, out, stream);
      }
    }
  }
  return launch_generic_forward<T>(p, in, w, bias, out, stream);
}

template <typename T>
cudaError_t backward_input(const DwParams& p, const T* go, const T* w, T* gi, void* ws, cudaStream_t stream) {
  if (p.N * p.C * p.H * p.W == 0) return cudaSuccess;
  if constexpr (!std::is_same<T, double>::value) {
    // Gather form as a stride-1 correlation of the zero-upsampled grad_output with the flipped
    // kernel: pad' = (K-1)*dil - pad (see dw_cuda_internal.h).
    const int pt = static_cast<int>((p.KH - 1) * p.dil_h - p.pad_t);
    const int pl = static_cast<int>((p.KW - 1) * p.dil_w - p.pad_l);
    if (bwd_uses_nhwc(p)) {
      float* wt = static_cast<float*>(ws);
      cudaError_t err = launch_prep_weights<T>(p, w, nullptr, /*flip=*/true, wt, stream);
      if (err != cudaSuccess) return err;
      NhwcArgs a{};
      a.C = static_cast<int>(p.C);
      a.DH = static_cast<int>(p.H), a.DW = static_cast<int>(p.W);
      a.d_sn = p.in_sn, a.d_sh = p.in_sh, a.d_sw = p.in_sw;
      a.SH = static_cast<int>(p.OH), a.SW = static_cast<int>(p.OW);
      a.s_sn = p.out_sn, a.s_sh = p.out_sh, a.s_sw = p.out_sw;
      a.KH = static_cast<int>(p.KH), a.KW = static_cast<int>(p.KW);
      a.S_h = 1, a.S_w = 1;
      a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
      a.up_h = static_cast<int>(p.stride_h), a.up_w = static_cast<int>(p.stride_w);
      a.pad_t = pt, a.pad_l = pl;
      a.has_bias = 0;
      const int V = nhwc_vec(a, go, gi);
      nhwc_finish(a, V, p.N);
      const bool small = small_square(p) && p.stride_h == 1 && p.stride_w == 1 && V == 4;
      return launch_nhwc<T>(a, small ? static_cast<int>(p.KH) : 0, 1, V, go, wt, gi, stream);
    }
    if (fits_fast(p)) {
      PlaneArgs a{};
      a.P = p.N * p.C;
      a.Cd = static_cast<int>(p.C);
      a.M = static_cast<int>(p.M);
      a.Msrc = static_cast<int>(p.M);
      a.bwd = 1;
      a.DH = static_cast<int>(p.H), a.DW = static_cast<int>(p.W);
      a.d_sn = p.in_sn, a.d_sc = p.in_sc, a.d_sh = p.in_sh, a.d_sw = p.in_sw;
      a.SH = static_cast<int>(p.OH), a.SW = static_cast<int>(p.OW);
      a.s_sn = p.out_sn, a.s_sc = p.out_sc, a.s_sh = p.out_sh, a.s_sw = p.out_sw;
      a.KH = static_cast<int>(p.KH), a.KW = static_cast<int>(p.KW);
      a.S_h = 1, a.S_w = 1;
      a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
      a.up_h = static_cast<int>(p.stride_h), a.up_w = static_cast<int>(p.stride_w);
      a.pad_t = pt, a.pad_l = pl;
      if (small_square(p)) {
        const PlaneCfg c = plane_config(p.H, p.W, a.P, p.KH, p.KW, 1, 1, 1, 1, true);
        if (c.ok) {
          plane_args_set_cfg(a, c);
          return launch_plane<T>(a, c, static_cast<int>(p.KH), 1, go, w, nullptr, gi, stream);
        }
      }
      const PlaneCfg c = plane_config(p.H, p.W, a.P, p.KH, p.KW, 1, 1, p.dil_h, p.dil_w, false);
      if (c.ok) {
        plane_args_set_cfg(a, c);
        return launch_plane<T>(a, c, 0, 0, go, w, nullptr, gi, stream);
      }
    }
  }
  return launch_generic_backward_input<T>(p, go, w, gi, stream);
}

#define DSCONV_INSTANTIATE(T)                                                                                \
  template size_t forward_workspace_bytes<T>(const DwParams&);                                              \
  template size_t backward_input_workspace_bytes<T>(const DwParams&);                                       \
  template cudaError_t forward<T>(const DwParams&, const T*, const T*, const T*, T*, void*, cudaStream_t); \
  template cudaError_t backward_input<T>(const DwParams&, const T*, const T*, T*, void*, cudaStream_t);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(double)
DSCONV_INSTANTIATE(__half)
DSCONV_INSTANTIATE(__nv_bfloat16)
#undef DSCONV_INSTANTIATE

}  // namespace cuda
}  // namespace dsconv
