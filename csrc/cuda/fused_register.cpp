// CUDA implementation of dsconv::separable_conv2d (schema in ../fused_ops.cpp): argument checks
// (shared with the CPU), output allocation, weight conversion, and the choice between
//   - the fused kernel (fused_cuda.h): float32 / float16 / bfloat16, kernels of at most 64 taps
//     (every 3x3 / 5x5 / 7x7 layer, any stride / dilation / padding / input strides), and
//   - the composition: dsconv's CUDA depthwise kernel -> activation -> at::conv2d 1x1 (cuDNN)
//     -> activation, for float64, larger kernels and sizes beyond the fused kernel's int math.
// Autograd (recompute in the backward) and the fake kernel are registered in Python for every
// device (dsconv_ext/_fused_autograd.py, _fused_fake.py), so this is the only CUDA op needed.
//
// Environment (read per call, for tests and benchmarks): DSCONV_FUSED_CUDA=0 forces the
// composition; DSCONV_FUSED_NF=<1..8> forces the fp16/bf16 output-channel tile, DSCONV_FUSED_TILE=0
// the band mode and =<R> the tile mode's rows per block (see fused_plan), DSCONV_FUSED_STAGE=2 the
// tile mode's staging loop instead of the cp.async pipeline.
#include "../fused_checks.h"
#include "fused_cuda.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/hardswish.h>
#include <ATen/ops/hardtanh.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/silu.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

namespace dsconv {

at::Tensor depthwise_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bias, c10::IntArrayRef stride,
                                 c10::IntArrayRef padding, c10::IntArrayRef dilation);

namespace {

void act_inplace(at::Tensor& t, int64_t act) {
  switch (act) {
    case 1: at::relu_(t); break;
    case 2: at::hardtanh_(t, 0.0, 6.0); break;
    case 3: at::silu_(t); break;
    case 4:
      // at::hardswish_ on CUDA rounds 1/6 to float32 even for float64 (relative error 3e-8):
      // float64 takes the exact x * clamp(x + 3, 0, 6) / 6.
      if (t.scalar_type() == at::kDouble)
        t.mul_(t.add(3).clamp_(0, 6)).div_(6);
      else
        at::hardswish_(t);
      break;
    case 5: at::gelu_(t); break;
    default: break;
  }
}

bool fused_disabled() {
  const char* e = std::getenv("DSCONV_FUSED_CUDA");
  return e && std::strcmp(e, "0") == 0;
}

int env_int(const char* name, int dflt) {
  const char* e = std::getenv(name);
  return (e && *e) ? std::atoi(e) : dflt;
}

// A device attribute of the current device, cached per device (fallback when unavailable).
template <cudaDeviceAttr kAttr>
int64_t device_attr(int fallback) {
  static int cache[64] = {0};
  const int dev = c10::cuda::current_device();
  if (dev < 0 || dev >= 64) return fallback;
  if (cache[dev] == 0) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, kAttr, dev) != cudaSuccess || v <= 0) {
      (void)cudaGetLastError();
      v = fallback;
    }
    cache[dev] = v;
  }
  return cache[dev];
}

// Streaming multiprocessors.
int64_t sm_count() { return device_attr<cudaDevAttrMultiProcessorCount>(132); }

// Shared memory per block with opt-in: plans past it would fail to launch (smaller on GPUs other
// than Hopper).
int64_t smem_optin() { return device_attr<cudaDevAttrMaxSharedMemoryPerBlockOptin>(48 * 1024); }

at::Tensor composition(const at::Tensor& input, const at::Tensor& dw_weight, const c10::optional<at::Tensor>& dw_bias,
                       const at::Tensor& pw_weight, const c10::optional<at::Tensor>& pw_bias,
                       c10::IntArrayRef stride, c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t act,
                       int64_t pw_act, at::MemoryFormat fmt) {
  at::Tensor y = depthwise_conv2d_cuda(input, dw_weight, dw_bias, stride, padding, dilation);
  act_inplace(y, act);
  at::Tensor out = at::conv2d(y, pw_weight, pw_bias);
  act_inplace(out, pw_act);
  return out.contiguous(fmt);
}

template <typename T>
void launch_fused(const cuda::FusedArgs& a) {
  const cudaError_t err = cuda::fused_forward<T>(a, c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "dsconv: CUDA fused separable kernel failed: ", cudaGetErrorString(err));
}

