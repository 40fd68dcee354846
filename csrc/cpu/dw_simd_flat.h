// NCHW depthwise on small planes (7x7 and 14x14 maps, "same" 3x3 / 5x5 / 7x7 kernels, stride 1),
// AVX-512 only: each plane is held in registers as one flat vector stream.
//
// Included by dw_simd_impl.h inside its anonymous namespace, in the AVX-512 instantiation only
// (DSCONV_VEC512): it needs valignd (a lane shift across two registers) and 16-lane masks.
//
// Why: on these maps a plane row is 7 or 14 floats, less than one vector; the row-based planes
// kernels then leave most lanes idle, and the pixels route (transpose a chunk of channels to
// pixel-major, run the channels_last kernels, transpose back) spent about 45% of its time in the
// two transposes (perf, 32x1024x7x7 3x3: 1.9 ms against 0.6 ms for the same layer in
// channels_last). Here the H*W outputs of a plane are ceil(H*W / 16) full vectors: output pixel
// o = oh * W + ow reads input o + (kh - R) * W + (kw - R), a constant shift per tap, so a tap's
// input vector is two neighbouring plane registers aligned by a compile-time lane count (valignd).
// Rows above / below the plane read zero registers or the zeroed lanes past H*W; a tap whose
// column offset leaves the row (ow + kw - R outside [0, W)) is masked out of the FMA for those
// lanes (one compile-time mask per output vector and column offset). The plane is read once and
// each output vector is written once; per output vector the cost is K*K FMAs and at most as many
// lane shifts, both on the two vector ports.
//
// (A flat stream read from memory at the shifted addresses instead of shifting registers was
// tried on wider planes before, 2026-11-26: every tap an unaligned load that splits a line 15
// times in 16, about one per 2 cycles; see forward_t.)
//
// Also grad input for multiplier 1: with stride 1 and "same" padding it is the same correlation
// of grad_output with the flipped weights. And grad weight + bias (3x3 / 5x5, multiplier 1):
// grad_output vectors times the same shifted input vectors, one accumulator vector per tap.

constexpr int flat_floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

template <int W, int H, int K>
struct FlatGeom {
  static constexpr int width = W, HW = W * H, NV = (HW + L - 1) / L, R = K / 2;
  // Plane vectors a tap can reach from output vector v: v + LO .. v + HI (shift +-(R*W + R)).
  static constexpr int LO = flat_floor_div(-R * W - R, L), HI = flat_floor_div(R * W + R, L) + 1;
  // Output vectors per block: independent accumulator chains (at most 7, so the block's plane
  // vectors and the accumulators stay within the 32 vector registers).
  static constexpr int NB = (NV + 6) / 7, VB = (NV + NB - 1) / NB;
  static constexpr uint32_t tail = (1u << (HW - (NV - 1) * L)) - 1u;  // lanes of the last vector
  // Lanes of output vector v whose column ow + dw stays inside the row.
  static constexpr uint32_t colmask(int v, int dw) {
    uint32_t m = 0;
    for (int l = 0; l < L; ++l) {
      const int ow = (v * L + l) % W;
      if (ow + dw >= 0 && ow + dw < W) m |= 1u << l;
    }
    return m;
  }
  // Whether tap shift s reads only the zeros around the plane for every lane of output vector v.
  static constexpr bool all_outside(int v, int s) { return v * L + L - 1 + s < 0 || v * L + s >= HW; }
};

// Lanes [r, r + L) of the 2L-lane concatenation (lo, hi).
template <int r>
__attribute__((always_inline)) inline V flat_align(V lo, V hi) {
  if constexpr (r == 0) return lo;
  // (the zero-masking form with every lane kept: plain valignd, without the unmasked intrinsic's
  // _mm512_undefined source that GCC 12 warns about)
  else
    return _mm512_castsi512_ps(
        _mm512_maskz_alignr_epi32(Mask(0xFFFF), _mm512_castps_si512(hi), _mm512_castps_si512(lo), r));
}

