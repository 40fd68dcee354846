// No SIMD kernels yet: every problem goes to the generic kernels.
#include "dw_simd.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

namespace dsconv {
namespace cpu {
namespace simd {

template <typename T>
bool forward(const DwParams&, const T*, const T*, const T*, T*) { return false; }
template <typename T>
bool backward_input(const DwParams&, const T*, const T*, T*) { return false; }
template <typename T>
bool backward_weight_bias(const DwParams&, const T*, const T*, T*, T*) { return false; }

#define DSCONV_INSTANTIATE(T)                                                          \
  template bool forward<T>(const DwParams&, const T*, const T*, const T*, T*);         \
  template bool backward_input<T>(const DwParams&, const T*, const T*, T*);            \
  template bool backward_weight_bias<T>(const DwParams&, const T*, const T*, T*, T*);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(double)
DSCONV_INSTANTIATE(c10::BFloat16)
DSCONV_INSTANTIATE(c10::Half)
#undef DSCONV_INSTANTIATE

}  // namespace simd
}  // namespace cpu
}  // namespace dsconv
