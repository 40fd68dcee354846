// Dispatch point for the hand-vectorised CPU kernels (AVX-512 / AVX2).
//
// Each function returns true when it handled the problem, false when the generic kernels in
// dw_generic_cpu.cpp must run instead (unsupported dtype, ISA, or shape). The generic kernels are
// the always-correct fallback; SIMD paths are optional accelerations of them.
//
// The instruction set is chosen once, at the first call, from the CPU's features, unless the
// environment variable DSCONV_CPU_ISA says otherwise (avx512, avx2, generic; auto or unset =
// the best the CPU supports). set_isa changes it at run time (tests use it through the
// dsconv::_set_cpu_isa op).
#pragma once
#include "../dw_params.h"

#include <string>

namespace dsconv {
namespace cpu {
namespace simd {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

Isa active_isa();                 // resolves DSCONV_CPU_ISA / CPU features on first use
Isa best_supported_isa();         // what this CPU (and this build) can run
const char* isa_name(Isa isa);
Isa parse_isa(const std::string& name);  // "auto" -> best_supported_isa(); throws on bad names
void set_isa(Isa isa);            // throws when the CPU can't run it

template <typename T>
bool forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out);

template <typename T>
bool backward_input(const DwParams& p, const T* grad_out, const T* w, T* grad_in);

template <typename T>
bool backward_weight_bias(const DwParams& p, const T* grad_out, const T* in, T* grad_w, T* grad_b);

// Grad input and grad weight / bias in one pass (pi: strides of grad_in and grad_out, pw: of in
// and grad_out; grad_w or grad_b may be nullptr, grad_in may not). False: run the two separately.
template <typename T>
bool backward_all(const DwParams& pi, const DwParams& pw, const T* grad_out, const T* in, const T* w, T* grad_in,
                  T* grad_w, T* grad_b);

}  // namespace simd
}  // namespace cpu
}  // namespace dsconv
