// Argument checking and DwParams construction shared by every backend's op implementation.
// Messages name the problem so that a user sees a clear RuntimeError, never a crash.
#pragma once
#include "dw_params.h"

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Optional.h>

namespace dsconv {

// Validates the forward arguments and returns the problem's geometry (sizes, stride, padding,
// dilation). Tensor strides in the result are left zero: the caller fills them (fill_strides).
DwParams check_forward_args(const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                            c10::IntArrayRef padding, c10::IntArrayRef dilation);

// Same checks for the backward op, plus grad_output's shape, dtype and device.
DwParams check_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& weight, c10::IntArrayRef stride,
                             c10::IntArrayRef padding, c10::IntArrayRef dilation);

// PyTorch's rule for convolution outputs: channels_last when the input or the weight suggests it.
at::MemoryFormat output_memory_format(const at::Tensor& input, const at::Tensor& weight);

// Copies a 4-D tensor's strides into the "in" or "out" stride fields of p.
void fill_in_strides(DwParams& p, const at::Tensor& t);
void fill_out_strides(DwParams& p, const at::Tensor& t);

}  // namespace dsconv
