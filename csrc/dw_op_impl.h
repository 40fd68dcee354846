// Backend-independent bodies of the dsconv ops: check arguments, allocate outputs in PyTorch's
// memory format (large CPU outputs from the output pool, cpu/output_pool.h), describe the tensors with DwParams and call a backend's kernels.
//
// K is a backend: a struct with static templates
//   K::forward<T>(p, in, w, bias, out)
//   K::backward_input<T>(p, grad_out, w, grad_in)
//   K::backward_weight_bias<T>(p, grad_out, in, grad_w, grad_b)   (either output may be nullptr)
//   K::backward_all<T>(pi, pw, grad_out, in, w, grad_in, grad_w, grad_b) -> bool: both gradients in
//     one pass where the backend has one (grad_w or grad_b may be nullptr), false otherwise
// taking c10 scalar types (float, double, c10::Half, c10::BFloat16). Inputs are read in place
// with their own strides (no layout copies); the weight is made dense (it is tiny).
#pragma once
#include "cpu/output_pool.h"
#include "dw_checks.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <tuple>

namespace dsconv {

template <class K>
at::Tensor forward_impl(const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                        c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  DwParams p = check_forward_args(input, weight, bias, stride, padding, dilation);
  at::Tensor out = empty_output({p.N, p.OC(), p.OH, p.OW},
                                input.options().memory_format(output_memory_format(input, weight)));
  if (out.numel() == 0) return out;
  const at::Tensor w = weight.contiguous();
  const at::Tensor b = (bias.has_value() && bias->defined()) ? bias->contiguous() : at::Tensor();
  fill_in_strides(p, input);
  fill_out_strides(p, out);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "dsconv::depthwise_conv2d", [&] {
    K::template forward<scalar_t>(p, input.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                                  b.defined() ? b.const_data_ptr<scalar_t>() : nullptr,
                                  out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

template <class K>
std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_impl(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation,
    std::array<bool, 3> mask) {
  const DwParams p = check_backward_args(grad_output, input, weight, stride, padding, dilation);
  const auto opts = input.options();
  at::Tensor gi = at::empty({0}, opts), gw = at::empty({0}, opts), gb = at::empty({0}, opts);
  // grad_input takes the output's memory format, as nn.Conv2d's does.
  const auto gi_opts = opts.memory_format(output_memory_format(input, weight));
  if (grad_output.numel() == 0) {  // nothing flows back: all gradients are zero
    if (mask[0]) gi = at::zeros(input.sizes(), gi_opts);
    if (mask[1]) gw = at::zeros(weight.sizes(), opts);
    if (mask[2]) gb = at::zeros({p.OC()}, opts);
    return {gi, gw, gb};
  }
  if (mask[0]) gi = empty_output(input.sizes(), gi_opts);
  if (mask[1]) gw = at::empty(weight.sizes(), opts);
  if (mask[2]) gb = at::empty({p.OC()}, opts);
  const at::Tensor w = weight.contiguous();
  // qi: grad input's strides (in_*) and grad_output's; qw: the input's and grad_output's
  DwParams qi = p, qw = p;
  if (mask[0]) {
    fill_in_strides(qi, gi);
    fill_out_strides(qi, grad_output);
  }
  if (mask[1] || mask[2]) {
    fill_in_strides(qw, input);
    fill_out_strides(qw, grad_output);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "dsconv::depthwise_conv2d_backward", [&] {
    const scalar_t* go = grad_output.const_data_ptr<scalar_t>();
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.const_data_ptr<scalar_t>();
    scalar_t* gwp = mask[1] ? gw.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gbp = mask[2] ? gb.mutable_data_ptr<scalar_t>() : nullptr;
    // both in one pass over grad_output where the backend has a kernel for it
    if (mask[0] && (mask[1] || mask[2]) &&
        K::template backward_all<scalar_t>(qi, qw, go, in, wp, gi.mutable_data_ptr<scalar_t>(), gwp, gbp))
      return;
    if (mask[0]) K::template backward_input<scalar_t>(qi, go, wp, gi.mutable_data_ptr<scalar_t>());
    if (mask[1] || mask[2]) K::template backward_weight_bias<scalar_t>(qw, go, in, gwp, gbp);
  });
  return {gi, gw, gb};
}

}  // namespace dsconv
