// Vector traits for the hand-written CPU kernels: one struct per ISA with the same static API,
// so dw_simd_impl.h is written once and instantiated per ISA.
//
// Include only from inside a `#pragma GCC target(...)` region (dw_simd_avx512.cpp /
// dw_simd_avx2.cpp) after <immintrin.h>. Everything lives in an anonymous namespace so the
// ISA-specific code has internal linkage and can never be picked by the linker for another file.
//
// Element types: float, and bfloat16 carried as raw uint16_t bits (converted to float on load,
// rounded to nearest even on store exactly like c10::BFloat16, NaN -> 0x7FC0).
#pragma once

namespace {

// 8 floats -> 8 bfloat16 bits (round to nearest even, NaN -> 0x7FC0), AVX2 (both ISA files).
inline __m128i round8_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  // 0 <= r <= 0xFFFF: unsigned saturation keeps every value; fix the lane order after packing.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  return _mm256_castsi256_si128(packed);
}

#if defined(DSCONV_VEC512)
struct Vec {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int L = 16;
  static constexpr const char* name = "avx512";

  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(float x) { return _mm512_set1_ps(x); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // Predicated FMA: c + a*b where p is set, c unchanged (whatever a*b is) where it is not.
  using Pred = __mmask16;
  static inline Pred pred(bool b) { return b ? Pred(0xFFFF) : Pred(0); }
  static inline V fmadd_pred(V a, V b, V c, Pred p) { return _mm512_mask3_fmadd_ps(a, b, c, p); }
  // First n lanes (0 <= n <= L).
  static inline Mask mask(int n) { return (Mask)((1u << n) - 1u); }

  static inline V load(const float* p) { return _mm512_loadu_ps(p); }
  static inline V load(const uint16_t* p) {
    __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
  }
  // Masked loads never touch the masked-off lanes (no faults past the end of a tensor).
  static inline V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static inline V load(const uint16_t* p, Mask m) {
    __m512i x = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
  }

  // Lanes [lo, hi) of p (0 <= lo <= hi <= L), zeros elsewhere; other lanes are never touched.
  static inline Mask mask_range(int lo, int hi) { return (Mask)(((1u << hi) - 1u) & ~((1u << lo) - 1u)); }
  template <class T>
  static inline V load_range(const T* p, int lo, int hi) { return load(p, mask_range(lo, hi)); }

  static inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  // Non-temporal store of one vector (p aligned to the vector size).
  static inline void stream(float* p, V v) { _mm512_stream_ps(p, v); }
  static inline __m512i round_bf16(V v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0));
  }
  static inline void store(uint16_t* p, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(round_bf16(v)));
  }
  static inline void store(uint16_t* p, V v, Mask m) { _mm512_mask_cvtepi32_storeu_epi16(p, m, round_bf16(v)); }
  // 2L bfloat16 at p as two vectors: elements 0, 2, 4, ... (even) and 1, 3, 5, ... (odd), widened
  // with one shift / one mask of the 32-bit lanes that hold them: no vpmovzxwd, a shuffle that on
  // Intel cores takes the port of the second FMA unit. store_eo is its inverse (rounded as store).
  static inline void load_eo(const uint16_t* p, V* even, V* odd) {
    const __m512i r = _mm512_loadu_si512(p);
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(r, 16));
    // (a zero-masked 16-bit move, not an AND with a constant: no vector register held for it; the
    // 7x7 tiles use 30 of the 32)
    *odd = _mm512_castsi512_ps(_mm512_maskz_mov_epi16(static_cast<__mmask32>(0xAAAAAAAAu), r));
  }
  static inline void store_eo(uint16_t* p, V even, V odd) {
    _mm512_storeu_si512(p, _mm512_or_si512(round_bf16(even), _mm512_slli_epi32(round_bf16(odd), 16)));
  }

  // Even and odd elements of the 2L floats a:b.
  static inline void deinterleave2(V a, V b, V* even, V* odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *even = _mm512_permutex2var_ps(a, ie, b);
    *odd = _mm512_permutex2var_ps(a, io, b);
  }
  // Lanes a1 .. a(L-1), b0: a shifted down one lane, b's first lane shifted in.
  static inline V shift_in1(V a, V b) {
    return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(b), _mm512_castps_si512(a), 1));
  }
  // a0 0 a1 0 ... (first L lanes of a spread over 2L lanes, zeros between): lo = lanes 0..L/2-1.
  static inline void zero_insert2(V a, V* lo, V* hi) {
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16);
    const __m512i ih = _mm512_setr_epi32(8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13, 16, 14, 16, 15, 16);
    *lo = _mm512_permutex2var_ps(a, il, _mm512_setzero_ps());
    *hi = _mm512_permutex2var_ps(a, ih, _mm512_setzero_ps());
  }
  // Fixed-order horizontal sum (the same tree every call).
  static inline float hsum(V v) {
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
};
#elif defined(DSCONV_VEC256)
struct Vec {
  using V = __m256;
  using Mask = __m256i;
  static constexpr int L = 8;
  static constexpr const char* name = "avx2";

  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V set1(float x) { return _mm256_set1_ps(x); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  using Pred = __m256;
  static inline Pred pred(bool b) { return _mm256_castsi256_ps(_mm256_set1_epi32(b ? -1 : 0)); }
  static inline V fmadd_pred(V a, V b, V c, Pred p) { return _mm256_blendv_ps(c, _mm256_fmadd_ps(a, b, c), p); }
  static inline Mask mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static inline int mask_count(Mask m) { return __builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m))); }
  // lanes [lo, hi)
  static inline Mask mask_range(int lo, int hi) { return _mm256_andnot_si256(mask(lo), mask(hi)); }

  static inline V load(const float* p) { return _mm256_loadu_ps(p); }
  static inline V load(const uint16_t* p) {
    __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
  }
  static inline V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static inline V load(const uint16_t* p, Mask m) {
    alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int n = mask_count(m);
    for (int i = 0; i < n; ++i) t[i] = p[i];
    return load(t);
  }

  static inline V load_range(const float* p, int lo, int hi) {
    const __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(lo), i),
                                          _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), i));
    return _mm256_maskload_ps(p, m);
  }
  static inline V load_range(const uint16_t* p, int lo, int hi) {
    alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = lo; i < hi; ++i) t[i] = p[i];
    return load(t);
  }

  static inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static inline void store(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static inline void stream(float* p, V v) { _mm256_stream_ps(p, v); }
  static inline __m128i round_bf16(V v) { return round8_bf16(v); }
  static inline void store(uint16_t* p, V v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), round_bf16(v));
  }
  static inline void store(uint16_t* p, V v, Mask m) {
    alignas(16) uint16_t t[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(t), round_bf16(v));
    const int n = mask_count(m);
    for (int i = 0; i < n; ++i) p[i] = t[i];
  }
  // As the AVX-512 ones (the kernels use them only with 16-lane vectors; kept for the shared API).
  static inline void load_eo(const uint16_t* p, V* even, V* odd) {
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(r, 16));
    *odd = _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static inline void store_eo(uint16_t* p, V even, V odd) {
    alignas(16) uint16_t e[8], o[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(e), round_bf16(even));
    _mm_store_si128(reinterpret_cast<__m128i*>(o), round_bf16(odd));
    for (int i = 0; i < 8; ++i) {
      p[2 * i] = e[i];
      p[2 * i + 1] = o[i];
    }
  }

  static inline void deinterleave2(V a, V b, V* even, V* odd) {
    // shuffle_ps works per 128-bit lane: [a0 a2 b0 b2 | a4 a6 b4 b6], then reorder the 64-bit pairs.
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
  static inline V shift_in1(V a, V b) {
    // [a4..a7 | b0..b3], then byte-align each 128-bit lane of that:a by 4 bytes.
    const V t = _mm256_permute2f128_ps(a, b, 0x21);
    return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(t), _mm256_castps_si256(a), 4));
  }
  static inline void zero_insert2(V a, V* lo, V* hi) {
    const V z = _mm256_setzero_ps();
    // unpack works per 128-bit lane: [a0 0 a1 0 | a4 0 a5 0] and [a2 0 a3 0 | a6 0 a7 0].
    const V u = _mm256_unpacklo_ps(a, z), w = _mm256_unpackhi_ps(a, z);
    *lo = _mm256_permute2f128_ps(u, w, 0x20);
    *hi = _mm256_permute2f128_ps(u, w, 0x31);
  }
  static inline float hsum(V v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
};
#else
#error "define DSCONV_VEC512 or DSCONV_VEC256 before including dw_simd_vec.h"
#endif

inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace
