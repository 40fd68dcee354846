// Argument checks of dsconv::separable_conv2d shared by the CPU and CUDA implementations.
#include "fused_checks.h"

#include "cpu/fused_kernels.h"

namespace dsconv {

int64_t check_separable_args(const at::Tensor& input, const at::Tensor& dw_weight,
                             const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                             const c10::optional<at::Tensor>& pw_bias, int64_t act, int64_t pw_act,
                             const DwParams& p) {
  TORCH_CHECK(p.M == 1, "dsconv: separable_conv2d needs a depthwise weight of shape (C, 1, kH, kW) = (", p.C,
              ", 1, kH, kW) (channel multiplier 1), got ", dw_weight.sizes());
  TORCH_CHECK(pw_weight.dim() == 4 && pw_weight.size(1) == p.C && pw_weight.size(2) == 1 && pw_weight.size(3) == 1,
              "dsconv: pw_weight must have shape (Cout, ", p.C, ", 1, 1) to match the input's ", p.C,
              " channels, got ", pw_weight.sizes());
  const int64_t Cout = pw_weight.size(0);
  TORCH_CHECK(Cout > 0, "dsconv: pw_weight has 0 output channels");
  TORCH_CHECK(pw_weight.scalar_type() == input.scalar_type(), "dsconv: input dtype (", input.scalar_type(),
              ") and pw_weight dtype (", pw_weight.scalar_type(), ") should be the same");
  TORCH_CHECK(pw_weight.device() == input.device(), "dsconv: input is on ", input.device(),
              " but pw_weight is on ", pw_weight.device(), "; they must be on the same device");
  if (pw_bias.has_value() && pw_bias->defined()) {
    TORCH_CHECK(pw_bias->dim() == 1 && pw_bias->size(0) == Cout, "dsconv: pw_bias must have shape (", Cout,
                ",) to match pw_weight's output channels, got ", pw_bias->sizes());
    TORCH_CHECK(pw_bias->scalar_type() == input.scalar_type(), "dsconv: input dtype (", input.scalar_type(),
                ") and pw_bias dtype (", pw_bias->scalar_type(), ") should be the same");
    TORCH_CHECK(pw_bias->device() == input.device(), "dsconv: input is on ", input.device(),
                " but pw_bias is on ", pw_bias->device(), "; they must be on the same device");
  }
  (void)dw_bias;  // checked by check_forward_args
  TORCH_CHECK(act >= 0 && act < cpu::fused::kNumActs, "dsconv: act code ", act,
              " is not one of 0 (none), 1 (relu), 2 (relu6), 3 (silu), 4 (hardswish), 5 (gelu)");
  TORCH_CHECK(pw_act >= 0 && pw_act < cpu::fused::kNumActs, "dsconv: pw_act code ", pw_act,
              " is not one of 0 (none), 1 (relu), 2 (relu6), 3 (silu), 4 (hardswish), 5 (gelu)");
  return Cout;
}

at::MemoryFormat separable_memory_format(const at::Tensor& input, const at::Tensor& dw_weight,
                                         const at::Tensor& pw_weight) {
  if (output_memory_format(input, dw_weight) == at::MemoryFormat::ChannelsLast ||
      pw_weight.suggest_memory_format() == at::MemoryFormat::ChannelsLast)
    return at::MemoryFormat::ChannelsLast;
  return at::MemoryFormat::Contiguous;
}

}  // namespace dsconv
