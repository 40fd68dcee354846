// Body of the fused depthwise-separable CPU kernels, written once against a small vector API and
// included by fused_avx512.cpp and fused_avx2.cpp (each compiles it for its own ISA, inside its
// own anonymous namespace, after `#pragma GCC target`). Not a standalone header.
//
// The including TU defines, before including this file:
//   struct V {                 // one SIMD register of floats
//     using T; static constexpr int L;                       // type, lanes
//     zero, set1, load, load_n(p, n), store, store_n(p, v, n) // n < L: partial, no access past p+n
//     loadbf(p), loadbf_n(p, n), storebf(p, v), storebf_n(p, v, n)  // bf16 stored as uint16_t
//     load_if(p, on, n), loadbf_if(p, on, n)           // first n lanes if on, else 0; no faults
//     load_range(p, lo, hi), loadbf_range(p, lo, hi)  // lanes [lo, hi) only, others 0, no faults
//     stream(p, v) (non-temporal store, p aligned to the vector size), fence() (orders them)
//     fma(a, b, c) = a*b + c, add, sub, mul, div, max, min (NaN from the 2nd operand), bit_and,
//     bit_xor, bit_or, round_nearest, pow2i (2^n for an integral-valued float vector n in [-126, 127])
//     even(a, b), odd(a, b)   // de-interleave 2L consecutive floats a|b
//   };
//   constexpr int kPlanesNV, kPlanesMR;   // planes GEMM register block: MR rows x NV vectors
//   constexpr int kPixelsMaxNV, kPixelsPreferNV; constexpr int pixels_mr(int nv);  // pixels GEMM blocks (MR <= 14)
//   constexpr int kDwU;                    // depthwise planes: vectors per register chunk
//   constexpr int kDwPixelBlock; constexpr bool kDwPixelWide;  // depthwise pixels: pixels per
//                                          // group, two channel vectors (k <= 5) or one
//   constexpr bool kDwPixels33;            // sliding 3x3 stride-1 window (dws33_band; needs 32 registers)
//
// Everything here works on float; bf16 input/output are converted at the loads and stores.
// Reads past the valid range happen only inside the scratch buffers (padded for that), never in
// user tensors: there, partial vectors and padding lanes use masked (fault-free) loads and stores
// (tests/test_fused_op.py::test_no_reads_outside_the_input puts inputs against guard pages).

using vec = typename V::T;
constexpr int L = V::L;

// Own helpers instead of std::min / std::vector: nothing instantiated in this ISA's TU may be an
// inline function that other TUs also emit (the linker could keep this ISA's copy).
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a < b ? b : a; }
inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// --- loads / stores of the user's element type ------------------------------------------------
inline vec ld(const float* p) { return V::load(p); }
inline vec ld(const uint16_t* p) { return V::loadbf(p); }
inline vec ld_n(const float* p, int64_t n) { return V::load_n(p, n); }
inline vec ld_n(const uint16_t* p, int64_t n) { return V::loadbf_n(p, n); }
inline vec ld_range(const float* p, int64_t lo, int64_t hi) { return V::load_range(p, lo, hi); }
inline vec ld_range(const uint16_t* p, int64_t lo, int64_t hi) { return V::loadbf_range(p, lo, hi); }
inline vec ld_if(const float* p, bool on, int64_t n) { return V::load_if(p, on, n); }
inline vec ld_if(const uint16_t* p, bool on, int64_t n) { return V::loadbf_if(p, on, n); }
inline void st(float* p, vec v) { V::store(p, v); }
inline void st(uint16_t* p, vec v) { V::storebf(p, v); }
inline void st_n(float* p, vec v, int64_t n) { V::store_n(p, v, n); }
inline void st_n(uint16_t* p, vec v, int64_t n) { V::storebf_n(p, v, n); }
inline float to_f(float x) { return x; }
inline float to_f(uint16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// --- activations ------------------------------------------------------------------------------
// exp as in Cephes expf (about 1 ulp), input clamped to [-87.3, 88] (no overflow to inf).
inline vec vexp(vec x) {
  x = V::min(V::set1(88.0f), V::max(V::set1(-87.3f), x));
  const vec n = V::round_nearest(V::mul(x, V::set1(1.44269504088896341f)));
  x = V::fma(n, V::set1(-0.693359375f), x);
  x = V::fma(n, V::set1(2.12194440e-4f), x);
  vec y = V::set1(1.9875691500E-4f);
  y = V::fma(y, x, V::set1(1.3981999507E-3f));
  y = V::fma(y, x, V::set1(8.3334519073E-3f));
  y = V::fma(y, x, V::set1(4.1665795894E-2f));
  y = V::fma(y, x, V::set1(1.6666665459E-1f));
  y = V::fma(y, x, V::set1(5.0000001201E-1f));
  y = V::fma(y, V::mul(x, x), V::add(x, V::set1(1.0f)));
  return V::mul(y, V::pow2i(n));
}

// erf, Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7), as PyTorch's vectorised CPU erf.
inline vec verf(vec x) {
  const vec neg_zero = V::set1(-0.0f);
  const vec sign = V::bit_and(x, neg_zero);
  const vec ax = V::bit_xor(x, sign);
  const vec one = V::set1(1.0f);
  const vec t = V::div(one, V::fma(V::set1(0.3275911f), ax, one));
  vec r = V::fma(V::set1(1.061405429f), t, V::set1(-1.453152027f));
  r = V::fma(r, t, V::set1(1.421413741f));
  r = V::fma(r, t, V::set1(-0.284496736f));
  r = V::fma(r, t, V::set1(0.254829592f));
  const vec e = vexp(V::bit_xor(V::mul(x, x), neg_zero));  // exp(-x^2)
  const vec y = V::fma(V::bit_xor(V::mul(t, e), neg_zero), r, one);  // 1 - r t exp(-x^2)
  return V::bit_xor(y, sign);
}

template <int ACT>
inline vec act_v(vec x) {
  if constexpr (ACT == kActRelu) {
    return V::max(V::zero(), x);  // NaN stays NaN
  } else if constexpr (ACT == kActRelu6) {
    return V::min(V::set1(6.0f), V::max(V::zero(), x));
  } else if constexpr (ACT == kActHardswish) {
    const vec r = V::min(V::set1(6.0f), V::max(V::zero(), V::add(x, V::set1(3.0f))));
    return V::div(V::mul(x, r), V::set1(6.0f));
  } else if constexpr (ACT == kActSilu) {
    // x / (1 + exp(-x)), with vexp's clamp exp(-x) stays finite, so silu(-inf) would be -inf;
    // F.silu gives NaN there (-inf * sigmoid(-inf) = -inf * 0). m - m (m = min(0, x)) is +0 for
    // every x but -inf (NaN) and NaN; OR-ing it in leaves other results bit-exact (-0 included).
    const vec m = V::min(V::zero(), x);
    const vec r = V::div(x, V::add(V::set1(1.0f), vexp(V::bit_xor(x, V::set1(-0.0f)))));
    return V::bit_or(r, V::sub(m, m));
  } else if constexpr (ACT == kActGelu) {
    const vec h = V::mul(x, V::set1(0.5f));
    return V::fma(h, verf(V::mul(x, V::set1(0.70710678118654752f))), h);
  } else {
    return x;
  }
}

template <int ACT>
void act_inplace_t(float* p, int64_t n) {
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(p + i, act_v<ACT>(V::load(p + i)));
  if (i < n) V::store_n(p + i, act_v<ACT>(V::load_n(p + i, n - i)), n - i);
}

inline void act_inplace(float* p, int64_t n, int act) {
  switch (act) {
    case kActRelu: act_inplace_t<kActRelu>(p, n); break;
    case kActRelu6: act_inplace_t<kActRelu6>(p, n); break;
    case kActSilu: act_inplace_t<kActSilu>(p, n); break;
    case kActHardswish: act_inplace_t<kActHardswish>(p, n); break;
    case kActGelu: act_inplace_t<kActGelu>(p, n); break;
    default: break;
  }
}

inline void zero_fill(float* p, int64_t n) {
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(p + i, V::zero());
  if (i < n) V::store_n(p + i, V::zero(), n - i);
}

// Prefetches as volatile asm: GCC deems a function holding only __builtin_prefetch /
// _mm_prefetch pure and deletes calls to it.
inline void prefetch_l1(const void* a) { asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(a))); }

// The input of a band as runs of bytes: n_outer x n_inner runs of `bytes` bytes at
// base + o*s_outer + i*s_inner. The GEMM issues its prefetches a few lines at a time (step), spread
// over the band's micro-kernel calls: a burst of a few thousand prefetches at once would stall on
// the miss buffers (the loads behind them wait) and fetch the lines long before they are used;
// a few at a time after each call still slows the GEMM's own loads: one every pf_every k steps.
struct PfRuns {
  const char* base = nullptr;
  int64_t n_outer = 0, s_outer = 0, n_inner = 0, s_inner = 0, bytes = 0;
  int64_t o = 0, i = 0, off = 0;  // cursor
  int64_t skip = 0;  // step() calls to ignore before the first prefetch
  int64_t lines() const { return n_outer * n_inner * ceil_div(bytes, 64); }
  bool done() const { return o >= n_outer; }
  // Plans the prefetches over a GEMM of `calls` micro-kernel calls of K steps each: returns
  // pf_every and sets skip so that they are spread over about the last `share` of the k steps.
  int64_t plan(int64_t calls, int64_t K, double share) {
    const int64_t n = lines();
    if (n == 0) return 0;
    const int64_t every = imax(1, static_cast<int64_t>(static_cast<double>(calls * K) * share) / n);
    const int64_t steps = calls * (K / every);  // step() calls the micro-kernels will make
    skip = imax(0, steps - n - steps / 16);
    return every;
  }
  void step(int64_t k) {
    if (skip > 0) {
      --skip;
      return;
    }
    for (; k > 0 && o < n_outer; --k) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(base + o * s_outer + i * s_inner);
      prefetch_l1(reinterpret_cast<const char*>((a & ~uintptr_t(63)) + off));
      off += 64;
      if (off >= static_cast<int64_t>(a & 63) + bytes) {
        off = 0;
        if (++i == n_inner) {
          i = 0;
          ++o;
        }
      }
    }
  }
};

