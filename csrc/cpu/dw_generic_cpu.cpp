// Generic CPU depthwise kernels: any kernel size, stride, dilation, padding, multiplier and any
// input/output strides (NCHW, channels_last or an arbitrary view, read in place without copies).
//
// Two loop orders, picked from the layout of the tensor being written:
//  - plane order (NCHW-like): one (n, channel) plane per task, a row of float accumulators, the
//    inner loop runs along W (unit stride in NCHW, so it vectorises);
//  - pixel order (channels_last-like): one (n, row) per task, a vector of accumulators over
//    channels, the inner loop runs along C (unit stride in channels_last).
// Borders are handled by precomputing, per tap, the output range whose input is in bounds
// (valid_out_range), so the inner loops carry no bounds checks.
//
// 16-bit types accumulate in float (at::opmath_type). Every reduction has a fixed order that
// does not depend on the thread count, so results are bitwise reproducible across
// torch.set_num_threads settings.
//
// These kernels are the always-correct fallback; dw_simd.h is where faster paths slot in.
#include "dw_cpu_kernels.h"
#include "dw_simd.h"

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <vector>

namespace dsconv {
namespace cpu {
namespace {

// Per-tap valid output range along one axis.
struct TapRange {
  int64_t off;     // input offset of this tap relative to o*stride: k*dil - pad
  int64_t lo, hi;  // outputs [lo, hi) read inside the input
};

std::vector<TapRange> tap_ranges(int64_t K, int64_t dil, int64_t pad, int64_t stride, int64_t extent,
                                 int64_t out_extent) {
  std::vector<TapRange> r(K);
  for (int64_t k = 0; k < K; ++k) {
    r[k].off = k * dil - pad;
    valid_out_range(r[k].off, stride, extent, out_extent, &r[k].lo, &r[k].hi);
  }
  return r;
}

// Weight transposed to (taps, OC) so the channel-inner loops read it with unit stride.
template <typename T, typename acc_t>
std::vector<acc_t> weight_taps_major(const DwParams& p, const T* w) {
  const int64_t OC = p.OC(), taps = p.taps();
  std::vector<acc_t> wt(taps * OC);
  for (int64_t oc = 0; oc < OC; ++oc)
    for (int64_t t = 0; t < taps; ++t) wt[t * OC + oc] = static_cast<acc_t>(w[oc * taps + t]);
  return wt;
}

// A layout is "channel-inner" when channels are the unit-stride dimension.
inline bool channel_inner(int64_t sc, int64_t channels) { return sc == 1 && channels > 1; }

// ---------------------------------------------------------------------------------------------
// Forward

template <typename T>
void forward_planes(const DwParams& p, const T* in, const T* w, const T* bias, T* out) {
  using acc_t = at::opmath_type<T>;
  const int64_t OC = p.OC();
  const auto cols = tap_ranges(p.KW, p.dil_w, p.pad_l, p.stride_w, p.W, p.OW);
  const bool unit = p.in_sw == 1 && p.stride_w == 1;
  at::parallel_for(0, p.N * OC, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(p.OW);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t n = idx / OC, oc = idx % OC, c = oc / p.M;
      const T* ip = in + n * p.in_sn + c * p.in_sc;
      const T* wp = w + oc * p.taps();
      T* op = out + n * p.out_sn + oc * p.out_sc;
      const acc_t b0 = bias ? static_cast<acc_t>(bias[oc]) : acc_t(0);
      for (int64_t oh = 0; oh < p.OH; ++oh) {
        std::fill(acc.begin(), acc.end(), b0);
        for (int64_t kh = 0; kh < p.KH; ++kh) {
          const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
          if (ih < 0 || ih >= p.H) continue;
          const T* row = ip + ih * p.in_sh;
          for (int64_t kw = 0; kw < p.KW; ++kw) {
            const acc_t wv = static_cast<acc_t>(wp[kh * p.KW + kw]);
            const TapRange& r = cols[kw];
            if (unit) {
              const T* src = row + r.off;
              for (int64_t ow = r.lo; ow < r.hi; ++ow) acc[ow] += wv * static_cast<acc_t>(src[ow]);
            } else {
              for (int64_t ow = r.lo; ow < r.hi; ++ow)
                acc[ow] += wv * static_cast<acc_t>(row[(ow * p.stride_w + r.off) * p.in_sw]);
            }
          }
        }
        T* orow = op + oh * p.out_sh;
        for (int64_t ow = 0; ow < p.OW; ++ow) orow[ow * p.out_sw] = static_cast<T>(acc[ow]);
      }
    }
  });
}

template <typename T>
void forward_pixels(const DwParams& p, const T* in, const T* w, const T* bias, T* out) {
  using acc_t = at::opmath_type<T>;
  const int64_t OC = p.OC(), M = p.M;
  const auto wt = weight_taps_major<T, acc_t>(p, w);
  std::vector<acc_t> b0(OC, acc_t(0));
  if (bias)
    for (int64_t oc = 0; oc < OC; ++oc) b0[oc] = static_cast<acc_t>(bias[oc]);
  at::parallel_for(0, p.N * p.OH, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(OC);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t n = idx / p.OH, oh = idx % p.OH;
      for (int64_t ow = 0; ow < p.OW; ++ow) {
        std::copy(b0.begin(), b0.end(), acc.begin());
        for (int64_t kh = 0; kh < p.KH; ++kh) {
          const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
          if (ih < 0 || ih >= p.H) continue;
          for (int64_t kw = 0; kw < p.KW; ++kw) {
            const int64_t iw = ow * p.stride_w - p.pad_l + kw * p.dil_w;
            if (iw < 0 || iw >= p.W) continue;
            const T* px = in + n * p.in_sn + ih * p.in_sh + iw * p.in_sw;
            const acc_t* wv = wt.data() + (kh * p.KW + kw) * OC;
            if (M == 1 && p.in_sc == 1) {
              for (int64_t c = 0; c < OC; ++c) acc[c] += wv[c] * static_cast<acc_t>(px[c]);
            } else {
              for (int64_t oc = 0; oc < OC; ++oc)
                acc[oc] += wv[oc] * static_cast<acc_t>(px[(oc / M) * p.in_sc]);
            }
          }
        }
        T* opx = out + n * p.out_sn + oh * p.out_sh + ow * p.out_sw;
        for (int64_t oc = 0; oc < OC; ++oc) opx[oc * p.out_sc] = static_cast<T>(acc[oc]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Grad input: the transposed convolution, in gather form per written element (no atomics).

template <typename T>
void backward_input_planes(const DwParams& p, const T* gout, const T* w, T* gin) {
  using acc_t = at::opmath_type<T>;
  const auto cols = tap_ranges(p.KW, p.dil_w, p.pad_l, p.stride_w, p.W, p.OW);
  at::parallel_for(0, p.N * p.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(p.W);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t n = idx / p.C, c = idx % p.C;
      T* gp = gin + n * p.in_sn + c * p.in_sc;
      for (int64_t ih = 0; ih < p.H; ++ih) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t m = 0; m < p.M; ++m) {
          const int64_t oc = c * p.M + m;
          const T* go = gout + n * p.out_sn + oc * p.out_sc;
          const T* wp = w + oc * p.taps();
          for (int64_t kh = 0; kh < p.KH; ++kh) {
            const int64_t num = ih + p.pad_t - kh * p.dil_h;
            if (num < 0 || num % p.stride_h != 0) continue;
            const int64_t oh = num / p.stride_h;
            if (oh >= p.OH) continue;
            const T* grow = go + oh * p.out_sh;
            for (int64_t kw = 0; kw < p.KW; ++kw) {
              const acc_t wv = static_cast<acc_t>(wp[kh * p.KW + kw]);
              const TapRange& r = cols[kw];
              for (int64_t ow = r.lo; ow < r.hi; ++ow)
                acc[ow * p.stride_w + r.off] += wv * static_cast<acc_t>(grow[ow * p.out_sw]);
            }
          }
        }
        T* dst = gp + ih * p.in_sh;
        for (int64_t iw = 0; iw < p.W; ++iw) dst[iw * p.in_sw] = static_cast<T>(acc[iw]);
      }
    }
  });
}

template <typename T>
void backward_input_pixels(const DwParams& p, const T* gout, const T* w, T* gin) {
  using acc_t = at::opmath_type<T>;
  const int64_t OC = p.OC(), M = p.M;
  const auto wt = weight_taps_major<T, acc_t>(p, w);
  at::parallel_for(0, p.N * p.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(p.C);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t n = idx / p.H, ih = idx % p.H;
      for (int64_t iw = 0; iw < p.W; ++iw) {
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t kh = 0; kh < p.KH; ++kh) {
          const int64_t nh = ih + p.pad_t - kh * p.dil_h;
          if (nh < 0 || nh % p.stride_h != 0 || nh / p.stride_h >= p.OH) continue;
          const int64_t oh = nh / p.stride_h;
          for (int64_t kw = 0; kw < p.KW; ++kw) {
            const int64_t nw = iw + p.pad_l - kw * p.dil_w;
            if (nw < 0 || nw % p.stride_w != 0 || nw / p.stride_w >= p.OW) continue;
            const int64_t ow = nw / p.stride_w;
            const T* g = gout + n * p.out_sn + oh * p.out_sh + ow * p.out_sw;
            const acc_t* wv = wt.data() + (kh * p.KW + kw) * OC;
            if (M == 1 && p.out_sc == 1) {
              for (int64_t c = 0; c < p.C; ++c) acc[c] += wv[c] * static_cast<acc_t>(g[c]);
            } else {
              for (int64_t oc = 0; oc < OC; ++oc)
                acc[oc / M] += wv[oc] * static_cast<acc_t>(g[oc * p.out_sc]);
            }
          }
        }
        T* dst = gin + n * p.in_sn + ih * p.in_sh + iw * p.in_sw;
        for (int64_t c = 0; c < p.C; ++c) dst[c * p.in_sc] = static_cast<T>(acc[c]);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Grad weight and grad bias in one pass over grad_output. Work is split by output channel (or a
// fixed block of 16 channels), never by batch, so the summation order is fixed.

template <typename T>
void backward_weight_planes(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  using acc_t = at::opmath_type<T>;
  const int64_t OC = p.OC(), taps = p.taps();
  const auto cols = tap_ranges(p.KW, p.dil_w, p.pad_l, p.stride_w, p.W, p.OW);
  at::parallel_for(0, OC, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(taps);
    for (int64_t oc = begin; oc < end; ++oc) {
      const int64_t c = oc / p.M;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      acc_t bsum = 0;
      for (int64_t n = 0; n < p.N; ++n) {
        const T* go = gout + n * p.out_sn + oc * p.out_sc;
        const T* ip = in + n * p.in_sn + c * p.in_sc;
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          const T* grow = go + oh * p.out_sh;
          if (gb) {
            acc_t s = 0;
            for (int64_t ow = 0; ow < p.OW; ++ow) s += static_cast<acc_t>(grow[ow * p.out_sw]);
            bsum += s;
          }
          if (!gw) continue;
          for (int64_t kh = 0; kh < p.KH; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
            if (ih < 0 || ih >= p.H) continue;
            const T* irow = ip + ih * p.in_sh;
            for (int64_t kw = 0; kw < p.KW; ++kw) {
              const TapRange& r = cols[kw];
              acc_t s = 0;
              for (int64_t ow = r.lo; ow < r.hi; ++ow)
                s += static_cast<acc_t>(grow[ow * p.out_sw]) *
                     static_cast<acc_t>(irow[(ow * p.stride_w + r.off) * p.in_sw]);
              acc[kh * p.KW + kw] += s;
            }
          }
        }
      }
      if (gw)
        for (int64_t t = 0; t < taps; ++t) gw[oc * taps + t] = static_cast<T>(acc[t]);
      if (gb) gb[oc] = static_cast<T>(bsum);
    }
  });
}

template <typename T>
void backward_weight_pixels(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  using acc_t = at::opmath_type<T>;
  constexpr int64_t kBlock = 16;
  const int64_t OC = p.OC(), taps = p.taps(), M = p.M;
  const int64_t nblocks = (OC + kBlock - 1) / kBlock;
  at::parallel_for(0, nblocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(taps * kBlock);
    acc_t bsum[kBlock];
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t oc0 = blk * kBlock, nb = std::min(kBlock, OC - oc0);
      std::fill(acc.begin(), acc.end(), acc_t(0));
      std::fill(bsum, bsum + kBlock, acc_t(0));
      for (int64_t n = 0; n < p.N; ++n) {
        for (int64_t oh = 0; oh < p.OH; ++oh) {
          for (int64_t ow = 0; ow < p.OW; ++ow) {
            const T* g = gout + n * p.out_sn + oh * p.out_sh + ow * p.out_sw + oc0 * p.out_sc;
            acc_t gv[kBlock];
            for (int64_t j = 0; j < nb; ++j) gv[j] = static_cast<acc_t>(g[j * p.out_sc]);
            if (gb)
              for (int64_t j = 0; j < nb; ++j) bsum[j] += gv[j];
            if (!gw) continue;
            for (int64_t kh = 0; kh < p.KH; ++kh) {
              const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
              if (ih < 0 || ih >= p.H) continue;
              for (int64_t kw = 0; kw < p.KW; ++kw) {
                const int64_t iw = ow * p.stride_w - p.pad_l + kw * p.dil_w;
                if (iw < 0 || iw >= p.W) continue;
                const T* px = in + n * p.in_sn + ih * p.in_sh + iw * p.in_sw;
                acc_t* a = acc.data() + (kh * p.KW + kw) * kBlock;
                for (int64_t j = 0; j < nb; ++j)
                  a[j] += gv[j] * static_cast<acc_t>(px[((oc0 + j) / M) * p.in_sc]);
              }
            }
          }
        }
      }
      for (int64_t j = 0; j < nb; ++j) {
        if (gw)
          for (int64_t t = 0; t < taps; ++t) gw[(oc0 + j) * taps + t] = static_cast<T>(acc[t * kBlock + j]);
        if (gb) gb[oc0 + j] = static_cast<T>(bsum[j]);
      }
    }
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points: SIMD kernels first (dw_simd.h), the generic loops otherwise.

template <typename T>
void forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out) {
  if (simd::forward<T>(p, in, w, bias, out)) return;
  if (channel_inner(p.out_sc, p.OC()))
    forward_pixels<T>(p, in, w, bias, out);
  else
    forward_planes<T>(p, in, w, bias, out);
}

template <typename T>
void backward_input(const DwParams& p, const T* gout, const T* w, T* gin) {
  if (simd::backward_input<T>(p, gout, w, gin)) return;
  if (channel_inner(p.in_sc, p.C))
    backward_input_pixels<T>(p, gout, w, gin);
  else
    backward_input_planes<T>(p, gout, w, gin);
}

template <typename T>
void backward_weight_bias(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  if (!gw && !gb) return;
  if (simd::backward_weight_bias<T>(p, gout, in, gw, gb)) return;
  if (channel_inner(p.out_sc, p.OC()))
    backward_weight_pixels<T>(p, gout, in, gw, gb);
  else
    backward_weight_planes<T>(p, gout, in, gw, gb);
}

template <typename T>
bool backward_all(const DwParams& pi, const DwParams& pw, const T* gout, const T* in, const T* w, T* gin, T* gw,
                  T* gb) {
  return simd::backward_all<T>(pi, pw, gout, in, w, gin, gw, gb);
}

#define DSCONV_INSTANTIATE(T)                                                          \
  template void forward<T>(const DwParams&, const T*, const T*, const T*, T*);         \
  template void backward_input<T>(const DwParams&, const T*, const T*, T*);            \
  template void backward_weight_bias<T>(const DwParams&, const T*, const T*, T*, T*);  \
  template bool backward_all<T>(const DwParams&, const DwParams&, const T*, const T*, const T*, T*, T*, T*);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(double)
DSCONV_INSTANTIATE(c10::BFloat16)
DSCONV_INSTANTIATE(c10::Half)
#undef DSCONV_INSTANTIATE

}  // namespace cpu
}  // namespace dsconv
