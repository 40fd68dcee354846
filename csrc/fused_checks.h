// Argument checks and output memory format of dsconv::separable_conv2d, shared by the CPU
// (cpu/fused_cpu.cpp) and CUDA (cuda/fused_register.cpp) implementations.
#pragma once
#include "dw_checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>

namespace dsconv {

// Checks what check_forward_args (already run, giving p) does not: multiplier 1, pw_weight /
// pw_bias shapes, dtypes and devices, activation codes. Returns Cout.
int64_t check_separable_args(const at::Tensor& input, const at::Tensor& dw_weight,
                             const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                             const c10::optional<at::Tensor>& pw_bias, int64_t act, int64_t pw_act,
                             const DwParams& p);

// The composition's rule: the depthwise output is channels_last if input or dw_weight suggests
// it, the pointwise output if that or pw_weight does; activations keep the format.
at::MemoryFormat separable_memory_format(const at::Tensor& input, const at::Tensor& dw_weight,
                                         const at::Tensor& pw_weight);

}  // namespace dsconv