// --- GEMM micro-kernel -------------------------------------------------------------------------
// out block = ACT(A (MR x K) * B (K x NV*L) + bias), computed in registers.
//   PACKED: A element (r, k) at A[k*MR + r] (pointwise weight packed by row blocks);
//   else     A element (r, k) at A[r*lda + k] (rows of the pixel-major tile).
//   B element (k, j) at B[k*ldb + j]; all NV*L columns are readable.
// The micro-kernel with the epilogue on its registers: out block (rows r < mr, columns j < nc) =
// ACT(A * B + bias), bias per row (ROWBIAS: bias[r]) or per column (bias[j], readable up to NV*L),
// or none (bias == nullptr). A and B as in ukernel. nt: full float vectors are written with
// streaming (non-temporal) stores; the caller checked the alignment and fences.
template <int MR, int NV, bool PACKED, int ACT, bool ROWBIAS, class T>
inline void ukernel_out(int64_t K, const float* __restrict A, int64_t lda, const float* __restrict B, int64_t ldb,
                        const float* bias, T* __restrict out, int64_t ld_out, int64_t mr, int64_t nc, bool nt,
                        PfRuns& pf, int64_t pf_every) {
  vec acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  if constexpr (PACKED) {
    int64_t pf_count = pf_every;
    for (int64_t k = 0; k < K; ++k) {
      if (--pf_count == 0) {
        pf_count = pf_every;
        pf.step(1);
      }
      vec b[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) b[v] = V::load(B + v * L);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        const vec a = V::set1(A[r]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
      }
      B += ldb;
      A += MR;
    }
  } else {
    // Rows of A addressed as base + {0, 1, 2, 3, 4} rows from one base every 5 rows, with two
    // index registers (1 and 3 rows): a pointer per row (14 of them) does not fit the general
    // registers, and the compiler spilled them (one extra stack load per broadcast).
    constexpr int NB = (MR + 4) / 5;
    const char* base[NB];
#pragma GCC unroll 4
    for (int i = 0; i < NB; ++i) base[i] = reinterpret_cast<const char*>(A + 5 * i * lda);
    const int64_t s1 = lda * int64_t(sizeof(float)), s3 = 3 * s1;
    const int64_t every = pf_every > 0 ? pf_every : K;
    for (int64_t k0 = 0; k0 < K; k0 += every) {
      const int64_t k1 = imin(K, k0 + every);
      for (int64_t k = k0; k < k1; ++k) {
#pragma GCC unroll 4
        for (int i = 0; i < NB; ++i) asm("" : "+r"(base[i]));  // opaque: no per-row induction variables
        vec b[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) b[v] = V::load(B + v * L);
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          const char* bp = base[r / 5];
          const int j = r % 5;
          const char* ap = j == 0 ? bp : j == 1 ? bp + s1 : j == 2 ? bp + 2 * s1 : j == 3 ? bp + s3 : bp + 4 * s1;
          const vec a = V::set1(*reinterpret_cast<const float*>(ap));
#pragma GCC unroll 8
          for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(a, b[v], acc[r][v]);
        }
        B += ldb;
#pragma GCC unroll 4
        for (int i = 0; i < NB; ++i) base[i] += sizeof(float);
      }
      if (pf_every > 0 && k1 - k0 == every) pf.step(1);
    }
  }
  vec bc[NV];
  if (!ROWBIAS) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bc[v] = bias ? V::load(bias + v * L) : V::zero();
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    if (r >= mr) break;
    T* o = out + r * ld_out;
    const vec br = (ROWBIAS && bias) ? V::set1(bias[r]) : V::zero();
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      vec x = acc[r][v];
      if (ROWBIAS) {
        if (bias) x = V::add(x, br);
      } else {
        x = V::add(x, bc[v]);
      }
      x = act_v<ACT>(x);
      if ((v + 1) * L <= nc) {
        if constexpr (std::is_same<T, float>::value) {
          if (nt) {
            V::stream(o + v * L, x);
            continue;
          }
        }
        st(o + v * L, x);
      } else if (v * L < nc) {
        st_n(o + v * L, x, nc - v * L);
      }
    }
  }
}

// --- geometry shared by scratch sizing and the planes depthwise ------------------------------------
// Window of padded input columns needed for output columns [owa, owb): x in [xa, xa + span).
inline int64_t window_span(const DwParams& p, int64_t owa, int64_t owb) {
  return (owb - owa - 1) * p.stride_w + (p.KW - 1) * p.dil_w + 1;
}
// Phase row length: the window split into stride_w phases, plus L floats of over-read slack.
inline int64_t phase_len(const DwParams& p, int64_t span) { return ceil_div(span, p.stride_w) + L; }
inline int64_t max_band_rows(const DwParams& p, int64_t band) {
  return imin(p.OH, band / p.OW + 2);
}

// Pixels path: choose the GEMM column block (NV vectors of output channels) with the least padding,
// kPixelsPreferNV on ties (AVX-512: 2 vectors x 14 rows, whose 2-vector weight panel stays in L1).
inline int pixels_nv(int64_t Cout) {
  int best = kPixelsPreferNV;
  int64_t best_cols = round_up(Cout, static_cast<int64_t>(kPixelsPreferNV) * L);
  for (int nv = kPixelsMaxNV; nv >= 1; --nv) {
    const int64_t cols = round_up(Cout, static_cast<int64_t>(nv) * L);
    if (cols < best_cols) {
      best = nv;
      best_cols = cols;
    }
  }
  return best;
}

// Fetch into L2 the input a band will read (called for the next band while this one runs its
// GEMM, which needs no input): its depthwise then finds the rows in cache instead of waiting on
// memory (NCHW bands read short runs per channel plane, too short for the hardware prefetchers).
// Prefetches as volatile asm: GCC deems a function holding only __builtin_prefetch /
// _mm_prefetch pure and deletes calls to it.

template <class T>
PfRuns band_input_runs(const Problem& P, const Band& b) {
  PfRuns r;
  if (b.q1 <= b.q0) return r;
  const DwParams& p = P.p;
  const int64_t oha = b.q0 / p.OW, ohb = (b.q1 - 1) / p.OW;
  const int64_t ih_lo = imax(0, oha * p.stride_h - p.pad_t);
  const int64_t ih_hi = imin(p.H, ohb * p.stride_h - p.pad_t + (p.KH - 1) * p.dil_h + 1);
  if (ih_lo >= ih_hi) return r;
  const int64_t sz = sizeof(T);
  const char* base = reinterpret_cast<const char*>(static_cast<const T*>(P.in) + b.n * p.in_sn);
  if (P.pixels) {
    if (p.in_sc != 1 || p.in_sw < p.C) return r;
    r.base = base + ih_lo * p.in_sh * sz;
    if (p.in_sw == p.C && p.in_sh == p.W * p.C) {
      r.n_outer = r.n_inner = 1;
      r.bytes = (ih_hi - ih_lo) * p.in_sh * sz;
    } else {
      r.n_outer = 1;
      r.n_inner = ih_hi - ih_lo;
      r.s_inner = p.in_sh * sz;
      r.bytes = ((p.W - 1) * p.in_sw + p.C) * sz;
    }
    return r;
  }
  if (p.in_sw != 1) return r;
  r.base = base + ih_lo * p.in_sh * sz;
  r.n_outer = p.C;
  r.s_outer = p.in_sc * sz;
  if (p.in_sh == p.W) {
    r.n_inner = 1;
    r.bytes = (ih_hi - ih_lo) * p.W * sz;
  } else {
    r.n_inner = ih_hi - ih_lo;
    r.s_inner = p.in_sh * sz;
    r.bytes = p.W * sz;
  }
  return r;
}

// --- planes (NCHW output) ----------------------------------------------------------------------------
// One padded input row (window [xa, xa + span) of row `src`, zeros outside [0, W)) as float,
// split into stride_w phases of length Lph: element x goes to dst[((x-xa) % sw) * Lph + (x-xa) / sw].
template <class T>
inline void fill_row(const DwParams& p, const T* src, int64_t xa, int64_t span, int64_t Lph, float* dst, float* tmp) {
  const int64_t sw = p.stride_w;
  if (sw == 1 && p.in_sw == 1) {
    // One (masked) load per vector: the padding lanes come out as zeros. Full-vector stores: the
    // row has L floats of slack past the window.
    const T* s = src + xa;
    for (int64_t i = 0; i < span; i += L) {
      const int64_t lo = -xa - i, hi = p.W - xa - i;  // lanes inside the input row
      V::store(dst + i, (lo <= 0 && hi >= L) ? ld(s + i) : ld_range(s + i, lo, hi));
    }
    return;
  }
  float* t = sw == 1 ? dst : tmp;
  const int64_t lz = imin(imax(-xa, 0), span);              // left zeros
  const int64_t rb = imin(imax(p.W - xa, lz), span);         // right zeros from here
  zero_fill(t, lz);
  zero_fill(t + rb, span - rb);
  const int64_t n = rb - lz;
  if (n > 0) {
    const T* s = src + (xa + lz) * p.in_sw;
    float* d = t + lz;
    if (p.in_sw == 1) {
      int64_t i = 0;
      for (; i + L <= n; i += L) V::store(d + i, ld(s + i));
      if (i < n) V::store_n(d + i, ld_n(s + i, n - i), n - i);
    } else {
      for (int64_t i = 0; i < n; ++i) d[i] = to_f(s[i * p.in_sw]);
    }
  }
  if (sw == 1) return;
  if (sw == 2) {
    int64_t i = 0;
    for (; i + 2 * L <= span; i += 2 * L) {
      const vec a = V::load(tmp + i), b = V::load(tmp + i + L);
      V::store(dst + i / 2, V::even(a, b));
      V::store(dst + Lph + i / 2, V::odd(a, b));
    }
    for (; i < span; ++i) dst[(i & 1) * Lph + (i >> 1)] = tmp[i];
    return;
  }
  for (int64_t i = 0; i < span; ++i) dst[(i % sw) * Lph + i / sw] = tmp[i];
}

// R output rows x U vectors: tdst[r*OW + 0 .. U*L) for r < R (the last vector of each row partial
// when n_last < L). Row r reads the buffer rows from br + r*row_step. KW: taps per row when known
// at compile time (0: p.KW).
template <int R, int U, int KW>
inline void dw_chunk(const float* br, int64_t rowlen, int64_t row_step, const int64_t* tapoff, const float* wc,
                     const DwParams& p, float bias, float* tdst, int64_t OW, int64_t n_last) {
  vec acc[R][U];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) acc[r][u] = V::set1(bias);
  const int64_t kwn = KW ? KW : p.KW;
  int64_t off[KW ? KW : 1];
  if (KW)
    for (int k = 0; k < KW; ++k) off[k] = tapoff[k];
  for (int64_t kh = 0; kh < p.KH; ++kh) {
    const float* row = br + kh * p.dil_h * rowlen;
    const float* wk = wc + kh * kwn;
#pragma GCC unroll 8
    for (int64_t kw = 0; kw < kwn; ++kw) {
      const vec w = V::set1(wk[kw]);
      const float* s = row + (KW ? off[KW ? kw : 0] : tapoff[kw]);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
        for (int u = 0; u < U; ++u) acc[r][u] = V::fma(w, V::load(s + r * row_step + u * L), acc[r][u]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int u = 0; u < U - 1; ++u) V::store(tdst + r * OW + u * L, acc[r][u]);
    if (n_last == L)
      V::store(tdst + r * OW + (U - 1) * L, acc[r][U - 1]);
    else
      V::store_n(tdst + r * OW + (U - 1) * L, acc[r][U - 1], n_last);
  }
}

