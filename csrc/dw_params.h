// Plain description of one depthwise conv2d problem, shared by the CPU and CUDA kernels.
// Deliberately free of torch headers so that .cu files including it compile fast.
//
// Semantics (all indices are element offsets, strides in elements, may be 0 or any value):
//   out[n, oc, oh, ow] = bias[oc] + sum_{kh,kw} w[oc, kh, kw] *
//                        in[n, oc / M, oh*stride_h - pad_t + kh*dil_h, ow*stride_w - pad_l + kw*dil_w]
// with zero where the input index falls outside [0,H)x[0,W). OC = C * M (channel multiplier M).
// The weight is always dense (OC, KH, KW). Bottom/right padding is implied by OH/OW, which lets
// PyTorch's asymmetric padding='same' (even kernels) run without padding copies.
//
// Backward passes reuse the same struct: for grad input the "in" strides describe grad_input and
// the "out" strides describe grad_output.
#pragma once
#include <cstdint>

namespace dsconv {

struct DwParams {
  int64_t N, C, M;        // batch, input channels, channel multiplier
  int64_t H, W;           // input spatial size
  int64_t OH, OW;         // output spatial size
  int64_t KH, KW;         // kernel size
  int64_t stride_h, stride_w;
  int64_t pad_t, pad_l;   // top / left padding (bottom / right follow from OH, OW)
  int64_t dil_h, dil_w;
  int64_t in_sn, in_sc, in_sh, in_sw;      // input (or grad_input) strides
  int64_t out_sn, out_sc, out_sh, out_sw;  // output (or grad_output) strides

  int64_t OC() const { return C * M; }
  int64_t taps() const { return KH * KW; }
};

// Output columns [lo, hi) whose tap at input column offset `off` (= kw*dil - pad) lands
// inside [0, extent): the only range a kernel needs to visit, so inner loops carry no border checks.
inline void valid_out_range(int64_t off, int64_t stride, int64_t extent, int64_t out_extent,
                            int64_t* lo, int64_t* hi) {
  // o*stride + off >= 0  ->  o >= ceil(-off / stride)
  int64_t l = off >= 0 ? 0 : (-off + stride - 1) / stride;
  // o*stride + off <= extent - 1  ->  o <= floor((extent - 1 - off) / stride)
  int64_t top = extent - 1 - off;
  int64_t h = top < 0 ? 0 : top / stride + 1;
  if (h > out_extent) h = out_extent;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

}  // namespace dsconv