// x[i] = plane vector FIRST + i of src for i < N: zeros outside the plane, the last vector's lanes
// past H*W zero (masked load).
template <class G, int FIRST, int N, class T, int XN>
__attribute__((always_inline)) inline void flat_window(const T* src, V (&x)[XN]) {
  for_each_ic(
      [&](auto i) __attribute__((always_inline)) {
        constexpr int v = FIRST + decltype(i)::value;
        if constexpr (v < 0 || v >= G::NV) x[decltype(i)::value] = Vec::zero();
        else if constexpr (v == G::NV - 1) x[decltype(i)::value] = Vec::load(src + v * L, Mask(G::tail));
        else x[decltype(i)::value] = Vec::load(src + v * L);
      },
      std::make_integer_sequence<int, N>());
}

// acc += a * (tap (KH, KW)'s input for output vector VO) on the lanes whose column stays inside
// the row; x[i] holds plane vector FIRST + i. Nothing when no lane takes part.
template <class G, int VO, int KH, int KW, int FIRST, int XN>
__attribute__((always_inline)) inline void flat_tap(V& acc, V a, const V (&x)[XN]) {
  constexpr int s = (KH - G::R) * G::width + (KW - G::R), f = flat_floor_div(s, L), r = s - f * L;
  constexpr uint32_t m = G::colmask(VO, KW - G::R);
  if constexpr (m != 0 && !G::all_outside(VO, s)) {
    const V xs = flat_align<r>(x[VO + f - FIRST], x[VO + f + 1 - FIRST]);
    if constexpr (m == 0xFFFFu) acc = Vec::fmadd(a, xs, acc);
    else acc = _mm512_mask3_fmadd_ps(a, xs, acc, Mask(m));
  }
}

// One plane: dst[o] = bias + sum over taps of wk[t] * src[o + shift(t)], o < H*W (src, dst contiguous).
// (Every lambda always_inline: GCC outlined the block lambda otherwise, and the plane vectors
// went to the stack.)
template <class T, int W, int H, int K>
__attribute__((always_inline)) inline void flat_plane(const T* src, const float* wk, float bias, T* dst) {
  using G = FlatGeom<W, H, K>;
  constexpr int NV = G::NV, LO = G::LO, HI = G::HI, VB = G::VB;
  const V b = Vec::set1(bias);
  for_each_ic(
      [&](auto blk) __attribute__((always_inline)) {
        constexpr int v0 = decltype(blk)::value * VB;
        constexpr int nb = NV - v0 < VB ? NV - v0 : VB;
        // The block's window of plane vectors, v0 + LO .. v0 + nb - 1 + HI (zeros outside the
        // plane); loaded per block, not per plane, so the registers suffice (the whole 14x14 plane
        // and 7 accumulators spilled).
        V x[VB + HI - LO];
        flat_window<G, v0 + LO, nb + HI - LO>(src, x);
        V acc[VB];
        for_each_ic([&](auto j) __attribute__((always_inline)) { acc[decltype(j)::value] = b; },
                    std::make_integer_sequence<int, nb>());
        // Taps column by column (kw outer): a column's lane masks (one per output vector) stay in
        // the mask registers over its K rows instead of being rebuilt at every tap.
        for_each_ic(
            [&](auto t) __attribute__((always_inline)) {
              constexpr int kw = decltype(t)::value / K, kh = decltype(t)::value % K;
              const V wv = Vec::set1(wk[kh * K + kw]);
              for_each_ic(
                  [&](auto j) __attribute__((always_inline)) {
                    constexpr int jj = decltype(j)::value;
                    flat_tap<G, v0 + jj, kh, kw, v0 + LO>(acc[jj], wv, x);
                  },
                  std::make_integer_sequence<int, nb>());
            },
            std::make_integer_sequence<int, K * K>());
        for_each_ic(
            [&](auto j) __attribute__((always_inline)) {
              constexpr int v = v0 + decltype(j)::value;
              if constexpr (v == NV - 1) Vec::store(dst + v * L, acc[decltype(j)::value], Mask(G::tail));
              else Vec::store(dst + v * L, acc[decltype(j)::value]);
            },
            std::make_integer_sequence<int, nb>());
      },
      std::make_integer_sequence<int, G::NB>());
}