// Output columns [s0, s1) of R consecutive rows: register chunks of kDwU vectors, then one chunk
// of the remaining vectors (fewer vectors per chunk when more rows share it).
template <int R, int KW>
inline void dw_segment(const float* br, int64_t rowlen, int64_t row_step, const int64_t* tapoff, const float* wc,
                       const DwParams& p, float bias, float* tdst, int64_t OW, int64_t s0, int64_t s1) {
  constexpr int UMAX = R >= 4 ? 2 : kDwU;
  int64_t ow = s0;
  for (; ow + UMAX * L <= s1; ow += UMAX * L)
    dw_chunk<R, UMAX, KW>(br + ow, rowlen, row_step, tapoff, wc, p, bias, tdst + ow, OW, L);
  const int64_t rem = s1 - ow;
  if (rem <= 0) return;
  const int64_t nv = ceil_div(rem, L), n_last = rem - (nv - 1) * L;
  static_assert(kDwU <= 4, "dw_segment handles remainders of up to 4 vectors");
  switch (nv) {
    case 1: dw_chunk<R, 1, KW>(br + ow, rowlen, row_step, tapoff, wc, p, bias, tdst + ow, OW, n_last); break;
    case 2: dw_chunk<R, (UMAX >= 2 ? 2 : 1), KW>(br + ow, rowlen, row_step, tapoff, wc, p, bias, tdst + ow, OW, n_last); break;
    case 3: dw_chunk<R, (UMAX >= 3 ? 3 : 1), KW>(br + ow, rowlen, row_step, tapoff, wc, p, bias, tdst + ow, OW, n_last); break;
    default: dw_chunk<R, (UMAX >= 4 ? 4 : 1), KW>(br + ow, rowlen, row_step, tapoff, wc, p, bias, tdst + ow, OW, n_last); break;
  }
}

template <int KW>
inline void dw_rows(const float* rowbuf, int64_t rowlen, const int64_t* tapoff, const float* wc, const DwParams& p,
                    float b, float* trow, int64_t q0, int64_t q1, int64_t oha, int64_t ohb, int64_t owa, int64_t owb) {
  const int64_t OW = p.OW, sh = p.stride_h;
  for (int64_t oh = oha; oh <= ohb;) {
    const int64_t s0 = imax(owa, q0 - oh * OW), s1 = imin(owb, q1 - oh * OW);
    const float* br = rowbuf + (oh - oha) * sh * rowlen - owa;
    float* tdst = trow + oh * OW - q0;
    // Several rows at a time (more independent accumulators) where they cover the same columns.
    auto same = [&](int64_t r) {
      return oh + r <= ohb && imax(owa, q0 - (oh + r) * OW) == s0 && imin(owb, q1 - (oh + r) * OW) == s1;
    };
    if (s1 - s0 <= 2 * L && same(3)) {
      dw_segment<4, KW>(br, rowlen, sh * rowlen, tapoff, wc, p, b, tdst, OW, s0, s1);
      oh += 4;
    } else if (same(1)) {
      dw_segment<2, KW>(br, rowlen, sh * rowlen, tapoff, wc, p, b, tdst, OW, s0, s1);
      oh += 2;
    } else {
      dw_segment<1, KW>(br, rowlen, sh * rowlen, tapoff, wc, p, b, tdst, OW, s0, s1);
      oh += 1;
    }
  }
}

// --- planes depthwise straight from the input (column stride 1, unit column dilation) ----------------
// Loads of input row pieces at column offsets -pad_l + kw, with per-(chunk, kw) lane masks computed
// once per band (lanes outside [0, W) or past the segment are zeros and never read); rows outside
// [0, H) read a zero row. No copies into a row buffer.
constexpr int kDwdMaxChunks = 16;  // vectors per output row segment (OW <= 16 L)

template <class T>
inline vec ld_m(const T* p, typename V::M m) {
  if constexpr (std::is_same<T, float>::value)
    return V::load_m(p, m);
  else
    return V::loadbf_m(p, m);
}

// R output rows x U chunks of one channel: dst[r*OW + u*L + lane] (lanes < n_last in the last chunk).
// x0: input column of chunk 0's tap kw = 0; ih0: input row of row 0's tap kh = 0.
template <int R, int U, int KW, class T>
inline void dwd_block(const T* in_c, const T* zrow, int64_t in_sh, int64_t H, int64_t ih0, int64_t sh, int64_t dil_h,
                      int64_t KH, const float* wc, float bias, const typename V::M* mk, int64_t x0, float* dst,
                      int64_t OW, int64_t n_last) {
  vec acc[R][U];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc[r][u] = V::set1(bias);
  for (int64_t kh = 0; kh < KH; ++kh) {
    const T* rp[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const int64_t ih = ih0 + r * sh + kh * dil_h;
      rp[r] = (ih >= 0 && ih < H) ? in_c + ih * in_sh + x0 : zrow + x0;
    }
    const float* wk = wc + kh * KW;
#pragma GCC unroll 7
    for (int kw = 0; kw < KW; ++kw) {
      const vec w = V::set1(wk[kw]);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) acc[r][u] = V::fma(w, ld_m(rp[r] + u * L + kw, mk[u * KW + kw]), acc[r][u]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int u = 0; u < U - 1; ++u) V::store(dst + r * OW + u * L, acc[r][u]);
    V::store_n(dst + r * OW + (U - 1) * L, acc[r][U - 1], n_last);
  }
}

