#include "dw_checks.h"

#include <c10/util/Exception.h>

namespace dsconv {
namespace {

void check_int_list(c10::IntArrayRef v, size_t n, const char* name) {
  TORCH_CHECK(v.size() == n, "dsconv: expected ", name, " to have ", n, " values, got ", v.size());
}

void check_supported_dtype(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kBFloat16 || s == at::kHalf,
              "dsconv: ", name, " has dtype ", s,
              "; supported dtypes are float32, float64, bfloat16 and float16");
}

}  // namespace

DwParams check_forward_args(const at::Tensor& input, const at::Tensor& weight,
                            const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                            c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  check_int_list(stride, 2, "stride");
  check_int_list(padding, 4, "padding (top, bottom, left, right)");
  check_int_list(dilation, 2, "dilation");
  TORCH_CHECK(input.dim() == 4, "dsconv: expected a 4-D input (N, C, H, W), got a ", input.dim(),
              "-D tensor of shape ", input.sizes());
  TORCH_CHECK(weight.dim() == 4, "dsconv: expected a 4-D weight (C*multiplier, 1, kH, kW), got a ",
              weight.dim(), "-D tensor of shape ", weight.sizes());
  check_supported_dtype(input, "input");
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(), "dsconv: input dtype (",
              input.scalar_type(), ") and weight dtype (", weight.scalar_type(), ") should be the same");
  TORCH_CHECK(weight.device() == input.device(), "dsconv: input is on ", input.device(),
              " but weight is on ", weight.device(), "; they must be on the same device");

  const int64_t C = input.size(1);
  TORCH_CHECK(C > 0, "dsconv: input has 0 channels; a depthwise convolution needs at least one");
  TORCH_CHECK(weight.size(1) == 1, "dsconv: depthwise weight must have shape (C*multiplier, 1, kH, kW), got ",
              weight.sizes(), " (dimension 1 must be 1)");
  const int64_t OC = weight.size(0);
  TORCH_CHECK(OC > 0 && OC % C == 0, "dsconv: weight has ", OC,
              " output channels, which is not a positive multiple of the input's ", C, " channels");
  TORCH_CHECK(weight.size(2) > 0 && weight.size(3) > 0, "dsconv: weight has an empty kernel ",
              weight.sizes());
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == OC, "dsconv: bias must have shape (", OC,
                ",) to match the weight's output channels, got ", bias->sizes());
    TORCH_CHECK(bias->scalar_type() == input.scalar_type(), "dsconv: input dtype (",
                input.scalar_type(), ") and bias dtype (", bias->scalar_type(), ") should be the same");
    TORCH_CHECK(bias->device() == input.device(), "dsconv: input is on ", input.device(),
                " but bias is on ", bias->device(), "; they must be on the same device");
  }
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(stride[i] > 0, "dsconv: stride must be positive, got ", stride);
    TORCH_CHECK(dilation[i] > 0, "dsconv: dilation must be positive, got ", dilation);
  }
  for (int i = 0; i < 4; ++i)
    TORCH_CHECK(padding[i] >= 0, "dsconv: padding must be non-negative, got ", padding);

  DwParams p{};
  p.N = input.size(0);
  p.C = C;
  p.M = OC / C;
  p.H = input.size(2);
  p.W = input.size(3);
  p.KH = weight.size(2);
  p.KW = weight.size(3);
  p.stride_h = stride[0];
  p.stride_w = stride[1];
  p.pad_t = padding[0];
  p.pad_l = padding[2];
  p.dil_h = dilation[0];
  p.dil_w = dilation[1];
  const int64_t padded_h = p.H + padding[0] + padding[1];
  const int64_t padded_w = p.W + padding[2] + padding[3];
  const int64_t eff_kh = p.dil_h * (p.KH - 1) + 1;
  const int64_t eff_kw = p.dil_w * (p.KW - 1) + 1;
  TORCH_CHECK(padded_h >= eff_kh && padded_w >= eff_kw, "dsconv: padded input size (", padded_h,
              " x ", padded_w, ") is smaller than the dilated kernel (", eff_kh, " x ", eff_kw,
              "); the kernel can't be larger than the padded input");
  // As F.conv2d: an input with H or W = 0 is only accepted with a zero batch, even where the
  // padding would give a non-empty output (zero channels are refused above).
  TORCH_CHECK(p.N == 0 || (p.H > 0 && p.W > 0), "dsconv: input of shape ", input.sizes(),
              " has an empty spatial dimension; as F.conv2d, only a zero batch is supported with H or W = 0");
  p.OH = (padded_h - eff_kh) / p.stride_h + 1;
  p.OW = (padded_w - eff_kw) / p.stride_w + 1;
  return p;
}

DwParams check_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                             const at::Tensor& weight, c10::IntArrayRef stride,
                             c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  DwParams p = check_forward_args(input, weight, c10::nullopt, stride, padding, dilation);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == p.N && grad_output.size(1) == p.OC() &&
                  grad_output.size(2) == p.OH && grad_output.size(3) == p.OW,
              "dsconv: grad_output has shape ", grad_output.sizes(), " but the forward output has shape [",
              p.N, ", ", p.OC(), ", ", p.OH, ", ", p.OW, "]");
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(), "dsconv: grad_output dtype (",
              grad_output.scalar_type(), ") and input dtype (", input.scalar_type(), ") should be the same");
  TORCH_CHECK(grad_output.device() == input.device(), "dsconv: grad_output is on ",
              grad_output.device(), " but input is on ", input.device());
  return p;
}

at::MemoryFormat output_memory_format(const at::Tensor& input, const at::Tensor& weight) {
  if (input.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
      weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast)
    return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

void fill_in_strides(DwParams& p, const at::Tensor& t) {
  p.in_sn = t.stride(0);
  p.in_sc = t.stride(1);
  p.in_sh = t.stride(2);
  p.in_sw = t.stride(3);
}

void fill_out_strides(DwParams& p, const at::Tensor& t) {
  p.out_sn = t.stride(0);
  p.out_sc = t.stride(1);
  p.out_sh = t.stride(2);
  p.out_sw = t.stride(3);
}

}  // namespace dsconv