at::Tensor separable_conv2d_cuda(const at::Tensor& input, const at::Tensor& dw_weight,
                                 const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                 const c10::optional<at::Tensor>& pw_bias, c10::IntArrayRef stride,
                                 c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t act, int64_t pw_act) {
  c10::cuda::OptionalCUDAGuard guard;
  if (input.is_cuda()) guard.set_device(input.device());
  DwParams p = check_forward_args(input, dw_weight, dw_bias, stride, padding, dilation);
  const int64_t Cout = check_separable_args(input, dw_weight, dw_bias, pw_weight, pw_bias, act, pw_act, p);
  const at::MemoryFormat fmt = separable_memory_format(input, dw_weight, pw_weight);
  const auto dtype = input.scalar_type();
  if (dtype == at::kDouble || !cuda::fused_supported(p, Cout) || fused_disabled())
    return composition(input, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation, act, pw_act, fmt);

  at::Tensor out = at::empty({p.N, Cout, p.OH, p.OW}, input.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  fill_in_strides(p, input);
  fill_out_strides(p, out);
  // Small weights: depthwise weights and both biases as float, pointwise weights dense in T.
  const at::Tensor wd = dw_weight.to(at::kFloat).contiguous();
  const at::Tensor wp = pw_weight.contiguous();
  const at::Tensor bd = (dw_bias.has_value() && dw_bias->defined()) ? dw_bias->to(at::kFloat).contiguous() : at::Tensor();
  const at::Tensor bp = (pw_bias.has_value() && pw_bias->defined()) ? pw_bias->to(at::kFloat).contiguous() : at::Tensor();

  cuda::FusedArgs a{};
  a.C = static_cast<int>(p.C), a.Cout = static_cast<int>(Cout);
  a.H = static_cast<int>(p.H), a.W = static_cast<int>(p.W);
  a.OH = static_cast<int>(p.OH), a.OW = static_cast<int>(p.OW);
  a.KH = static_cast<int>(p.KH), a.KW = static_cast<int>(p.KW), a.taps = static_cast<int>(p.taps());
  a.S_h = static_cast<int>(p.stride_h), a.S_w = static_cast<int>(p.stride_w);
  a.dil_h = static_cast<int>(p.dil_h), a.dil_w = static_cast<int>(p.dil_w);
  a.pad_t = static_cast<int>(p.pad_t), a.pad_l = static_cast<int>(p.pad_l);
  a.in_sn = p.in_sn, a.in_sc = p.in_sc, a.in_sh = p.in_sh, a.in_sw = p.in_sw;
  // The output is dense over (oh, ow) in both formats: pixel q = oh*OW + ow at q * out_sw.
  TORCH_INTERNAL_ASSERT(p.OH == 1 || p.out_sh == p.OW * p.out_sw);
  a.out_sn = p.out_sn, a.out_sc = p.out_sc, a.out_sq = p.out_sw;
  a.chan_inner = (p.in_sc == 1 && p.C > 1) ? 1 : 0;
  a.out_cl = fmt == at::MemoryFormat::ChannelsLast ? 1 : 0;
  a.act = static_cast<int>(act), a.pw_act = static_cast<int>(pw_act);
  a.in = input.const_data_ptr();
  a.out = out.mutable_data_ptr();
  a.dw_w = wd.const_data_ptr<float>();
  a.dw_b = bd.defined() ? bd.const_data_ptr<float>() : nullptr;
  a.pw_w = wp.const_data_ptr();
  a.pw_b = bp.defined() ? bp.const_data_ptr<float>() : nullptr;
  // DSCONV_FUSED_NF=<1..8> forces the fp16/bf16 N tile (32 * nf output channels), for tuning;
  // DSCONV_FUSED_TILE=0 forces the band mode, =<R> caps the tile mode's rows per block.
  // Tile mode's staging (DSCONV_FUSED_STAGE, for tuning): 3 (default) the cp.async pipeline
  // where its alignment holds (fused_pipe_plan; 16-bit only), else the staging loop; 2 the
  // staging loop everywhere. The pipeline's automatic plan (tile_mode -2) also takes 3x3 tiles on
  // maps up to 64 wide and at stride 2. H200, 2026-11-26 (fp16, batch 16, ms, band or
  // staging-loop tile -> pipeline): 576->96 14x14 0.194 -> 0.123 NCHW, 0.118 -> 0.080
  // channels_last; 256->256 28x28 0.150 -> 0.101, 0.120 -> 0.089; 144->24 56x56 0.203 -> 0.157,
  // 0.158 -> 0.132; 144->32 stride 2 0.090 -> 0.071, 0.109 -> 0.101
  // (bench/results/gpu-h200-2026-11-26-c.md).
  const int stage = env_int("DSCONV_FUSED_STAGE", 3);
  const int tile_env = env_int("DSCONV_FUSED_TILE", -1);
  const bool try_pipe = stage == 3 && dtype != at::kFloat;
  const auto plan = [&](int tile_mode) {
    cuda::fused_plan(a, p.N, static_cast<int>(input.element_size()), 2 * sm_count(), env_int("DSCONV_FUSED_NF", 0),
                     tile_mode, sm_count(), smem_optin());
  };
  plan(try_pipe && tile_env < 0 ? -2 : tile_env);
  a.pipe = 0;
  if (try_pipe) {
    cuda::fused_pipe_plan(a, smem_optin());
    if (!a.pipe && tile_env < 0) plan(-1);  // no pipeline here: the staging loops' own choice
    // DSCONV_FUSED_NFMAX=1: the pipeline kernel with as few accumulators as nf needs (2 / 4 / 8;
    // compiles, not yet run on a GPU), to measure against the default 8.
    a.pipe_nfm = 8;
    if (a.pipe && env_int("DSCONV_FUSED_NFMAX", 0) == 1) a.pipe_nfm = a.nf <= 2 ? 2 : a.nf <= 4 ? 4 : 8;
  }
  switch (dtype) {
    case at::kFloat: launch_fused<float>(a); break;
    case at::kHalf: launch_fused<__half>(a); break;
    case at::kBFloat16: launch_fused<__nv_bfloat16>(a); break;
    default: TORCH_CHECK(false, "dsconv: separable_conv2d: unsupported dtype ", dtype);
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CUDA, m) { m.impl("separable_conv2d", &separable_conv2d_cuda); }

}  // namespace dsconv