// dwd_block for 3x3 taps at row stride 1, unit row dilation: each input row piece is loaded once and
// feeds every output row (up to 3) that reads it, the 9 tap weights held in registers.
template <int R, int U, class T>
inline void dwd_block33(const T* in_c, const T* zrow, int64_t in_sh, int64_t H, int64_t ih0, const float* wc,
                        float bias, const typename V::M* mk, int64_t x0, float* dst, int64_t OW, int64_t n_last) {
  vec acc[R][U], w[9];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) acc[r][u] = V::set1(bias);
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) w[t] = V::set1(wc[t]);
#pragma GCC unroll 8
  for (int i = 0; i < R + 2; ++i) {
    const int64_t ih = ih0 + i;
    const T* rp = ((ih >= 0 && ih < H) ? in_c + ih * in_sh : zrow) + x0;
#pragma GCC unroll 3
    for (int kw = 0; kw < 3; ++kw) {
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) {
        const vec x = ld_m(rp + u * L + kw, mk[u * 3 + kw]);
#pragma GCC unroll 3
        for (int kh = 0; kh < 3; ++kh) {
          const int r = i - kh;
          if (r < 0 || r >= R) continue;
          acc[r][u] = V::fma(w[kh * 3 + kw], x, acc[r][u]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int u = 0; u < U - 1; ++u) V::store(dst + r * OW + u * L, acc[r][u]);
    V::store_n(dst + r * OW + (U - 1) * L, acc[r][U - 1], n_last);
  }
}

// Rows [oh0, oh0 + nrows) over output columns [s0, s1) of every channel.
struct DwdSeg {
  int64_t oh0, nrows, s0, s1, nch, n_last;
  typename V::M mk[kDwdMaxChunks * 7];
};

template <int KW, class T>
void dwd_band(const Problem& P, const T* in, const T* zrow, int64_t q0, const DwdSeg* segs, int nseg, float* tile,
              int64_t ldt) {
  const DwParams& p = P.p;
  const int64_t OW = p.OW, taps = p.KH * KW;
  const bool k33 = KW == 3 && p.KH == 3 && p.stride_h == 1 && p.dil_h == 1;
  // Input rows of a band are short runs of each channel plane: fetch channel c + kAhead's ahead.
  constexpr int64_t kAhead = 3;
  const int64_t band = segs[nseg - 1].oh0 * OW + segs[nseg - 1].s1 - q0 + (segs[nseg - 1].nrows - 1) * OW;
  const int64_t ih_lo = imax(0, segs[0].oh0 * p.stride_h - p.pad_t);
  const int64_t oh_last = segs[nseg - 1].oh0 + segs[nseg - 1].nrows - 1;
  const int64_t ih_hi = imin(p.H, oh_last * p.stride_h - p.pad_t + (p.KH - 1) * p.dil_h + 1);
  const bool one_run = p.in_sh == p.W;
  const int64_t pf_bytes = one_run ? (ih_hi - ih_lo) * p.W * int64_t(sizeof(T)) : p.W * int64_t(sizeof(T));
  auto prefetch_channel = [&](int64_t c) {
    if (ih_lo >= ih_hi) return;
    const char* base = reinterpret_cast<const char*>(in + c * p.in_sc + ih_lo * p.in_sh);
    for (int64_t ih = 0; ih < (one_run ? 1 : ih_hi - ih_lo); ++ih) {
      const char* a = base + ih * p.in_sh * int64_t(sizeof(T));
      for (int64_t o = 0; o < pf_bytes; o += 64) prefetch_l1(a + o);
      prefetch_l1(a + pf_bytes - 1);
    }
  };
  for (int64_t c = 0; c < kAhead && c < p.C; ++c) prefetch_channel(c);
  for (int64_t c = 0; c < p.C; ++c) {
    if (c + kAhead < p.C) prefetch_channel(c + kAhead);
    const T* in_c = in + c * p.in_sc;
    const float* wc = P.dw_w + c * taps;
    const float b = P.dw_b ? P.dw_b[c] : 0.f;
    float* trow = tile + c * ldt;
    for (int sgi = 0; sgi < nseg; ++sgi) {
      const DwdSeg& sg = segs[sgi];
      for (int64_t r0 = 0; r0 < sg.nrows;) {
        const int64_t oh = sg.oh0 + r0, rem = sg.nrows - r0;
        const int64_t ih0 = oh * p.stride_h - p.pad_t;
        float* d0 = trow + oh * OW + sg.s0 - q0;
        const int R = rem >= 4 ? 4 : rem >= 2 ? 2 : 1;
        for (int64_t u0 = 0; u0 < sg.nch;) {
          const int U = sg.nch - u0 >= 2 ? 2 : 1;
          const int64_t nl = u0 + U == sg.nch ? sg.n_last : L;
          const int64_t x0 = sg.s0 + u0 * L - p.pad_l;
          const typename V::M* mk = sg.mk + u0 * KW;
          float* d = d0 + u0 * L;
#define DSCONV_DWD(RR, UU)                                                                                             \
  if (k33)                                                                                                             \
    dwd_block33<RR, UU, T>(in_c, zrow, p.in_sh, p.H, ih0, wc, b, mk, x0, d, OW, nl);                                   \
  else                                                                                                                 \
    dwd_block<RR, UU, KW, T>(in_c, zrow, p.in_sh, p.H, ih0, p.stride_h, p.dil_h, p.KH, wc, b, mk, x0, d, OW, nl)
          if (R == 4) {
            if (U == 2) { DSCONV_DWD(4, 2); } else { DSCONV_DWD(4, 1); }
          } else if (R == 2) {
            if (U == 2) { DSCONV_DWD(2, 2); } else { DSCONV_DWD(2, 1); }
          } else {
            if (U == 2) { DSCONV_DWD(1, 2); } else { DSCONV_DWD(1, 1); }
          }
#undef DSCONV_DWD
          u0 += U;
        }
        r0 += R;
      }
    }
    act_inplace(trow, band, P.act);
  }
}

// The direct path when it applies (returns false otherwise): column stride 1, unit column
// dilation, unit input column stride, 3/5/7 taps per row, row segments of at most kDwdMaxChunks vectors.
template <class T>
bool dw_band_planes_direct(const Problem& P, int64_t n, int64_t q0, int64_t q1, float* tile, int64_t ldt, float* zbuf) {
  const DwParams& p = P.p;
  if constexpr (!std::is_same<T, float>::value && !V::kMaskedBf16) return false;
  if (p.stride_w != 1 || p.dil_w != 1 || p.in_sw != 1 || !(p.KW == 3 || p.KW == 5 || p.KW == 7)) return false;
  if (ceil_div(p.OW, L) > kDwdMaxChunks) return false;
  const int64_t OW = p.OW, oha = q0 / OW, ohb = (q1 - 1) / OW;
  DwdSeg segs[3];
  int nseg = 0;
  auto add = [&](int64_t oh0, int64_t nrows, int64_t s0, int64_t s1) {
    if (nrows <= 0 || s1 <= s0) return;
    if (nseg > 0 && segs[nseg - 1].s0 == s0 && segs[nseg - 1].s1 == s1 && segs[nseg - 1].oh0 + segs[nseg - 1].nrows == oh0) {
      segs[nseg - 1].nrows += nrows;
      return;
    }
    DwdSeg& sg = segs[nseg++];
    sg.oh0 = oh0;
    sg.nrows = nrows;
    sg.s0 = s0;
    sg.s1 = s1;
    sg.nch = ceil_div(s1 - s0, L);
    sg.n_last = s1 - s0 - (sg.nch - 1) * L;
    for (int64_t u = 0; u < sg.nch; ++u) {
      const int64_t nu = imin(L, s1 - s0 - u * L);
      for (int64_t kw = 0; kw < p.KW; ++kw) {
        const int64_t x0 = s0 + u * L - p.pad_l + kw;
        sg.mk[u * p.KW + kw] = V::range_mask(-x0, imin(p.W - x0, nu));
      }
    }
  };
  if (oha == ohb) {
    add(oha, 1, q0 - oha * OW, q1 - oha * OW);
  } else {
    add(oha, 1, q0 - oha * OW, OW);
    add(oha + 1, ohb - oha - 1, 0, OW);
    add(ohb, 1, 0, q1 - ohb * OW);
  }
  // Zero row for taps above / below the input (only lanes inside [0, W) are read).
  zero_fill(zbuf, (p.W * int64_t(sizeof(T)) + 3) / 4 + L);
  const T* in = static_cast<const T*>(P.in) + n * p.in_sn;
  const T* zrow = reinterpret_cast<const T*>(zbuf);
  switch (p.KW) {
    case 3: dwd_band<3, T>(P, in, zrow, q0, segs, nseg, tile, ldt); break;
    case 5: dwd_band<5, T>(P, in, zrow, q0, segs, nseg, tile, ldt); break;
    default: dwd_band<7, T>(P, in, zrow, q0, segs, nseg, tile, ldt); break;
  }
  return true;
}

// tile[c][q - q0] = act(dw_b[c] + depthwise(in)[n, c, q]) for q in [q0, q1).
template <class T>
void dw_band_planes(const Problem& P, int64_t n, int64_t q0, int64_t q1, float* tile, int64_t ldt, float* rowbuf,
                    float* tmp) {
  const DwParams& p = P.p;
  const T* in = static_cast<const T*>(P.in) + n * p.in_sn;
  const int64_t OW = p.OW, sh = p.stride_h, sw = p.stride_w;
  const int64_t oha = q0 / OW, ohb = (q1 - 1) / OW;  // rows touched (inclusive)
  const int64_t owa = oha == ohb ? q0 - oha * OW : 0;
  const int64_t owb = oha == ohb ? q1 - oha * OW : OW;
  const int64_t xa = owa * sw - p.pad_l;
  const int64_t span = window_span(p, owa, owb);
  const int64_t Lph = phase_len(p, span);
  const int64_t rowlen = sw * Lph;
  const int64_t iha = oha * sh - p.pad_t;
  const int64_t nrows = (ohb - oha) * sh + (p.KH - 1) * p.dil_h + 1;
  const int64_t taps = p.KH * p.KW;
  int64_t tapoff[64];
  int64_t* tapoff_big = p.KW > 64 ? new int64_t[p.KW] : nullptr;
  int64_t* tapoff_p = tapoff_big ? tapoff_big : tapoff;
  for (int64_t kw = 0; kw < p.KW; ++kw) {
    const int64_t off = kw * p.dil_w;
    tapoff_p[kw] = (off % sw) * Lph + off / sw;
  }
  // Input rows of a band are short runs (a few rows of one channel plane), too short for the
  // hardware prefetchers: fetch the window of channel c + kAhead while channel c is computed.
  constexpr int64_t kAhead = 3;
  const int64_t ih_lo = imax(iha, 0), ih_hi = imin(iha + nrows, p.H);
  const int64_t x_lo = imax(xa, 0), x_hi = imin(xa + span, p.W);
  // Byte runs of pf_len from row ih (ih in [ih_lo, pf_rows_hi)), column x_lo of a channel plane.
  const bool can_prefetch = p.in_sw == 1 && ih_lo < ih_hi && x_lo < x_hi;
  const bool one_run = p.in_sh == p.W;  // rows contiguous: one run for the whole window
  const int64_t pf_rows_hi = one_run ? ih_lo + 1 : ih_hi;
  const int64_t pf_len = one_run ? ((ih_hi - 1 - ih_lo) * p.W + x_hi - x_lo) * int64_t(sizeof(T))
                                 : (x_hi - x_lo) * int64_t(sizeof(T));
  const bool use_prefetch = can_prefetch;
  auto fill_channel = [&](int64_t c) {
    const T* ip = in + c * p.in_sc;
    float* buf = rowbuf;
    for (int64_t r = 0; r < nrows; ++r) {
      const int64_t ih = iha + r;
      float* dst = buf + r * rowlen;
      if (ih < 0 || ih >= p.H)
        zero_fill(dst, rowlen);
      else
        fill_row<T>(p, ip + ih * p.in_sh, xa, span, Lph, dst, tmp);
    }
  };
  for (int64_t c = -kAhead; c < p.C; ++c) {
    if (use_prefetch && c + kAhead < p.C) {
      const char* base = reinterpret_cast<const char*>(in + (c + kAhead) * p.in_sc + x_lo);
      for (int64_t ih = ih_lo; ih < pf_rows_hi; ++ih) {
        const char* a = base + ih * p.in_sh * int64_t(sizeof(T));
        for (int64_t o = 0; o < pf_len; o += 64) prefetch_l1(a + o);
        prefetch_l1(a + pf_len - 1);
      }
    }
    if (c < 0) continue;  // warm-up iterations: prefetch only
    fill_channel(c);
    const float* rowbuf_c = rowbuf;
    const float* wc = P.dw_w + c * taps;
    const float b = P.dw_b ? P.dw_b[c] : 0.f;
    float* trow = tile + c * ldt;
    switch (p.KW) {
      case 3: dw_rows<3>(rowbuf_c, rowlen, tapoff_p, wc, p, b, trow, q0, q1, oha, ohb, owa, owb); break;
      case 5: dw_rows<5>(rowbuf_c, rowlen, tapoff_p, wc, p, b, trow, q0, q1, oha, ohb, owa, owb); break;
      case 7: dw_rows<7>(rowbuf_c, rowlen, tapoff_p, wc, p, b, trow, q0, q1, oha, ohb, owa, owb); break;
      default: dw_rows<0>(rowbuf_c, rowlen, tapoff_p, wc, p, b, trow, q0, q1, oha, ohb, owa, owb); break;
    }
    act_inplace(trow, q1 - q0, P.act);
  }
  delete[] tapoff_big;
}

// --- planes: narrow last column block, transposed --------------------------------------------------
// A band whose width ends in a partial vector of a few columns (14x14 images: 196 = 12 x 16 + 4;
// 7x7: 49 = 3 x 16 + 1) would run it in MR x 1-vector blocks with most lanes idle. Instead those
// columns take a kernel whose vectors run along the output channels: out[co][q] for
// QN <= kTailCols columns q, blocks of 2 vectors of channels from pw_w^T (packed_pw_t), the
// results written column by column.
constexpr int kTailCols = L / 2;

// Columns at the end of a band of `width` pixels that take the transposed kernel (0: none).
inline int64_t planes_tail_cols(int64_t width) {
  const int64_t r = width % L;
  return r <= kTailCols ? r : 0;
}

// Whether any band of the problem has such a tail (then prepare packs pw_w^T).
inline bool planes_has_tail(const Problem& P) {
  if (P.pixels || P.dtype != kF32 || P.band <= 0) return false;
  const int64_t HW = P.p.OH * P.p.OW, last = HW - (ceil_div(HW, P.band) - 1) * P.band;
  return planes_tail_cols(imin(P.band, HW)) > 0 || planes_tail_cols(last) > 0;
}

template <int QN, int ACT>
void planes_tail_t(const Problem& P, const float* tile, int64_t ldt, float* out, int64_t out_sc) {
  constexpr int64_t NC = 2 * L;
  const int64_t K = P.p.C, Cout = P.Cout;
  for (int64_t co0 = 0; co0 < Cout; co0 += NC) {
    const float* w = P.packed_pw_t + co0 * K;
    vec acc[QN][2];
#pragma GCC unroll 8
    for (int q = 0; q < QN; ++q) acc[q][0] = acc[q][1] = V::zero();
    for (int64_t k = 0; k < K; ++k) {
      const vec b0 = V::load(w + k * NC), b1 = V::load(w + k * NC + L);
      const float* t = tile + k * ldt;
#pragma GCC unroll 8
      for (int q = 0; q < QN; ++q) {
        const vec a = V::set1(t[q]);
        acc[q][0] = V::fma(a, b0, acc[q][0]);
        acc[q][1] = V::fma(a, b1, acc[q][1]);
      }
    }
    const int64_t nco = imin(NC, Cout - co0);
    vec bias[2] = {V::zero(), V::zero()};
    if (P.pw_b) {
      bias[0] = V::load_n(P.pw_b + co0, imin(L, nco));
      if (nco > L) bias[1] = V::load_n(P.pw_b + co0 + L, nco - L);
    }
    alignas(64) float buf[QN][NC];
#pragma GCC unroll 8
    for (int q = 0; q < QN; ++q) {
      V::store(buf[q], act_v<ACT>(V::add(acc[q][0], bias[0])));
      V::store(buf[q] + L, act_v<ACT>(V::add(acc[q][1], bias[1])));
    }
    for (int64_t co = 0; co < nco; ++co)
#pragma GCC unroll 8
      for (int q = 0; q < QN; ++q) out[(co0 + co) * out_sc + q] = buf[q][co];
  }
}

template <int ACT>
void planes_tail(const Problem& P, int64_t nq, const float* tile, int64_t ldt, float* out, int64_t out_sc) {
  switch (nq) {
    case 1: planes_tail_t<1, ACT>(P, tile, ldt, out, out_sc); break;
    case 2: planes_tail_t<2, ACT>(P, tile, ldt, out, out_sc); break;
    case 3: planes_tail_t<3, ACT>(P, tile, ldt, out, out_sc); break;
    case 4: planes_tail_t<4, ACT>(P, tile, ldt, out, out_sc); break;
    case 5: planes_tail_t<5, ACT>(P, tile, ldt, out, out_sc); break;
    case 6: planes_tail_t<6, ACT>(P, tile, ldt, out, out_sc); break;
    case 7: planes_tail_t<7, ACT>(P, tile, ldt, out, out_sc); break;
    default: planes_tail_t<8, ACT>(P, tile, ldt, out, out_sc); break;
  }
}

// Tried and measured slower on 16x256x28x28 -> 256 and 16x576x14x14 -> 96 (2026-11-26): K blocking
// so that a 128-row slice of the tile panel stays in L1 (partial sums kept in a buffer between
// slices): 2-5% slower; a 14 x 2-vector register block (the pixels kernel's shape): up to 20%
// slower. The 6 x 4 block here runs at ~87-90% of the FMA peak on those layers.
template <int ACT, class T>
void planes_gemm_t(const Problem& P, int64_t n, int64_t q0, int64_t band, const float* tile, int64_t ldt, PfRuns& pf,
                   int64_t co_lo, int64_t co_hi) {
  const DwParams& p = P.p;
  constexpr int NR = kPlanesNV * L, MR = kPlanesMR;
  T* out = static_cast<T*>(P.out) + n * p.out_sn + q0;
  // Row blocks of output channels [co_lo, co_hi) (co_lo a multiple of MR; all of them unless the
  // caller split the output channels across threads).
  const int64_t blk_lo = co_lo / MR, blk_hi = ceil_div(co_hi, MR), nblk = blk_hi - blk_lo;
  // The next band's input fetched over the GEMM's second half: spread over all of it, the
  // depthwise of 16x256x28x28 -> 256 still waited on memory (lines fetched early were evicted
  // again) and the whole op ran ~4% slower.
  const bool all_co = co_lo == 0 && co_hi == P.Cout;  // the tail kernel covers all output channels
  const int64_t tail = std::is_same<T, float>::value && P.packed_pw_t && all_co ? planes_tail_cols(band) : 0;
  const int64_t main_cols = band - tail;
  const int64_t pf_every = pf.plan(nblk * ceil_div(main_cols, NR), p.C, 0.5);
  // Streaming stores when every output row segment starts on a vector boundary.
  const bool nt = std::is_same<T, float>::value && P.nt_out && p.out_sc % L == 0 &&
                  reinterpret_cast<uintptr_t>(out) % (L * sizeof(float)) == 0;
  if constexpr (std::is_same<T, float>::value)
    if (tail) planes_tail<ACT>(P, tail, tile + main_cols, ldt, out + main_cols, p.out_sc);
  for (int64_t j = 0; j < main_cols; j += NR) {
    const int64_t nc = imin(NR, main_cols - j);
    // the last column block only as wide as needed (whole vectors)
    const int nv = static_cast<int>(ceil_div(nc, L));
    for (int64_t blk = blk_lo; blk < blk_hi; ++blk) {
      const int64_t co0 = blk * MR, mr = imin(MR, P.Cout - co0);
      const float* A = P.packed_pw + blk * p.C * MR;
      const float* bias = P.pw_b ? P.pw_b + co0 : nullptr;
      T* o = out + co0 * p.out_sc + j;
      static_assert(kPlanesNV <= 4, "planes tail blocks handle up to 4 vectors");
      switch (nv >= kPlanesNV ? kPlanesNV : nv) {
        case 1: ukernel_out<MR, 1, true, ACT, true, T>(p.C, A, 0, tile + j, ldt, bias, o, p.out_sc, mr, nc, nt, pf, pf_every); break;
        case 2:
          ukernel_out<MR, (kPlanesNV >= 2 ? 2 : 1), true, ACT, true, T>(p.C, A, 0, tile + j, ldt, bias, o, p.out_sc, mr, nc, nt, pf, pf_every);
          break;
        case 3:
          ukernel_out<MR, (kPlanesNV >= 3 ? 3 : 1), true, ACT, true, T>(p.C, A, 0, tile + j, ldt, bias, o, p.out_sc, mr, nc, nt, pf, pf_every);
          break;
        default: ukernel_out<MR, kPlanesNV, true, ACT, true, T>(p.C, A, 0, tile + j, ldt, bias, o, p.out_sc, mr, nc, nt, pf, pf_every); break;
      }
    }
  }
}

template <class T>
void run_band_planes(const Problem& P, const Band& bnd, const Band& next, float* scratch) {
  const DwParams& p = P.p;
  const int64_t n = bnd.n, q0 = bnd.q0, q1 = bnd.q1;
  const int64_t co_lo = bnd.co_lo, co_hi = bnd.co_hi < 0 ? P.Cout : bnd.co_hi;
  constexpr int NR = kPlanesNV * L;
  const int64_t ldt = round_up(P.band, NR);
  float* tile = scratch;
  float* rowbuf = tile + p.C * ldt + kPlanesMR * NR;
  const int64_t span_max = window_span(p, 0, p.OW);
  const int64_t nrows_max = (max_band_rows(p, P.band) - 1) * p.stride_h + (p.KH - 1) * p.dil_h + 1;
  float* tmp = rowbuf + nrows_max * p.stride_w * phase_len(p, span_max);
  if (!dw_band_planes_direct<T>(P, n, q0, q1, tile, ldt, rowbuf)) dw_band_planes<T>(P, n, q0, q1, tile, ldt, rowbuf, tmp);
  PfRuns pf = band_input_runs<T>(P, next);
  switch (P.pw_act) {
    case kActRelu: planes_gemm_t<kActRelu, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    case kActRelu6: planes_gemm_t<kActRelu6, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    case kActSilu: planes_gemm_t<kActSilu, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    case kActHardswish: planes_gemm_t<kActHardswish, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    case kActGelu: planes_gemm_t<kActGelu, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    default: planes_gemm_t<kActNone, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
  }
  pf.step(pf.lines());
  if (P.nt_out) V::fence();
}

// --- pixels (channels_last output) -------------------------------------------------------------------
// NV vectors of channels [c0, c0 + NV*L) of one output pixel (the last vector partial when n_last < L).
template <int NV, class T>
inline void dw_pixel_chunk(const T* in, const int64_t* offs, const int64_t* taps_idx, int64_t ntaps,
                           const float* wt, int64_t Cp, const float* bias, float* dst, int64_t n_last) {
  vec acc[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) acc[v] = V::load(bias + v * L);
  for (int64_t t = 0; t < ntaps; ++t) {
    const T* px = in + offs[t];
    const float* w = wt + taps_idx[t] * Cp;
#pragma GCC unroll 8
    for (int v = 0; v < NV - 1; ++v) acc[v] = V::fma(V::load(w + v * L), ld(px + v * L), acc[v]);
    const vec x = n_last == L ? ld(px + (NV - 1) * L) : ld_n(px + (NV - 1) * L, n_last);
    acc[NV - 1] = V::fma(V::load(w + (NV - 1) * L), x, acc[NV - 1]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) V::store(dst + v * L, acc[v]);
}

// One output pixel, all channels, any geometry: the valid taps listed in offs / idx.
template <class T>
void dw_pixel_all(const Problem& P, const T* in, int64_t oh, int64_t ow, int64_t* offs, int64_t* idx,
                  float* trow, int64_t Cp) {
  const DwParams& p = P.p;
  int64_t nt = 0;
  for (int64_t kh = 0; kh < p.KH; ++kh) {
    const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
    if (ih < 0 || ih >= p.H) continue;
    for (int64_t kw = 0; kw < p.KW; ++kw) {
      const int64_t iw = ow * p.stride_w - p.pad_l + kw * p.dil_w;
      if (iw < 0 || iw >= p.W) continue;
      offs[nt] = ih * p.in_sh + iw * p.in_sw;
      idx[nt] = kh * p.KW + kw;
      ++nt;
    }
  }
  constexpr int U = 8;
  for (int64_t c0 = 0; c0 < p.C; c0 += U * L) {
    const int64_t nv = imin(U, ceil_div(p.C - c0, L));
    const int64_t n_last = imin(L, p.C - c0 - (nv - 1) * L);
    const T* ic = in + c0;
    const float* wt = P.packed_dw + c0;
    const float* bc = P.packed_dw_b + c0;
    float* d = trow + c0;
    switch (nv) {
      case 1: dw_pixel_chunk<1, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      case 2: dw_pixel_chunk<2, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      case 3: dw_pixel_chunk<3, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      case 4: dw_pixel_chunk<4, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      case 5: dw_pixel_chunk<5, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      case 6: dw_pixel_chunk<6, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      case 7: dw_pixel_chunk<7, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
      default: dw_pixel_chunk<8, T>(ic, offs, idx, nt, wt, Cp, bc, d, n_last); break;
    }
  }
}

// PB adjacent interior output pixels of one row x NV channel vectors, for KW taps per row at
// unit dilation and column stride SW (compile-time): each input vector is loaded once and feeds
// every (pixel, tap) that reads it; the row's KW weight vectors stay in registers.
// in: input at (row of kh = 0, column of pixel 0's tap 0, channel c0); rows kh in [kh_lo, kh_hi).
// EDGE: input columns j with bit j of jmask clear lie in the padding: read from the zero buffer
// `zeros` (>= NV*L elements), never from the input. Without EDGE every column is inside the input.
template <int PB, int NV, int KW, int SW, bool EDGE, class T>
inline void dw_pixel_group(const T* in, int64_t in_sh, int64_t in_sw, int64_t dil_h, int64_t kh_lo, int64_t kh_hi,
                           uint32_t jmask, const T* zeros, const float* wt, int64_t Cp, const float* bias, float* dst,
                           int64_t ldt, int64_t n_last) {
  vec acc[PB][NV];
#pragma GCC unroll 16
  for (int q = 0; q < PB; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[q][v] = V::load(bias + v * L);
  constexpr int J = SW * (PB - 1) + KW;  // input columns touched
  for (int64_t kh = kh_lo; kh < kh_hi; ++kh) {
    const T* row = in + kh * dil_h * in_sh;
    const float* wr = wt + kh * KW * Cp;
    vec w[KW][NV];
#pragma GCC unroll 8
    for (int k = 0; k < KW; ++k)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) w[k][v] = V::load(wr + k * Cp + v * L);
    // One running pointer: the empty asm keeps the compiler from precomputing all J addresses
    // (one register each, then spilled).
    const T* xp = row;
#pragma GCC unroll 32
    for (int j = 0; j < J; ++j, xp += in_sw) {
      asm("" : "+r"(xp));
      vec x[NV];
      // EDGE: a column in the padding reads the zero buffer (a pointer select, plain loads: masks
      // rebuilt per load cost several times the loads themselves).
      const T* src = (!EDGE || ((jmask >> j) & 1u)) ? xp : zeros;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        x[v] = (v == NV - 1 && n_last != L) ? ld_n(src + v * L, n_last) : ld(src + v * L);
      // Keep x in registers: GCC would otherwise fold its load into each FMA using it (KW / SW
      // loads of the same vector instead of one).
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) asm("" : "+v"(x[v]));
#pragma GCC unroll 8
      for (int k = 0; k < KW; ++k) {
        if ((j - k) % SW != 0) continue;
        const int q = (j - k) / SW;
        if (j < k || q >= PB) continue;
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[q][v] = V::fma(w[k][v], x[v], acc[q][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int q = 0; q < PB; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) V::store(dst + q * ldt + v * L, acc[q][v]);
}

template <int PB, int NV, int KW, int SW, bool EDGE, class T>
inline void dw_group_channels(const Problem& P, const T* base, int64_t kh_lo, int64_t kh_hi, uint32_t jmask,
                              float* dst, int64_t ldt, int64_t cb, int64_t ce) {
  const DwParams& p = P.p;
  const T* zeros = reinterpret_cast<const T*>(P.zeros);
  for (int64_t c0 = cb; c0 < ce; c0 += NV * L) {
    const int64_t rem = ce - c0;
    const float* wt = P.packed_dw + c0;
    const float* bc = P.packed_dw_b + c0;
    if (rem >= NV * L) {
      dw_pixel_group<PB, NV, KW, SW, EDGE, T>(base + c0, p.in_sh, p.in_sw, p.dil_h, kh_lo, kh_hi, jmask, zeros, wt, ldt, bc,
                                              dst + c0, ldt, L);
    } else if (rem > L) {  // NV == 2 here: two vectors, the last partial
      dw_pixel_group<PB, 2, KW, SW, EDGE, T>(base + c0, p.in_sh, p.in_sw, p.dil_h, kh_lo, kh_hi, jmask, zeros, wt, ldt, bc,
                                             dst + c0, ldt, rem - L);
    } else {
      dw_pixel_group<PB, 1, KW, SW, EDGE, T>(base + c0, p.in_sh, p.in_sw, p.dil_h, kh_lo, kh_hi, jmask, zeros, wt, ldt, bc,
                                             dst + c0, ldt, rem);
    }
  }
}

// All channels of output columns [a, a + PB) of row oh (taps in the padding masked out).
template <int KW, int SW, int PB, class T>
void dw_group_all_channels(const Problem& P, const T* in, int64_t oh, int64_t a, int64_t kh_lo, int64_t kh_hi,
                           float* dst, int64_t ldt, int64_t cb, int64_t ce) {
  const DwParams& p = P.p;
  constexpr int NV = (KW <= 5 && kDwPixelWide) ? 2 : 1;
  constexpr int J = SW * (PB - 1) + KW;
  static_assert(J <= 32, "jmask holds 32 columns");
  const int64_t iw0 = a * SW - p.pad_l;
  uint32_t jmask = 0;
  for (int j = 0; j < J; ++j)
    if (iw0 + j >= 0 && iw0 + j < p.W) jmask |= 1u << j;
  const T* base = in + (oh * p.stride_h - p.pad_t) * p.in_sh + iw0 * p.in_sw;
  if (jmask == (J == 32 ? ~0u : (1u << J) - 1u))
    dw_group_channels<PB, NV, KW, SW, false, T>(P, base, kh_lo, kh_hi, jmask, dst, ldt, cb, ce);
  else
    dw_group_channels<PB, NV, KW, SW, true, T>(P, base, kh_lo, kh_hi, jmask, dst, ldt, cb, ce);
}

// Channels [cb, ce) of output columns [s0, s1) of row oh: groups of kDwPixelBlock pixels, then of
// half that, then single pixels.
template <int KW, int SW, class T>
void dw_row_groups(const Problem& P, const T* in, int64_t oh, int64_t s0, int64_t s1, int64_t kh_lo, int64_t kh_hi,
                   float* trow, int64_t ldt, int64_t cb, int64_t ce) {
  constexpr int PB = kDwPixelBlock, PB2 = kDwPixelBlock / 2;
  int64_t ow = s0;
  for (; ow + PB <= s1; ow += PB)
    dw_group_all_channels<KW, SW, PB, T>(P, in, oh, ow, kh_lo, kh_hi, trow + (ow - s0) * ldt, ldt, cb, ce);
  for (; ow + PB2 <= s1; ow += PB2)
    dw_group_all_channels<KW, SW, PB2, T>(P, in, oh, ow, kh_lo, kh_hi, trow + (ow - s0) * ldt, ldt, cb, ce);
  for (; ow < s1; ++ow)
    dw_group_all_channels<KW, SW, 1, T>(P, in, oh, ow, kh_lo, kh_hi, trow + (ow - s0) * ldt, ldt, cb, ce);
}

// The pixels path's 3x3 stride-1 depthwise (dws33_band), which reads window rows outside the image
// from a zero row.
inline bool pixels_k33(const DwParams& p) {
  return kDwPixels33 && p.KH == 3 && p.KW == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dil_h == 1 &&
         p.dil_w == 1;
}

// Zero floats at P.zeros (pixels path): a window position outside the image reads C channels
// there (dw_pixel_group); dws33_band reads a whole input row's extent there.
inline int64_t pixels_zeros_size(const DwParams& p) {
  const int64_t Cp = round_up(p.C, L);
  return (pixels_k33(p) ? (p.W - 1) * p.in_sw : 0) + Cp + 2 * L;
}

// --- pixels depthwise, 3x3 at stride 1 and unit dilation: a window sliding along the rows ---------
// One channel vector, R output rows: the input columns are visited left to right, each column of
// R + 2 input vectors loaded once and used by the 3 output columns that read it (3 sets of R
// accumulators in flight; the oldest is complete after its third column and is stored, activation
// applied on the registers). Window rows outside the image read a zero row (P.zeros), columns
// outside it are zero vectors (no load). Addressing is R + 2 row pointers plus one column offset
// shared by all of them: square register blocks of pixels need a run-time offset per window
// position (36 for 4 x 4), which the compiler spilled (about 13 cycles per output vector instead
// of the ~5 the FMAs take).
//
// Step j (input column x = x0 + j) adds tap column kw = 0 to output column j (acc set j % 3, new),
// kw = 1 to column j - 1 and kw = 2 to column j - 2 (then stored). PH = j % 3 at compile time, so
// the sets stay in registers. FULL: every part present and the column inside the image.
template <int R, int PH, bool FULL, int ACT, class T>
__attribute__((always_inline)) inline void dws33_step(vec (&a)[3][R], const T* const* rows, int64_t xoff,
                                                      bool inside, bool has_new, bool has_mid, bool has_old,
                                                      typename V::M m, const vec (&w)[9], vec b, float* dst_old,
                                                      int64_t dst_row) {
  constexpr int N = PH, M = (PH + 2) % 3, O = (PH + 1) % 3;
  vec v[R + 2];
#pragma GCC unroll 6
  for (int i = 0; i < R + 2; ++i) v[i] = (FULL || inside) ? ld_m(rows[i] + xoff, m) : V::zero();
  if (FULL || has_new) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      a[N][r] = V::fma(w[0], v[r], b);
      a[N][r] = V::fma(w[3], v[r + 1], a[N][r]);
      a[N][r] = V::fma(w[6], v[r + 2], a[N][r]);
    }
  }
  if (FULL || has_mid) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) a[M][r] = V::fma(w[kh * 3 + 1], v[r + kh], a[M][r]);
  }
  if (FULL || has_old) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh) a[O][r] = V::fma(w[kh * 3 + 2], v[r + kh], a[O][r]);
      V::store(dst_old + r * dst_row, act_v<ACT>(a[O][r]));
    }
  }
}

