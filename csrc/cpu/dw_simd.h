// Dispatch point for the hand-vectorised CPU kernels (AVX-512 / AVX2).
//
// Each function returns true when it handled the problem, false when the generic kernels in
// dw_generic_cpu.cpp must run instead (unsupported dtype, ISA, or shape). The generic kernels are
// the always-correct fallback; SIMD paths are optional accelerations of them.
#pragma once
#include "../dw_params.h"

namespace dsconv {
namespace cpu {
namespace simd {

template <typename T>
bool forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out);

template <typename T>
bool backward_input(const DwParams& p, const T* grad_out, const T* w, T* grad_in);

template <typename T>
bool backward_weight_bias(const DwParams& p, const T* grad_out, const T* in, T* grad_w, T* grad_b);

}  // namespace simd
}  // namespace cpu
}  // namespace dsconv
