// CPU depthwise kernels: raw pointers + DwParams, no tensor handling (that lives in register_cpu.cpp).
#pragma once
#include "../dw_params.h"

namespace dsconv {
namespace cpu {

// out (OC planes, any strides) = depthwise conv of in with w (OC, KH*KW dense) plus optional bias.
template <typename T>
void forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out);

// grad_input (strides p.in_*) from grad_output (strides p.out_*) and w. Writes every element.
template <typename T>
void backward_input(const DwParams& p, const T* grad_out, const T* w, T* grad_in);

// grad_weight (OC, KH*KW dense) and, when grad_bias != nullptr, grad_bias (OC), in one pass.
// Either output may be nullptr. Reduction order is fixed by the problem, never by the thread count.
template <typename T>
void backward_weight_bias(const DwParams& p, const T* grad_out, const T* in, T* grad_w, T* grad_b);

// Both of the above in one pass where a SIMD kernel does that (pi: the strides backward_input
// takes, pw: backward_weight_bias's); false: call them separately.
template <typename T>
bool backward_all(const DwParams& pi, const DwParams& pw, const T* grad_out, const T* in, const T* w, T* grad_in,
                  T* grad_w, T* grad_b);

}  // namespace cpu
}  // namespace dsconv