// R output rows x output columns [0, ncols) of channels [c0, c0 + n): input column of output
// column 0's tap kw = 0 is x0; rows[i] points at window row i's column 0, channel c0 (the zero row
// where the row is outside the image); dst at output (row 0, column 0, channel c0) of the tile.
template <int R, int ACT, class T>
inline void dws33_rows(const T* const* rows, int64_t in_sw, int64_t W, int64_t x0, int64_t ncols,
                       typename V::M m, const float* wt, int64_t Cp, const float* bias, float* dst, int64_t dst_row,
                       int64_t ldt) {
  vec w[9];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) w[t] = V::load(wt + t * Cp);
  const vec b = V::load(bias);
  vec a[3][R];
  // Any step: the parts that exist for this j, the column loaded only inside the image.
  auto any_step = [&](int64_t j) __attribute__((always_inline)) {
    const int64_t x = x0 + j;
    const bool inside = x >= 0 && x < W, hn = j < ncols, hm = j >= 1 && j - 1 < ncols, ho = j >= 2;
    float* d = dst + (j - 2) * ldt;
    switch (j % 3) {
      case 0: dws33_step<R, 0, false, ACT, T>(a, rows, x * in_sw, inside, hn, hm, ho, m, w, b, d, dst_row); break;
      case 1: dws33_step<R, 1, false, ACT, T>(a, rows, x * in_sw, inside, hn, hm, ho, m, w, b, d, dst_row); break;
      default: dws33_step<R, 2, false, ACT, T>(a, rows, x * in_sw, inside, hn, hm, ho, m, w, b, d, dst_row); break;
    }
  };
  // Steps with every part present and the column inside: j in [2, ncols) with x0 + j in [0, W).
  const int64_t jf0 = imax(2, -x0), jf1 = imin(ncols, W - x0);
  int64_t j = 0;
  // generic steps up to the first multiple of 3 from which full steps run
  const int64_t jm = jf0 + (3 - jf0 % 3) % 3;
  for (; j < jm && j < ncols + 2; ++j) any_step(j);
  for (; j + 3 <= jf1; j += 3) {
    const int64_t xo = (x0 + j) * in_sw;
    float* d = dst + (j - 2) * ldt;
    dws33_step<R, 0, true, ACT, T>(a, rows, xo, true, true, true, true, m, w, b, d, dst_row);
    dws33_step<R, 1, true, ACT, T>(a, rows, xo + in_sw, true, true, true, true, m, w, b, d + ldt, dst_row);
    dws33_step<R, 2, true, ACT, T>(a, rows, xo + 2 * in_sw, true, true, true, true, m, w, b, d + 2 * ldt, dst_row);
  }
  for (; j < ncols + 2; ++j) any_step(j);
}

