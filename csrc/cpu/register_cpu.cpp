// CPU implementations of the dsconv ops: the shared op bodies (dw_op_impl.h) over the CPU kernels.
#include "../dw_op_impl.h"
#include "dw_cpu_kernels.h"

#include <torch/library.h>

namespace dsconv {
namespace {

struct CpuKernels {
  template <typename T>
  static void forward(const DwParams& p, const T* in, const T* w, const T* b, T* out) {
    cpu::forward<T>(p, in, w, b, out);
  }
  template <typename T>
  static void backward_input(const DwParams& p, const T* go, const T* w, T* gi) {
    cpu::backward_input<T>(p, go, w, gi);
  }
  template <typename T>
  static void backward_weight_bias(const DwParams& p, const T* go, const T* in, T* gw, T* gb) {
    cpu::backward_weight_bias<T>(p, go, in, gw, gb);
  }
  template <typename T>
  static bool backward_all(const DwParams& pi, const DwParams& pw, const T* go, const T* in, const T* w, T* gi, T* gw,
                           T* gb) {
    return cpu::backward_all<T>(pi, pw, go, in, w, gi, gw, gb);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) {
  m.impl("depthwise_conv2d", &forward_impl<CpuKernels>);
  m.impl("depthwise_conv2d_backward", &backward_impl<CpuKernels>);
}

}  // namespace dsconv
