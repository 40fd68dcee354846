// Autograd of dsconv::depthwise_conv2d in C++ (one kernel for CPU and CUDA: the Autograd alias key).
//
// Why C++ and not torch.library.register_autograd: on small layers the Python path cost more than
// the kernels' differences. The Python autograd.Function around the op (setup_context, the
// generated backward's checks, the Python backward) ran 0.45-1.1 ms per forward+backward above
// the two ops called directly (32x576x14x14 stride 2 and 32x1024x7x7 channels_last on the 2-core
// Intel Xeon VM, 2026-11-27; 3-4 ms layers), most of it interpreter code running with caches cold
// after the kernels streamed tens of MB; a plain Python autograd.Function cost about as much.
//
// The backward calls dsconv::depthwise_conv2d_backward through the dispatcher, so with
// create_graph=True it records that op's own autograd (registered from Python,
// dsconv_ext/_autograd.py): double backward works as before.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <vector>

namespace dsconv {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor call_forward(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dsconv::depthwise_conv2d", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                         at::IntArrayRef, at::IntArrayRef, at::IntArrayRef)>();
  return op.call(input, weight, bias, stride, padding, dilation);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> call_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                             const at::Tensor& weight, at::IntArrayRef stride,
                                                             at::IntArrayRef padding, at::IntArrayRef dilation,
                                                             std::array<bool, 3> mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("dsconv::depthwise_conv2d_backward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef, at::IntArrayRef,
                           at::IntArrayRef, std::array<bool, 3>)>();
  return op.call(grad_output, input, weight, stride, padding, dilation, mask);
}

struct DepthwiseConv2dFunction : public torch::autograd::Function<DepthwiseConv2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;  // the backend kernel, not this one again
      out = call_forward(input, weight, bias, stride, padding, dilation);
    }
    ctx->save_for_backward({input, weight});
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["stride"] = stride.vec();
    ctx->saved_data["padding"] = padding.vec();
    ctx->saved_data["dilation"] = dilation.vec();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // inputs: input, weight, bias, stride, padding, dilation
    const std::array<bool, 3> mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                      ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)};
    variable_list out(6);
    if (!(mask[0] || mask[1] || mask[2]) || !grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    const std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
    const std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
    auto [gi, gw, gb] = call_backward(grads[0], saved[0], saved[1], stride, padding, dilation, mask);
    // entries the mask left out come back as empty (0,) tensors: None for autograd
    if (mask[0]) out[0] = gi;
    if (mask[1]) out[1] = gw;
    if (mask[2]) out[2] = gb;
    return out;
  }
};

at::Tensor depthwise_conv2d_autograd(const at::Tensor& input, const at::Tensor& weight,
                                     const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                     at::IntArrayRef padding, at::IntArrayRef dilation) {
  return DepthwiseConv2dFunction::apply(input, weight, bias, stride, padding, dilation);
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, Autograd, m) { m.impl("depthwise_conv2d", &depthwise_conv2d_autograd); }

}  // namespace dsconv