// tile[q - q0][c] for the band, ACT applied.
template <int ACT, class T>
void dws33_band(const Problem& P, const T* in, int64_t q0, int64_t q1, float* tile, int64_t ldt, const T* zero_row) {
  const DwParams& p = P.p;
  const int64_t OW = p.OW, oha = q0 / OW, ohb = (q1 - 1) / OW;
  const int64_t Cp = round_up(p.C, L);
  // Row segments of the band: [oh0, oh0 + nrows) x output columns [s0, s1).
  struct Seg { int64_t oh0, nrows, s0, s1; } segs[3];
  int nseg = 0;
  auto add = [&](int64_t oh0, int64_t nrows, int64_t s0, int64_t s1) {
    if (nrows <= 0 || s1 <= s0) return;
    if (nseg > 0 && segs[nseg - 1].s0 == s0 && segs[nseg - 1].s1 == s1) {
      segs[nseg - 1].nrows += nrows;
      return;
    }
    segs[nseg++] = Seg{oh0, nrows, s0, s1};
  };
  if (oha == ohb) {
    add(oha, 1, q0 - oha * OW, q1 - oha * OW);
  } else {
    add(oha, 1, q0 - oha * OW, OW);
    add(oha + 1, ohb - oha - 1, 0, OW);
    add(ohb, 1, 0, q1 - ohb * OW);
  }
  for (int sgi = 0; sgi < nseg; ++sgi) {
    const Seg& sg = segs[sgi];
    const int64_t x0 = sg.s0 - p.pad_l, ncols = sg.s1 - sg.s0;
    for (int64_t r0 = 0; r0 < sg.nrows;) {
      const int64_t oh = sg.oh0 + r0, rem = sg.nrows - r0;
      const int R = rem >= 4 ? 4 : rem == 3 ? 3 : rem == 2 ? 2 : 1;
      float* dst = tile + (oh * OW + sg.s0 - q0) * ldt;
      const int64_t ih0 = oh - p.pad_t;
      const T* rowp[6];
      for (int i = 0; i < R + 2; ++i) {
        const int64_t ih = ih0 + i;
        rowp[i] = ih >= 0 && ih < p.H ? in + ih * p.in_sh : zero_row;
      }
      // One channel vector at a time over the whole row group: each pass walks its R + 2 input rows once.
      for (int64_t c0 = 0; c0 < p.C; c0 += L) {
        const typename V::M m = V::range_mask(0, p.C - c0);
        const float* wt = P.packed_dw + c0;
        const float* bias = P.packed_dw_b + c0;
        float* d = dst + c0;
        const int64_t dr = OW * ldt;
        const T* rows[6];
        for (int i = 0; i < R + 2; ++i) rows[i] = rowp[i] + c0;
        switch (R) {
          case 4: dws33_rows<4, ACT, T>(rows, p.in_sw, p.W, x0, ncols, m, wt, Cp, bias, d, dr, ldt); break;
          case 3: dws33_rows<3, ACT, T>(rows, p.in_sw, p.W, x0, ncols, m, wt, Cp, bias, d, dr, ldt); break;
          case 2: dws33_rows<2, ACT, T>(rows, p.in_sw, p.W, x0, ncols, m, wt, Cp, bias, d, dr, ldt); break;
          default: dws33_rows<1, ACT, T>(rows, p.in_sw, p.W, x0, ncols, m, wt, Cp, bias, d, dr, ldt); break;
        }
      }
      r0 += R;
    }
  }
}

