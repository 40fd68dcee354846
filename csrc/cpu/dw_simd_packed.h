// NCHW forward at stride >= 2 on narrow planes (AVX-512 only): output rows of at most 16 columns
// from input rows of at most 32, one or two planes' rows per vector, each tap a lane permute.
//
// Included by dw_simd_impl.h inside its anonymous namespace, in the AVX-512 instantiation only
// (DSCONV_VEC512): it needs vpermt2ps (a 16-lane permute from two registers) with zero masking.
//
// Why: a 14x14 -> 7x7 or 28x28 -> 14x14 plane fills half a vector or less per output row, so the
// row-based planes kernels leave most lanes idle, and the pixels route (transpose a chunk of
// channels to pixel-major, compute there, transpose back) spent most of its time in the two
// transposes (perf, 32x512x14x14 3x3 stride 2: load_chunk and the transposes back ~40% of the
// samples, the pixel kernel 8%; 1.7-1.9 ms against 0.7 ms for the same layer in channels_last).
// Here each plane is read once, row by row, straight from the NCHW tensor, and each output row is
// written once. (The grad input of these layers in the same form, 14x14 rows summing permuted
// 7-wide grad_output rows, with and without streaming the planes out: 0.97-1.02x on 512 / 576 x
// 14x14 stride 2, 0.76-0.89x on 10x10 and 5x5 kernels, 1.26-1.30x only on 16x16 (in-process A/B,
// 2026-11-28); not kept: the pixels route stays for grad input.)
//
// A vector holds LP lanes per plane: LP = 8 for two planes side by side (output rows of <= 8
// columns, input rows of <= 16), LP = 16 for one plane (output rows of <= 16, input rows of <= 32).
// For output row oh and kernel row kh, the input row is loaded as a register pair (lo, hi): with
// LP 8 the rows of the two planes, with LP 16 the row's columns 0-15 and 16-31 (lanes past W
// zeroed by the masked loads). Output lane j (plane j / LP, column ow = j % LP) of kernel column kw
// reads column ow * stride_w + kw * dil_w - pad_l of its plane: one vpermt2ps from (lo, hi) with a
// per-kw index vector, zero-masked where that column falls in the padding or ow >= OW, then one
// FMA with that tap's weights (per plane half). Kernel rows in the padding are skipped.

// Lanes per plane for this geometry (0: not handled here). Where it measured faster than the
// other routes (in-process A/B, Intel Xeon VM, 2 threads, batch 32, forward, 2026-11-28, against
// the pixels route on <= 16-wide inputs and the planes kernels on wider ones):
//  - two planes per vector, 3-wide kernels: 14x14 maps 1.57-2.14x (512 / 576 channels), 16x16
//    1.87x, 10x10 1.44x; 5-wide on 14x14 1.12-1.17x (672 / 1152 channels) but 12x12 0.94x, and
//    7-wide on 14x14 0.85x (7 permutes per kernel row and output row: the shuffle port limits);
//  - one plane per vector, 3-wide kernels: 32x32 1.80x, 30x30 1.09x, but 28x28 0.92-1.06x, 24x24
//    0.91x, 20x20 1.02x (the planes kernels' stride-2 rows do well there); 5 / 7-wide on 28x28
//    0.82-0.86x.
inline int packed_lanes(const DwParams& p) {
  if (p.OW <= 8 && p.W <= 16 && (p.KW <= 3 || (p.KW <= 5 && p.W >= 14))) return 8;
  if (p.OW <= 16 && p.W <= 32 && p.W >= 29 && p.KW <= 3) return 16;
  return 0;
}

// Whether the forward takes this path: NCHW-like float32 tensors (unit column stride), stride
// >= 2 along the rows, narrow planes (packed_lanes), kernels up to 8 rows. DSCONV_NCHW_PACKED=0 turns it off (read
// on every call, for in-process A/B).
template <class T>
inline bool packed_fwd_ok(const DwParams& p) {
  const char* e = std::getenv("DSCONV_NCHW_PACKED");
  if (e && *e && std::atoi(e) == 0) return false;
  return std::is_same<T, float>::value && p.stride_w >= 2 && p.in_sw == 1 && p.out_sw == 1 && p.KH <= 8 &&
         packed_lanes(p) > 0;
}

// Per-kw permute indices and zero masks.
struct PackedGeom {
  int lp;
  __m512i idx[8];
  Mask zm[8];
  Mask ld_lo, ld_hi;  // lanes of the masked row loads (LP 8: W lanes of each plane row)
  Mask st_lo, st_hi;  // output lanes stored (LP 8: plane A's OW lanes, plane B's)
};