// DSCONV_NCHW_FLAT=0 turns the path off (A/B tests).
inline bool nchw_flat_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DSCONV_NCHW_FLAT");
    return !(e && e[0] == '0');
  }();
  return on;
}

// Square 7x7 / 14x14 maps, K x K kernel (K = 3, 5, 7) at stride 1, dilation 1, padding K / 2 on
// every side (output as large as the input), planes with contiguous rows on both sides. `gi`:
// the problem as grad input sees it (multiplier 1; src = grad_output).
inline bool flat_ok(const DwParams& p, bool gi) {
  if (!nchw_flat_enabled()) return false;
  const int64_t K = p.KH;
  if (K != p.KW || (K != 3 && K != 5 && K != 7)) return false;
  if (p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return false;
  if (p.pad_t != K / 2 || p.pad_l != K / 2 || p.OH != p.H || p.OW != p.W || p.H != p.W) return false;
  if (p.W != 7 && p.W != 14) return false;
  if (gi && p.M != 1) return false;
  return p.in_sw == 1 && p.in_sh == p.W && p.out_sw == 1 && p.out_sh == p.OW;
}

template <class T, int W, int K>
void flat_planes_t(int64_t N, int64_t OC, int64_t M, const T* src, int64_t s_sn, int64_t s_sc, const float* w32,
                   const float* b32, T* dst, int64_t d_sn, int64_t d_sc) {
  // Planes of a few KB each: grains of 32 keep the parallel_for overhead small and hand each
  // thread long contiguous runs.
  at::parallel_for(0, N * OC, 32, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / OC, oc = t % OC;
      flat_plane<T, W, W, K>(src + n * s_sn + (oc / M) * s_sc, w32 + oc * K * K, b32 ? b32[oc] : 0.f,
                             dst + n * d_sn + oc * d_sc);
    }
  });
}

// w32: OC x K x K float weights (flipped for grad input), b32: OC floats or null.
template <class T>
bool flat_planes(const DwParams& p, bool gi, const T* src, const float* w32, const float* b32, T* dst) {
  const int64_t OC = p.OC(), M = gi ? 1 : p.M;
  const int64_t s_sn = gi ? p.out_sn : p.in_sn, s_sc = gi ? p.out_sc : p.in_sc;
  const int64_t d_sn = gi ? p.in_sn : p.out_sn, d_sc = gi ? p.in_sc : p.out_sc;
  switch (p.W * 10 + p.KH) {
    case 73: flat_planes_t<T, 7, 3>(p.N, OC, M, src, s_sn, s_sc, w32, b32, dst, d_sn, d_sc); break;
    case 75: flat_planes_t<T, 7, 5>(p.N, OC, M, src, s_sn, s_sc, w32, b32, dst, d_sn, d_sc); break;
    case 77: flat_planes_t<T, 7, 7>(p.N, OC, M, src, s_sn, s_sc, w32, b32, dst, d_sn, d_sc); break;
    case 143: flat_planes_t<T, 14, 3>(p.N, OC, M, src, s_sn, s_sc, w32, b32, dst, d_sn, d_sc); break;
    case 145: flat_planes_t<T, 14, 5>(p.N, OC, M, src, s_sn, s_sc, w32, b32, dst, d_sn, d_sc); break;
    case 147: flat_planes_t<T, 14, 7>(p.N, OC, M, src, s_sn, s_sc, w32, b32, dst, d_sn, d_sc); break;
    default: return false;
  }
  return true;
}

// --- grad weight + bias (multiplier 1) --------------------------------------------------------
// Per channel, over the images in order: each grad_output vector times the tap-shifted input
// vectors (the forward's shifts and column masks), summed into one accumulator vector per tap,
// reduced across lanes at the end; the bias sums the grad_output vectors. A fixed order for any
// thread count (one task per channel). Taps in groups of at most kFlatGwGroup accumulators so
// that they, the grad_output vector and the input window fit the registers; each group reads the
// channel's planes again (from L2: N planes of a 7x7 / 14x14 map).
constexpr int kFlatGwGroup = 13;

