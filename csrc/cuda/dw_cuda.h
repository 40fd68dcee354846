// Host-side interface of the CUDA depthwise kernels: raw device pointers + DwParams + a stream.
// No torch headers here or in the .cu files (they compile fast); tensors are handled by
// register_cuda.cpp, which allocates outputs and any workspace from PyTorch's caching allocator.
//
// T is one of float, double, __half, __nv_bfloat16. Every launcher enqueues work on `stream`
// only (no host synchronisation, no allocation) and returns the first CUDA error it saw
// (cudaGetLastError after each launch), cudaSuccess otherwise.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "../dw_params.h"

namespace dsconv {
namespace cuda {

// Bytes of device scratch the forward needs (0 when none); `ws` must hold at least that many,
// aligned to 16 bytes.
template <typename T>
size_t forward_workspace_bytes(const DwParams& p);
template <typename T>
cudaError_t forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out, void* ws,
                    cudaStream_t stream);

// grad_input: p.in_* strides describe grad_input, p.out_* grad_output. Writes every element.
template <typename T>
size_t backward_input_workspace_bytes(const DwParams& p);
template <typename T>
cudaError_t backward_input(const DwParams& p, const T* grad_out, const T* w, T* grad_in, void* ws,
                           cudaStream_t stream);

// grad_weight (OC, KH*KW dense) and grad_bias (OC); either may be nullptr. Deterministic: a
// fixed-order reduction whose split depends only on the problem's sizes (no atomics).
template <typename T>
size_t backward_weight_workspace_bytes(const DwParams& p, bool need_w, bool need_b);
template <typename T>
cudaError_t backward_weight_bias(const DwParams& p, const T* grad_out, const T* in, T* grad_w, T* grad_b,
                                 void* ws, cudaStream_t stream);

}  // namespace cuda
}  // namespace dsconv