inline PackedGeom packed_geom(const DwParams& p) {
  PackedGeom g;
  g.lp = packed_lanes(p);
  for (int64_t kw = 0; kw < p.KW; ++kw) {
    alignas(64) int32_t ix[L];
    uint32_t m = 0;
    for (int j = 0; j < L; ++j) {
      const int64_t plane = j / g.lp, ow = j % g.lp, col = ow * p.stride_w + kw * p.dil_w - p.pad_l;
      ix[j] = 0;
      if (ow < p.OW && col >= 0 && col < p.W) {
        ix[j] = static_cast<int32_t>(g.lp == 8 ? plane * 16 + col : col);
        m |= 1u << j;
      }
    }
    g.idx[kw] = _mm512_load_si512(ix);
    g.zm[kw] = static_cast<Mask>(m);
  }
  const uint32_t wmask = p.W >= 16 ? 0xFFFFu : (1u << p.W) - 1u;
  const uint32_t omask = (1u << imin(p.OW, 16)) - 1u;
  if (g.lp == 8) {
    g.ld_lo = g.ld_hi = static_cast<Mask>(wmask);
    g.st_lo = static_cast<Mask>(omask);
    g.st_hi = static_cast<Mask>(omask << 8);
  } else {
    g.ld_lo = static_cast<Mask>(wmask);
    g.ld_hi = static_cast<Mask>(p.W > 16 ? (1u << (p.W - 16)) - 1u : 0u);
    g.st_lo = static_cast<Mask>(p.OW >= 16 ? 0xFFFFu : omask);
    g.st_hi = 0;
  }
  return g;
}

// One task's planes (one, or two side by side): every output row, kernel rows in the padding
// skipped. KH_ / KW_ > 0: compile-time kernel size (3x3, 5x5, 7x7: the tap loops unrolled, the
// permute indices and weights in registers); 0: the runtime size.
template <class T, int KH_, int KW_>
__attribute__((always_inline)) inline void packed_planes(const DwParams& p, const PackedGeom& g, const V* wv, V bias,
                                                         const T* ia, const T* ib, bool two, T* oa, T* ob) {
  const int64_t KH = KH_ > 0 ? KH_ : p.KH, KW = KW_ > 0 ? KW_ : p.KW;
  for (int64_t oh = 0; oh < p.OH; ++oh) {
    V acc = bias;
#pragma GCC unroll 8
    for (int64_t kh = 0; kh < KH; ++kh) {
      const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
      if (ih < 0 || ih >= p.H) continue;
      V lo, hi;
      if (g.lp == 8) {
        lo = _mm512_maskz_loadu_ps(g.ld_lo, ia + ih * p.in_sh);
        hi = two ? _mm512_maskz_loadu_ps(g.ld_hi, ib + ih * p.in_sh) : Vec::zero();
      } else {
        lo = _mm512_maskz_loadu_ps(g.ld_lo, ia + ih * p.in_sh);
        hi = _mm512_maskz_loadu_ps(g.ld_hi, ia + ih * p.in_sh + 16);
      }
#pragma GCC unroll 8
      for (int64_t kw = 0; kw < KW; ++kw)
        acc = Vec::fmadd(_mm512_maskz_permutex2var_ps(g.zm[kw], lo, g.idx[kw], hi), wv[kh * KW + kw], acc);
    }
    _mm512_mask_storeu_ps(oa + oh * p.out_sh, g.st_lo, acc);
    if (two) _mm512_mask_storeu_ps(ob + oh * p.out_sh - 8, g.st_hi, acc);
  }
}

// w32: OC x taps float weights; b32: OC floats or null.
template <class T, int KH_, int KW_>
void packed_fwd_k(const DwParams& p, const T* in, const float* w32, const float* b32, T* out) {
  const PackedGeom g = packed_geom(p);
  const int64_t OC = p.OC(), taps = p.taps();
  const int64_t per = g.lp == 8 ? 2 : 1;  // output channels per task
  const int64_t U = cdiv(OC, per);
  at::parallel_for(0, p.N * U, 16, [&](int64_t begin, int64_t end) {
    V wv[64];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / U, oca = (t % U) * per;
      const bool two = per == 2 && oca + 1 < OC;
      const int64_t ocb = two ? oca + 1 : oca;
      for (int64_t k = 0; k < taps; ++k)
        wv[k] = per == 2 ? _mm512_insertf32x8(_mm512_set1_ps(w32[oca * taps + k]),
                                              _mm256_set1_ps(two ? w32[ocb * taps + k] : 0.f), 1)
                         : _mm512_set1_ps(w32[oca * taps + k]);
      V bias = Vec::zero();
      if (b32)
        bias = per == 2 ? _mm512_insertf32x8(_mm512_set1_ps(b32[oca]), _mm256_set1_ps(two ? b32[ocb] : 0.f), 1)
                        : _mm512_set1_ps(b32[oca]);
      packed_planes<T, KH_, KW_>(p, g, wv, bias, in + n * p.in_sn + (oca / p.M) * p.in_sc,
                                 in + n * p.in_sn + (ocb / p.M) * p.in_sc, two, out + n * p.out_sn + oca * p.out_sc,
                                 out + n * p.out_sn + ocb * p.out_sc);
    }
  });
}

template <class T>
bool packed_fwd(const DwParams& p, const T* in, const float* w32, const float* b32, T* out) {
  if (p.KH == 3 && p.KW == 3)
    packed_fwd_k<T, 3, 3>(p, in, w32, b32, out);
  else if (p.KH == 5 && p.KW == 5)
    packed_fwd_k<T, 5, 5>(p, in, w32, b32, out);
  else if (p.KH == 7 && p.KW == 7)
    packed_fwd_k<T, 7, 7>(p, in, w32, b32, out);
  else
    packed_fwd_k<T, 0, 0>(p, in, w32, b32, out);
  return true;
}