template <class T, int W, int K, int T0, int NT, bool BIAS>
__attribute__((always_inline)) inline void flat_gw_plane(const T* go, const T* in, V (&acc)[kFlatGwGroup],
                                                         V& accb) {
  using G = FlatGeom<W, W, K>;
  constexpr int NV = G::NV, LO = G::LO, HI = G::HI;
  for_each_ic(
      [&](auto vi) __attribute__((always_inline)) {
        constexpr int v = decltype(vi)::value;
        const V g = v == NV - 1 ? Vec::load(go + v * L, Mask(G::tail)) : Vec::load(go + v * L);
        if constexpr (BIAS) accb = Vec::add(accb, g);
        V x[HI - LO + 1];  // plane vectors v + LO .. v + HI
        flat_window<G, v + LO, HI - LO + 1>(in, x);
        for_each_ic(
            [&](auto j) __attribute__((always_inline)) {
              constexpr int jj = decltype(j)::value, t = T0 + jj;
              flat_tap<G, v, t / K, t % K, v + LO>(acc[jj], g, x);
            },
            std::make_integer_sequence<int, NT>());
      },
      std::make_integer_sequence<int, NV>());
}

// 3x3 and 5x5 (7x7 keeps its diagonal kernels: 49 taps would take four passes here).
inline bool flat_gw_ok(const DwParams& p) { return p.M == 1 && p.KH <= 5 && flat_ok(p, false); }

template <class T, int W, int K>
void flat_gw_t(const DwParams& p, const T* go, const T* in, T* gw, T* gb) {
  constexpr int TAPS = K * K, NG = (TAPS + kFlatGwGroup - 1) / kFlatGwGroup, GS = (TAPS + NG - 1) / NG;
  constexpr int64_t plane_bytes = W * W * static_cast<int64_t>(sizeof(T));
  at::parallel_for(0, p.C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float sums[TAPS + 1];
      for_each_ic(
          [&](auto grp) __attribute__((always_inline)) {
            constexpr int g0 = decltype(grp)::value * GS, nt = TAPS - g0 < GS ? TAPS - g0 : GS;
            constexpr bool bias = decltype(grp)::value == 0;
            V acc[kFlatGwGroup], accb = Vec::zero();
            for (int j = 0; j < kFlatGwGroup; ++j) acc[j] = Vec::zero();
            for (int64_t n = 0; n < p.N; ++n) {
              const T* gp = go + n * p.out_sn + c * p.out_sc;
              const T* ip = in + n * p.in_sn + c * p.in_sc;
              // a channel's planes lie C * H * W elements apart: too far for the hardware prefetchers
              if (n + 2 < p.N) {
                prefetch_bytes(gp + 2 * p.out_sn, plane_bytes);
                prefetch_bytes(ip + 2 * p.in_sn, plane_bytes);
              }
              flat_gw_plane<T, W, K, g0, nt, bias>(gp, ip, acc, accb);
            }
            for (int j = 0; j < nt; ++j) sums[g0 + j] = Vec::hsum(acc[j]);
            if constexpr (bias) sums[TAPS] = Vec::hsum(accb);
          },
          std::make_integer_sequence<int, NG>());
      if (gw)
        for (int t = 0; t < TAPS; ++t) store_scalar(gw + c * TAPS + t, sums[t]);
      if (gb) store_scalar(gb + c, sums[TAPS]);
    }
  });
}

template <class T>
bool flat_gw(const DwParams& p, const T* go, const T* in, T* gw, T* gb) {
  switch (p.W * 10 + p.KH) {
    case 73: flat_gw_t<T, 7, 3>(p, go, in, gw, gb); break;
    case 75: flat_gw_t<T, 7, 5>(p, go, in, gw, gb); break;
    case 143: flat_gw_t<T, 14, 3>(p, go, in, gw, gb); break;
    case 145: flat_gw_t<T, 14, 5>(p, go, in, gw, gb); break;
    default: return false;
  }
  return true;
}
