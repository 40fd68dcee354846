// AVX2 + FMA build of the fused depthwise-separable kernels (fused_simd_body.h), for x86 CPUs
// without AVX-512. Compiled with a target pragma, used only after a run-time CPU check. Only
// standard headers are included before the pragma; no torch code is compiled for this ISA here.
#include "fused_kernels.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DSCONV_FUSED_AVX2 1
#endif

#ifdef DSCONV_FUSED_AVX2
#ifdef __clang__
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>

namespace dsconv {
namespace cpu {
namespace fused {
namespace avx2 {
namespace {

struct V {
  using T = __m256;
  static constexpr int L = 8;
  static inline __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline T zero() { return _mm256_setzero_ps(); }
  static inline T set1(float x) { return _mm256_set1_ps(x); }
  static inline T load(const float* p) { return _mm256_loadu_ps(p); }
  static inline T load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, mask(n)); }
  static inline void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static inline void store_n(float* p, T v, int64_t n) { _mm256_maskstore_ps(p, mask(n), v); }
  static inline void stream(float* p, T v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
  static inline void fence() { _mm_sfence(); }
  static inline T loadbf(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static inline T loadbf_n(const uint16_t* p, int64_t n) {
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(tmp, p, static_cast<size_t>(n) * sizeof(uint16_t));
    return loadbf(tmp);
  }
  // float -> bf16 bits, round to nearest even, NaN -> 0x7fc0 (as c10::BFloat16); 8 x uint16.
  static inline __m128i narrow(T v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan);
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  }
  static inline void storebf(uint16_t* p, T v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), narrow(v)); }
  static inline void storebf_n(uint16_t* p, T v, int64_t n) {
    uint16_t tmp[8];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(tmp), narrow(v));
    std::memcpy(p, tmp, static_cast<size_t>(n) * sizeof(uint16_t));
  }
  // Lanes [lo, hi) (clamped to [0, L)) loaded, the others zero and never accessed (no faults).
  static inline T load_range(const float* p, int64_t lo, int64_t hi) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int h = static_cast<int>(hi > L ? L : hi), l = static_cast<int>(lo < 0 ? 0 : lo);
    const __m256i m = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(l), iota),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(h), iota));
    return _mm256_maskload_ps(p, m);
  }
  // Precomputed lane masks: lanes [lo, hi) of a load (no access to the others). bf16 has no
  // masked load here (kMaskedBf16 false: the callers take another path for it).
  using M = __m256i;
  static constexpr bool kMaskedBf16 = false;
  static inline M range_mask(int64_t lo, int64_t hi) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int h = static_cast<int>(hi > L ? L : hi), l = static_cast<int>(lo < 0 ? 0 : lo);
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(l), iota), _mm256_cmpgt_epi32(_mm256_set1_epi32(h), iota));
  }
  static inline T load_m(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static inline T loadbf_m(const uint16_t* p, M m) {
    alignas(32) int32_t on[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(on), m);
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int l = 0; l < 8; ++l)
      if (on[l]) tmp[l] = p[l];
    return loadbf(tmp);
  }
  static inline T loadbf_range(const uint16_t* p, int64_t lo, int64_t hi) {
    uint16_t tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t l = lo < 0 ? 0 : lo; l < (hi > L ? L : hi); ++l) tmp[l] = p[l];
    return loadbf(tmp);
  }
  // p[0 .. L) when on, zeros (nothing read) when not; n_last < L: only the first n_last lanes.
  static inline T load_if(const float* p, bool on, int64_t n_last) { return _mm256_maskload_ps(p, mask(on ? n_last : 0)); }
  static inline T loadbf_if(const uint16_t* p, bool on, int64_t n_last) {
    if (!on) return zero();
    return n_last == L ? loadbf(p) : loadbf_n(p, n_last);
  }
  static inline T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static inline T add(T a, T b) { return _mm256_add_ps(a, b); }
  static inline T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static inline T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static inline T div(T a, T b) { return _mm256_div_ps(a, b); }
  static inline T max(T a, T b) { return _mm256_max_ps(a, b); }
  static inline T min(T a, T b) { return _mm256_min_ps(a, b); }
  static inline T bit_and(T a, T b) { return _mm256_and_ps(a, b); }
  static inline T bit_xor(T a, T b) { return _mm256_xor_ps(a, b); }
  static inline T bit_or(T a, T b) { return _mm256_or_ps(a, b); }
  static inline T round_nearest(T a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static inline T pow2i(T n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  // a = x0..x7, b = x8..x15 -> x0 x2 .. x14 / x1 x3 .. x15
  static inline T even(T a, T b) {
    const T s = _mm256_shuffle_ps(a, b, 0x88);  // a0 a2 b0 b2 | a4 a6 b4 b6
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
  }
  static inline T odd(T a, T b) {
    const T s = _mm256_shuffle_ps(a, b, 0xDD);
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
  }
};

constexpr int kPlanesNV = 2, kPlanesMR = 6;
constexpr int kPixelsMaxNV = 3;
constexpr int kPixelsPreferNV = kPixelsMaxNV;
constexpr int pixels_mr(int nv) { return nv >= 3 ? 4 : nv == 2 ? 6 : 12; }
constexpr int kDwU = 4;
constexpr int kDwPixelBlock = 4;
constexpr bool kDwPixels33 = false;
constexpr bool kDwPixelWide = false;

#include "fused_simd_body.h"

}  // namespace
}  // namespace avx2
}  // namespace fused
}  // namespace cpu
}  // namespace dsconv

#ifdef __clang__
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // DSCONV_FUSED_AVX2

namespace dsconv {
namespace cpu {
namespace fused {

const Kernels* avx2_kernels() {
#ifdef DSCONV_FUSED_AVX2
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  static const Kernels k{"avx2", &avx2::workspace_size, &avx2::prepare, &avx2::scratch_size, &avx2::run_band,
                         avx2::kPlanesNV * avx2::V::L, &avx2::co_unit};
  return ok ? &k : nullptr;
#else
  return nullptr;
#endif
}

}  // namespace fused
}  // namespace cpu
}  // namespace dsconv