template <class T>
void dw_band_pixels(const Problem& P, int64_t n, int64_t q0, int64_t q1, float* tile, int64_t ldt) {
  const DwParams& p = P.p;
  const T* in = static_cast<const T*>(P.in) + n * p.in_sn;
  const int64_t taps = p.KH * p.KW;
  int64_t* offs = new int64_t[2 * taps];
  int64_t* idx = offs + taps;
  // 3x3, stride 1, unit dilation (the common MobileNet case): the sliding window of dws33_band.
  const bool k33 = pixels_k33(p);
  // Grouped fast path: unit column dilation, column stride 1 or 2, 3/5/7 taps per row.
  const bool grouped = p.dil_w == 1 && (p.stride_w == 1 || p.stride_w == 2) &&
                       (p.KW == 3 || p.KW == 5 || p.KW == 7);
  bool act_done = false;  // applied while the values were in registers or in L1
  if (k33) {
    // the zero row read for window rows outside the image
    const T* zeros = reinterpret_cast<const T*>(P.zeros);
    act_done = true;
    switch (P.act) {
      case kActNone: dws33_band<kActNone, T>(P, in, q0, q1, tile, ldt, zeros); break;
      case kActRelu: dws33_band<kActRelu, T>(P, in, q0, q1, tile, ldt, zeros); break;
      case kActRelu6: dws33_band<kActRelu6, T>(P, in, q0, q1, tile, ldt, zeros); break;
      case kActHardswish: dws33_band<kActHardswish, T>(P, in, q0, q1, tile, ldt, zeros); break;
      default:  // SiLU, GELU: long inline code, not worth a copy per row-block shape; the pass below
        dws33_band<kActNone, T>(P, in, q0, q1, tile, ldt, zeros);
        act_done = false;
    }
  } else if (!grouped) {
    for (int64_t q = q0; q < q1; ++q)
      dw_pixel_all<T>(P, in, q / p.OW, q % p.OW, offs, idx, tile + (q - q0) * ldt, ldt);
  } else {
    // Channel blocks outermost: the input rows of a block (rows x W x 64 channels) stay in L1 while
    // every output row of the band reads them (channels innermost would stream each input row
    // through L1 once per output row).
    constexpr int64_t CB = 64;
    for (int64_t cb = 0; cb < p.C; cb += CB) {
      const int64_t ce = imin(p.C, cb + CB);
      for (int64_t oh = q0 / p.OW; oh * p.OW < q1; ++oh) {
        const int64_t s0 = imax(q0 - oh * p.OW, 0), s1 = imin(q1 - oh * p.OW, p.OW);
        float* trow = tile + (oh * p.OW + s0 - q0) * ldt;
        // rows kh with the input row inside [0, H)
        const int64_t ih0 = oh * p.stride_h - p.pad_t;
        int64_t kh_lo = 0, kh_hi = p.KH;
        while (kh_lo < p.KH && ih0 + kh_lo * p.dil_h < 0) ++kh_lo;
        while (kh_hi > kh_lo && ih0 + (kh_hi - 1) * p.dil_h >= p.H) --kh_hi;
        switch (p.KW * 4 + p.stride_w) {
          case 13: dw_row_groups<3, 1, T>(P, in, oh, s0, s1, kh_lo, kh_hi, trow, ldt, cb, ce); break;
          case 14: dw_row_groups<3, 2, T>(P, in, oh, s0, s1, kh_lo, kh_hi, trow, ldt, cb, ce); break;
          case 21: dw_row_groups<5, 1, T>(P, in, oh, s0, s1, kh_lo, kh_hi, trow, ldt, cb, ce); break;
          case 22: dw_row_groups<5, 2, T>(P, in, oh, s0, s1, kh_lo, kh_hi, trow, ldt, cb, ce); break;
          case 29: dw_row_groups<7, 1, T>(P, in, oh, s0, s1, kh_lo, kh_hi, trow, ldt, cb, ce); break;
          default: dw_row_groups<7, 2, T>(P, in, oh, s0, s1, kh_lo, kh_hi, trow, ldt, cb, ce); break;
        }
        // The pixels just written (s1 - s0 x 64 channels) are still in L1.
        for (int64_t q = 0; q < s1 - s0; ++q) act_inplace(trow + q * ldt + cb, ce - cb, P.act);
      }
    }
    act_done = true;
  }
  if (!act_done)
    for (int64_t q = q0; q < q1; ++q) act_inplace(tile + (q - q0) * ldt, p.C, P.act);
  delete[] offs;
}

constexpr int64_t kPixelsPanelL1Bytes = 32 * 1024;  // panel + row block, of a 48 KiB L1D (Zen 4/5; 32-48 KiB on Intel)

template <int NV, int ACT, class T>
void pixels_gemm_t(const Problem& P, int64_t n, int64_t q0, int64_t band, const float* tile, int64_t ldt, PfRuns& pf,
                   int64_t co_lo, int64_t co_hi) {
  const DwParams& p = P.p;
  constexpr int NR = NV * L;
  constexpr int MR = pixels_mr(NV);
  T* out = static_cast<T*>(P.out) + n * p.out_sn + q0 * P.Cout;
  // Column blocks of output channels [co_lo, co_hi) (co_lo a multiple of NR).
  const int64_t blk_lo = co_lo / NR, blk_hi = ceil_div(co_hi, NR), nblk = blk_hi - blk_lo;
  const int64_t calls = nblk * ceil_div(band, MR);
  const int64_t pf_every = pf.plan(calls, p.C, 1.0);  // the second half only measured no faster here
  // Streaming stores for full, 64-byte aligned float rows (the output is written once, never read
  // back here): no read-for-ownership of the output lines.
  bool nt = std::is_same<T, float>::value && P.nt_out && P.Cout % L == 0 &&
            reinterpret_cast<uintptr_t>(out) % (L * sizeof(float)) == 0;
  auto block = [&](int64_t blk, int64_t i) {
    const int64_t co0 = blk * NR, nc = imin(NR, P.Cout - co0), mr = imin(MR, band - i);
    const float* bias = P.packed_pw_b ? P.packed_pw_b + co0 : nullptr;
    ukernel_out<MR, NV, false, ACT, false, T>(p.C, tile + i * ldt, ldt, P.packed_pw + blk * p.C * NR, NR, bias,
                                               out + i * P.Cout + co0, P.Cout, mr, nc, nt, pf, pf_every);
  };
  // Weight panel and a row block together must leave room in L1: 256 -> 256 (a 32 KiB panel next
  // to a 14 KiB row block) ran 2-3% faster with the row block outermost (16x256x28x28,
  // channels_last, 2 threads, 3 alternating pairs, 2026-11-26).
  if ((p.C * NR + MR * p.C) * int64_t(sizeof(float)) <= kPixelsPanelL1Bytes) {
    // Weight panel (C x NR) stays in L1 over the band's row blocks.
    for (int64_t blk = blk_lo; blk < blk_hi; ++blk)
      for (int64_t i = 0; i < band; i += MR) block(blk, i);
  } else {
    // Large C (e.g. 576 -> 96: a 74 KiB panel): the panel would leave L1 between row blocks
    // anyway; keep the row block (MR x C of the tile) in L1 across the column blocks instead.
    // (A row block larger than L1, C > ~800, leaves it too; then both orders stream from L2.)
    for (int64_t i = 0; i < band; i += MR)
      for (int64_t blk = blk_lo; blk < blk_hi; ++blk) block(blk, i);
  }
}

