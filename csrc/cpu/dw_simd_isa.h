// Entry points of the per-ISA kernel files (dw_simd_avx512.cpp, dw_simd_avx2.cpp), called only
// by dw_simd_dispatch.cpp after it has checked the CPU features. Plain pointers and a dtype tag
// so that the ISA files need no c10 scalar types.
#pragma once
#include "../dw_params.h"

// x86-64 with GCC: the ISA files compile their kernels with #pragma GCC target. Elsewhere
// (aarch64, other compilers) they compile to nothing and every problem takes the generic path.
// -DDSCONV_SIMD_X86=0 forces that configuration.
#ifndef DSCONV_SIMD_X86
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DSCONV_SIMD_X86 1
#else
#define DSCONV_SIMD_X86 0
#endif
#endif

namespace dsconv {
namespace cpu {
namespace simd {

enum class Dt : int { f32 = 0, bf16 = 1 };

#define DSCONV_SIMD_DECLARE(ns)                                                                        \
  namespace ns {                                                                                       \
  bool forward(const DwParams& p, Dt dt, const void* in, const void* w, const void* b, void* out);     \
  bool backward_input(const DwParams& p, Dt dt, const void* gout, const void* w, void* gin);           \
  bool backward_weight_bias(const DwParams& p, Dt dt, const void* gout, const void* in, void* gw,      \
                            void* gb);                                                                 \
  bool backward_all(const DwParams& pi, const DwParams& pw, Dt dt, const void* gout, const void* in,       \
                    const void* w, void* gin, void* gw, void* gb);                                     \
  }
#if DSCONV_SIMD_X86
DSCONV_SIMD_DECLARE(avx512)
DSCONV_SIMD_DECLARE(avx2)
#endif
#undef DSCONV_SIMD_DECLARE

}  // namespace simd
}  // namespace cpu
}  // namespace dsconv
