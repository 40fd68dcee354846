// AVX-512 (F/BW/VL/DQ) instantiation of the hand-written kernels in dw_simd_impl.h.
// Library headers come first, outside the target region, so that only this file's own code
// (internal linkage) is compiled for AVX-512; dw_simd_dispatch.cpp calls it only on CPUs that
// report these features.
#include "dw_simd_isa.h"

#if DSCONV_SIMD_X86
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

#pragma GCC push_options
// GCC 12 reports its own _mm512_undefined_* helpers as (maybe-)uninitialized: a false positive
// (the flat-plane kernels' bfloat16 stores inline them deep enough to get the definite form).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2,popcnt")
#define DSCONV_VEC512 1
#define DSCONV_SIMD_NS avx512
#include "dw_simd_vec.h"
#include "dw_simd_impl.h"
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