template <int NV, class T>
void pixels_gemm(const Problem& P, int64_t n, int64_t q0, int64_t band, const float* tile, int64_t ldt, PfRuns& pf,
                 int64_t co_lo, int64_t co_hi) {
  switch (P.pw_act) {
    case kActRelu: pixels_gemm_t<NV, kActRelu, T>(P, n, q0, band, tile, ldt, pf, co_lo, co_hi); break;
    case kActRelu6: pixels_gemm_t<NV, kActRelu6, T>(P, n, q0, band, tile, ldt, pf, co_lo, co_hi); break;
    case kActSilu: pixels_gemm_t<NV, kActSilu, T>(P, n, q0, band, tile, ldt, pf, co_lo, co_hi); break;
    case kActHardswish: pixels_gemm_t<NV, kActHardswish, T>(P, n, q0, band, tile, ldt, pf, co_lo, co_hi); break;
    case kActGelu: pixels_gemm_t<NV, kActGelu, T>(P, n, q0, band, tile, ldt, pf, co_lo, co_hi); break;
    default: pixels_gemm_t<NV, kActNone, T>(P, n, q0, band, tile, ldt, pf, co_lo, co_hi); break;
  }
}

template <class T>
void run_band_pixels(const Problem& P, const Band& bnd, const Band& next, float* scratch) {
  const int64_t n = bnd.n, q0 = bnd.q0, q1 = bnd.q1;
  const int64_t co_lo = bnd.co_lo, co_hi = bnd.co_hi < 0 ? P.Cout : bnd.co_hi;
  const int64_t ldt = round_up(P.p.C, L);
  float* tile = scratch;
  dw_band_pixels<T>(P, n, q0, q1, tile, ldt);
  PfRuns pf = band_input_runs<T>(P, next);
  switch (pixels_nv(P.Cout)) {
    case 1: pixels_gemm<1, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    case 2: pixels_gemm<2, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    case 3: pixels_gemm<3, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
    default: pixels_gemm<kPixelsMaxNV, T>(P, n, q0, q1 - q0, tile, ldt, pf, co_lo, co_hi); break;
  }
  pf.step(pf.lines());
  if (P.nt_out) V::fence();
}

// --- Kernels table entries ---------------------------------------------------------------------------
// Granularity of an output-channel split (Band::co_lo): the GEMM's block of output channels.
int64_t co_unit(const Problem& P) { return P.pixels ? pixels_nv(P.Cout) * L : kPlanesMR; }

int64_t workspace_size(const Problem& P) {
  const int64_t C = P.p.C, Cout = P.Cout;
  if (!P.pixels) return round_up(Cout, kPlanesMR) * C + (planes_has_tail(P) ? round_up(Cout, 2 * L) * C : 0);
  const int64_t NR = pixels_nv(Cout) * L, Cp = round_up(C, L);
  return round_up(Cout, NR) * C + round_up(Cout, NR) + P.p.KH * P.p.KW * Cp + Cp + pixels_zeros_size(P.p);
}

// Channels [c0, c0 + nc) of pointwise weight row co (nc <= L; zeros past nc and for co >= Cout).
inline vec load_pw(const float* pw_w, int64_t co, int64_t Cout, int64_t C, int64_t c0, int64_t nc) {
  if (co >= Cout) return V::zero();
  return nc == L ? V::load(pw_w + co * C + c0) : V::load_n(pw_w + co * C + c0, nc);
}

// In-register transpose of an L x L block: rows[r] lane c becomes rows[c] lane r. log2(L) rounds
// of de-interleaving row pairs: each round rotates the (row, lane) index bits right by one, so
// after log2(L) rounds row and lane bits have traded places.
inline void transpose_block(vec* rows) {
  vec t[L];
  for (int s = 1; s < L; s *= 2) {
#pragma GCC unroll 8
    for (int i = 0; i < L / 2; ++i) {
      t[i] = V::even(rows[2 * i], rows[2 * i + 1]);
      t[i + L / 2] = V::odd(rows[2 * i], rows[2 * i + 1]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) rows[i] = t[i];
  }
}

// The pointwise weight (Cout, C) in blocks of B output channels, B a multiple of L (pixels GEMM
// panels, the planes tail's pw_w^T): dst[blk][c][j] = pw_w[blk*B + j][c], zeros past Cout.
// L x L tiles transposed in registers: the element loop this replaces (a strided read per
// element) took ~80 us for 96 x 576 weights, most of the per-call cost of a batch-1 call.
inline void pack_pw_blocks(float* dst, const float* pw_w, int64_t Cout, int64_t C, int64_t B) {
  const int64_t Coutp = round_up(Cout, B);
  // co0 outermost: each of the L rows of pw_w is read front to back (prefetcher-friendly); reading
  // down the columns instead (c0 outermost) took ~2x longer for 160 x 960 weights.
  for (int64_t co0 = 0; co0 < Coutp; co0 += L) {
    float* d = dst + (co0 / B) * C * B + co0 % B;  // the L channels lie in one block (B % L == 0)
    for (int64_t c0 = 0; c0 < C; c0 += L) {
      const int64_t nc = imin(L, C - c0);
      vec rows[L];
      for (int r = 0; r < L; ++r) {
        const int64_t co = co0 + r;
        rows[r] = load_pw(pw_w, co, Cout, C, c0, nc);
      }
      transpose_block(rows);  // rows[c] lane r: pw_w[co0 + r][c0 + c]
      for (int64_t c = 0; c < nc; ++c) V::store(d + (c0 + c) * B, rows[c]);
    }
  }
}

// The pointwise weight in blocks of MR < L output channels (the planes GEMM's rows): dst[blk][c][j] =
// pw_w[blk*MR + j][c], zeros past Cout. Each block's MR rows are loaded a vector of channels at a
// time and interleaved through a small buffer (the element loop this replaces, with a strided read
// and index arithmetic per element, took ~200 us for 160 x 960 weights; masked stores of
// transposed tiles ~10 cycles per store).
template <int MR>
void pack_pw_rows(float* dst, const float* pw_w, int64_t Cout, int64_t C) {
  alignas(64) float t[MR][L];
  for (int64_t blk = 0; blk < ceil_div(Cout, MR); ++blk) {
    for (int64_t c0 = 0; c0 < C; c0 += L) {
      const int64_t nc = imin(L, C - c0);
#pragma GCC unroll 8
      for (int j = 0; j < MR; ++j) {
        const int64_t co = blk * MR + j;
        V::store(t[j], load_pw(pw_w, co, Cout, C, c0, nc));
      }
      float* d = dst + (blk * C + c0) * MR;
      for (int64_t c = 0; c < nc; ++c)
#pragma GCC unroll 8
        for (int j = 0; j < MR; ++j) d[c * MR + j] = t[j][c];
    }
  }
}

void prepare(Problem& P, float* ws) {
  const int64_t C = P.p.C, Cout = P.Cout;
  if (!P.pixels) {
    pack_pw_rows<kPlanesMR>(ws, P.pw_w, Cout, C);  // row blocks of MR output channels
    P.packed_pw = ws;
    ws += round_up(Cout, kPlanesMR) * C;
    if (planes_has_tail(P)) {  // the tail kernel's pw_w^T in blocks of 2L output channels
      pack_pw_blocks(ws, P.pw_w, Cout, C, 2 * L);
      P.packed_pw_t = ws;
    }
    P.packed_pw_b = P.pw_b;
    P.packed_dw = P.dw_w;
    P.packed_dw_b = P.dw_b;
    return;
  }
  // Column blocks of NR output channels: ws[blk][c][j] = pw_w[blk*NR + j][c] (pw_w^T), zero-padded.
  const int64_t NR = pixels_nv(Cout) * L, Cp = round_up(C, L), Coutp = round_up(Cout, NR);
  float* pw = ws;
  pack_pw_blocks(pw, P.pw_w, Cout, C, NR);
  float* pwb = pw + Coutp * C;
  for (int64_t co = 0; co < Coutp; ++co) pwb[co] = (P.pw_b && co < Cout) ? P.pw_b[co] : 0.f;
  // Depthwise weight taps-major (taps, Cp) and bias (Cp), zero-padded channels.
  const int64_t taps = P.p.KH * P.p.KW;
  float* dw = pwb + Coutp;
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t c = 0; c < Cp; ++c) dw[t * Cp + c] = c < C ? P.dw_w[c * taps + t] : 0.f;
  float* dwb = dw + taps * Cp;
  for (int64_t c = 0; c < Cp; ++c) dwb[c] = (P.dw_b && c < C) ? P.dw_b[c] : 0.f;
  float* zeros = dwb + Cp;
  zero_fill(zeros, pixels_zeros_size(P.p));
  P.zeros = zeros;
  P.packed_pw = pw;
  P.packed_pw_b = P.pw_b ? pwb : nullptr;
  P.packed_dw = dw;
  P.packed_dw_b = dwb;
}

int64_t scratch_size(const Problem& P) {
  const DwParams& p = P.p;
  if (P.pixels) {
    const int64_t ldt = round_up(p.C, L);
    return (round_up(P.band, 16) + 16) * ldt + 16 * kPixelsMaxNV * L;
  }
  constexpr int NR = kPlanesNV * L;
  const int64_t span_max = window_span(p, 0, p.OW);
  const int64_t nrows_max = (max_band_rows(p, P.band) - 1) * p.stride_h + (p.KH - 1) * p.dil_h + 1;
  return p.C * round_up(P.band, NR) + kPlanesMR * NR + nrows_max * p.stride_w * phase_len(p, span_max) +
         span_max + L;
}

void run_band(const Problem& P, const Band& band, const Band& next, float* scratch) {
  if (P.pixels) {
    if (P.dtype == kBF16)
      run_band_pixels<uint16_t>(P, band, next, scratch);
    else
      run_band_pixels<float>(P, band, next, scratch);
  } else {
    if (P.dtype == kBF16)
      run_band_planes<uint16_t>(P, band, next, scratch);
    else
      run_band_planes<float>(P, band, next, scratch);
  }
}
