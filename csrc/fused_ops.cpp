// Schemas of the fused depthwise-separable ops (a fragment of the `dsconv` library defined in
// ops.cpp). CPU kernels (and the `_separable_cpu_isa` helper): cpu/fused_cpu.cpp; fake kernel and autograd: dsconv_ext/_fused_fake.py,
// dsconv_ext/_fused_autograd.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dsconv, m) {
  // act(pw_weight @ act(depthwise(input, dw_weight) + dw_bias) + pw_bias), i.e. the composition
  //   F.conv2d(input, dw_weight, dw_bias, stride, padding, dilation, groups=C) -> act ->
  //   F.conv2d(., pw_weight, pw_bias) -> pw_act
  // without materialising the depthwise output. dw_weight (C, 1, kH, kW) (multiplier 1),
  // pw_weight (Cout, C, 1, 1); padding (top, bottom, left, right) as depthwise_conv2d's.
  // act / pw_act: 0 none, 1 relu, 2 relu6, 3 silu, 4 hardswish, 5 gelu (erf form).
  // Output (N, Cout, OH, OW), channels_last when input, dw_weight or pw_weight suggests it.
  m.def(
      "separable_conv2d(Tensor input, Tensor dw_weight, Tensor? dw_bias, Tensor pw_weight, Tensor? pw_bias, "
      "int[2] stride, int[4] padding, int[2] dilation, int act, int pw_act) -> Tensor");
}
