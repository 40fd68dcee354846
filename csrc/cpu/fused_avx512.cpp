// AVX-512 (F, BW, VL, DQ) build of the fused depthwise-separable kernels (fused_simd_body.h).
// Compiled for AVX-512 with a target pragma, used only after a run-time CPU check. Only standard
// headers are included before the pragma; no torch code is compiled for this ISA here.
#include "fused_kernels.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DSCONV_FUSED_AVX512 1
#endif

#ifdef DSCONV_FUSED_AVX512
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")
// GCC 12 flags the `__Y = __Y` idiom of _mm512_undefined_*() inside its own intrinsics headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

namespace dsconv {
namespace cpu {
namespace fused {
namespace avx512 {
namespace {

struct V {
  using T = __m512;
  static constexpr int L = 16;
  static inline __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }  // n <= 16
  static inline T zero() { return _mm512_setzero_ps(); }
  static inline T set1(float x) { return _mm512_set1_ps(x); }
  static inline T load(const float* p) { return _mm512_loadu_ps(p); }
  static inline T load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static inline void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static inline void store_n(float* p, T v, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static inline void stream(float* p, T v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
  static inline void fence() { _mm_sfence(); }
  static inline T widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static inline T loadbf(const uint16_t* p) { return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static inline T loadbf_n(const uint16_t* p, int64_t n) { return widen(_mm256_maskz_loadu_epi16(mask(n), p)); }
  // float -> bf16 bits (in 32-bit lanes), round to nearest even, NaN -> 0x7fc0 (as c10::BFloat16).
  static inline __m512i narrow(T v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
  }
  static inline void storebf(uint16_t* p, T v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(narrow(v)));
  }
  static inline void storebf_n(uint16_t* p, T v, int64_t n) { _mm512_mask_cvtepi32_storeu_epi16(p, mask(n), narrow(v)); }
  // Lanes [lo, hi) (clamped to [0, L)) loaded, the others zero and never accessed (no faults).
  static inline __mmask16 range(int64_t lo, int64_t hi) {
    lo = lo < 0 ? 0 : lo;
    hi = hi > L ? L : hi;
    return hi <= lo ? static_cast<__mmask16>(0) : static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u));
  }
  static inline T load_range(const float* p, int64_t lo, int64_t hi) { return _mm512_maskz_loadu_ps(range(lo, hi), p); }
  // Precomputed lane masks: lanes [lo, hi) of a load (no access to the others).
  using M = __mmask16;
  static constexpr bool kMaskedBf16 = true;
  static inline M range_mask(int64_t lo, int64_t hi) { return range(lo, hi); }
  static inline T load_m(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline T loadbf_m(const uint16_t* p, M m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
  static inline T loadbf_range(const uint16_t* p, int64_t lo, int64_t hi) {
    return widen(_mm256_maskz_loadu_epi16(range(lo, hi), p));
  }
  // p[0 .. L) when on, zeros (nothing read) when not; n_last < L: only the first n_last lanes.
  static inline T load_if(const float* p, bool on, int64_t n_last) {
    return _mm512_maskz_loadu_ps(on ? mask(n_last) : static_cast<__mmask16>(0), p);
  }
  static inline T loadbf_if(const uint16_t* p, bool on, int64_t n_last) {
    return widen(_mm256_maskz_loadu_epi16(on ? mask(n_last) : static_cast<__mmask16>(0), p));
  }
  static inline T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static inline T add(T a, T b) { return _mm512_add_ps(a, b); }
  static inline T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static inline T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static inline T div(T a, T b) { return _mm512_div_ps(a, b); }
  static inline T max(T a, T b) { return _mm512_max_ps(a, b); }
  static inline T min(T a, T b) { return _mm512_min_ps(a, b); }
  static inline T bit_and(T a, T b) { return _mm512_and_ps(a, b); }
  static inline T bit_xor(T a, T b) { return _mm512_xor_ps(a, b); }
  static inline T bit_or(T a, T b) { return _mm512_or_ps(a, b); }
  static inline T round_nearest(T a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static inline T pow2i(T n) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static inline T even(T a, T b) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(a, idx, b);
  }
  static inline T odd(T a, T b) {
    const __m512i idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_permutex2var_ps(a, idx, b);
  }
};

constexpr int kPlanesNV = 4, kPlanesMR = 6;
constexpr int kPixelsPreferNV = 2;
constexpr int kPixelsMaxNV = 4;
constexpr int pixels_mr(int nv) { return nv >= 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 14 : 12; }
constexpr int kDwU = 4;
constexpr int kDwPixelBlock = 8;
constexpr bool kDwPixels33 = true;
constexpr bool kDwPixelWide = true;

#include "fused_simd_body.h"

}  // namespace
}  // namespace avx512
}  // namespace fused
}  // namespace cpu
}  // namespace dsconv

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#endif  // DSCONV_FUSED_AVX512

namespace dsconv {
namespace cpu {
namespace fused {

const Kernels* avx512_kernels() {
#ifdef DSCONV_FUSED_AVX512
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
  }();
  static const Kernels k{"avx512", &avx512::workspace_size, &avx512::prepare, &avx512::scratch_size,
                         &avx512::run_band, avx512::kPlanesNV * avx512::V::L,
                         &avx512::co_unit};
  return ok ? &k : nullptr;
#else
  return nullptr;
#endif
}

}  // namespace fused
}  // namespace cpu
}  // namespace dsconv
