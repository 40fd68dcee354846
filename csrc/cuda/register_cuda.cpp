// CUDA implementations of the dsconv ops: the shared op bodies (dw_op_impl.h) over the CUDA
// kernels (dw_cuda.h). Tensor handling lives here; the .cu files see raw pointers only.
//
// Every op runs under a device guard for its input's device, launches on that device's current
// stream without synchronising, and takes any scratch memory from PyTorch's caching allocator
// (stream-ordered and CUDA-graph-capture safe). Launch errors become RuntimeErrors.
#include "../dw_op_impl.h"
#include "dw_cuda.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

namespace dsconv {
namespace {

// c10 scalar types -> the CUDA types the kernels are instantiated for (same bit layout).
template <typename T>
struct DevType {
  using type = T;
};
template <>
struct DevType<c10::Half> {
  using type = __half;
};
template <>
struct DevType<c10::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
using dev_t = typename DevType<T>::type;

template <typename T>
const dev_t<T>* dev(const T* p) {
  return reinterpret_cast<const dev_t<T>*>(p);
}
template <typename T>
dev_t<T>* dev(T* p) {
  return reinterpret_cast<dev_t<T>*>(p);
}

// Scratch on the current device (the op's guard made it the input's device).
at::Tensor workspace(size_t bytes) {
  if (bytes == 0) return at::Tensor();
  return at::empty({static_cast<int64_t>(bytes)},
                   at::TensorOptions().dtype(at::kByte).device(at::kCUDA, c10::cuda::current_device()));
}

void* ws_ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

void check(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "dsconv: CUDA ", what, " kernel failed: ", cudaGetErrorString(err));
}

struct CudaKernels {
  template <typename T>
  static void forward(const DwParams& p, const T* in, const T* w, const T* b, T* out) {
    const at::Tensor ws = workspace(cuda::forward_workspace_bytes<dev_t<T>>(p));
    check(cuda::forward<dev_t<T>>(p, dev(in), dev(w), b ? dev(b) : nullptr, dev(out), ws_ptr(ws),
                                  c10::cuda::getCurrentCUDAStream()),
          "forward");
  }
  template <typename T>
  static void backward_input(const DwParams& p, const T* go, const T* w, T* gi) {
    const at::Tensor ws = workspace(cuda::backward_input_workspace_bytes<dev_t<T>>(p));
    check(cuda::backward_input<dev_t<T>>(p, dev(go), dev(w), dev(gi), ws_ptr(ws),
                                         c10::cuda::getCurrentCUDAStream()),
          "grad input");
  }
  template <typename T>
  static void backward_weight_bias(const DwParams& p, const T* go, const T* in, T* gw, T* gb) {
    if (gw == nullptr && gb == nullptr) return;
    const at::Tensor ws =
        workspace(cuda::backward_weight_workspace_bytes<dev_t<T>>(p, gw != nullptr, gb != nullptr));
    check(cuda::backward_weight_bias<dev_t<T>>(p, dev(go), dev(in), gw ? dev(gw) : nullptr,
                                               gb ? dev(gb) : nullptr, ws_ptr(ws),
                                               c10::cuda::getCurrentCUDAStream()),
          "grad weight");
  }
  // no single-pass backward on CUDA: backward_impl runs the two kernels above
  template <typename T>
  static bool backward_all(const DwParams&, const DwParams&, const T*, const T*, const T*, T*, T*, T*) {
    return false;
  }
};

// The guard goes on the input's device; when the input is not a CUDA tensor the shared checks
// report the device mismatch.
at::Tensor forward_cuda(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  c10::cuda::OptionalCUDAGuard guard;
  if (input.is_cuda()) guard.set_device(input.device());
  return forward_impl<CudaKernels>(input, weight, bias, stride, padding, dilation);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_output,
                                                             const at::Tensor& input, const at::Tensor& weight,
                                                             c10::IntArrayRef stride, c10::IntArrayRef padding,
                                                             c10::IntArrayRef dilation, std::array<bool, 3> mask) {
  c10::cuda::OptionalCUDAGuard guard;
  if (input.is_cuda()) guard.set_device(input.device());
  return backward_impl<CudaKernels>(grad_output, input, weight, stride, padding, dilation, mask);
}

}  // namespace

// The CUDA depthwise forward for other CUDA op implementations (fused_register.cpp's fallback).
at::Tensor depthwise_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                 c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  return forward_cuda(input, weight, bias, stride, padding, dilation);
}

TORCH_LIBRARY_IMPL(dsconv, CUDA, m) {
  m.impl("depthwise_conv2d", &forward_cuda);
  m.impl("depthwise_conv2d_backward", &backward_cuda);
}

}  // namespace dsconv
