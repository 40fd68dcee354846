// CPU implementation of dsconv::separable_conv2d: argument checks, output allocation, band
// planning, threading, and the dispatch between the vectorised fused kernels (fused_kernels.h:
// float32 / bfloat16, AVX-512 or AVX2) and a generic scalar path (any dtype, any layout).
//
// Environment (read on every call, for tests and benchmarks):
//   DSCONV_FUSED_ISA=avx512|avx2|generic  use at most this code path (default: the best available)
//   DSCONV_FUSED_TILE_KB=<n>              depthwise tile budget per thread (default 256 KiB for NCHW
//                                         outputs, 128 KiB for channels_last)
//   DSCONV_FUSED_MIN_BAND=<n>             fewest output pixels per band (default 128)
//   DSCONV_FUSED_NT=0|1                   streaming (non-temporal) output stores off / on (default:
//                                         on for float32 outputs of 16 MiB or more)
#include "../fused_checks.h"
#include "fused_kernels.h"
#include "output_pool.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace dsconv {
namespace {

using cpu::fused::Kernels;
using cpu::fused::Problem;

// --- code path selection -------------------------------------------------------------------------------
enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

Isa isa_cap() {
  const char* e = std::getenv("DSCONV_FUSED_ISA");
  if (!e || !*e) return Isa::kAvx512;
  const std::string s(e);
  if (s == "generic" || s == "scalar" || s == "none") return Isa::kGeneric;
  if (s == "avx2") return Isa::kAvx2;
  TORCH_CHECK(s == "avx512", "dsconv: DSCONV_FUSED_ISA must be avx512, avx2 or generic, got '", s, "'");
  return Isa::kAvx512;
}

const Kernels* select_kernels() {
  const Isa cap = isa_cap();
  if (cap >= Isa::kAvx512)
    if (const Kernels* k = cpu::fused::avx512_kernels()) return k;
  if (cap >= Isa::kAvx2)
    if (const Kernels* k = cpu::fused::avx2_kernels()) return k;
  return nullptr;
}

// Depthwise tile budget per band. Planes (NCHW) bands of 128 KiB were a few output rows: per
// channel plane, the band's row setup and border masks then cost as much as the taps (40 cycles
// per output vector at 4 rows of 28 vs 19 for a whole 28x28 image, microbenchmark). 256 KiB
// measured 1.00-1.24x faster (geomean 1.10x) on six MobileNet-like NCHW blocks (paired, 2 threads,
// batch 8-16, 2026-11-27); channels_last gained nothing from it (0.92-1.07x) and keeps 128 KiB.
int64_t tile_budget_floats(bool pixels) {
  int64_t kb = pixels ? 128 : 256;
  if (const char* e = std::getenv("DSCONV_FUSED_TILE_KB")) {
    const long v = std::atol(e);
    if (v > 0) kb = v;
  }
  return kb * 1024 / static_cast<int64_t>(sizeof(float));
}

// Pixels per band: the depthwise tile (C x band floats) within the budget; for the planes layout,
// whole output rows when a row fits (fewer halo rows re-read) and a multiple of the GEMM column
// block otherwise; then shrunk until there are a few tasks per thread, and balanced.
int64_t plan_band(const DwParams& p, bool pixels, int64_t col_block, int64_t min_tasks) {
  const int64_t HW = p.OH * p.OW;
  // At least a few GEMM column blocks per band, even when that makes the tile outgrow the budget
  // (large C): narrow bands cost more in per-band overhead than an L2-resident tile does.
  int64_t min_band = 128;
  if (const char* e = std::getenv("DSCONV_FUSED_MIN_BAND")) min_band = std::max<long>(1, std::atol(e));
  const int64_t budget = tile_budget_floats(pixels);
  int64_t band = std::max<int64_t>({budget / p.C, col_block, min_band});
  auto snap = [&](int64_t b) {
    b = std::min(b, HW);
    if (!pixels && b >= p.OW) return std::min(b / p.OW * p.OW, HW);
    return std::max<int64_t>(1, b);
  };
  // Planes, small images (14x14, 7x7): one band per image while its tile fits in 2x the budget
  // (512 KiB, half of a 1 MB L2): no halo rows read twice, no partial GEMM vector at each band's
  // end. 16x576x14x14 -> 96: 1.38 -> 1.24 ms (bands of 7 rows before).
  if (!pixels && p.C * HW <= 2 * budget && p.N >= min_tasks) return HW;
  band = snap(band);
  while (p.N * ((HW + band - 1) / band) < min_tasks && band > std::max<int64_t>(col_block, p.OW)) band = snap(band / 2);
  const int64_t nb = (HW + band - 1) / band;
  if (!pixels && band % p.OW == 0) {
    const int64_t rows = (p.OH + nb - 1) / nb;
    return rows * p.OW;
  }
  return (HW + nb - 1) / nb;
}

// --- generic path: any dtype (opmath accumulation), any input/output strides ----------------------------
template <typename acc_t>
inline acc_t apply_act(acc_t x, int64_t act) {
  switch (act) {
    case cpu::fused::kActRelu: return x < acc_t(0) ? acc_t(0) : x;
    case cpu::fused::kActRelu6: return x < acc_t(0) ? acc_t(0) : (x > acc_t(6) ? acc_t(6) : x);
    case cpu::fused::kActSilu: return x / (acc_t(1) + std::exp(-x));
    case cpu::fused::kActHardswish: return x * std::min(std::max(x + acc_t(3), acc_t(0)), acc_t(6)) / acc_t(6);
    case cpu::fused::kActGelu: return acc_t(0.5) * x * (acc_t(1) + std::erf(x * acc_t(0.70710678118654752440)));
    default: return x;
  }
}

template <typename T>
void generic_forward(const DwParams& p, int64_t Cout, const T* in, const at::Tensor& dw_w, const at::Tensor& dw_b,
                     const at::Tensor& pw_w, const at::Tensor& pw_b, int64_t act, int64_t pw_act, T* out,
                     int64_t band) {
  using acc_t = at::opmath_type<T>;
  const int64_t C = p.C, taps = p.KH * p.KW, HW = p.OH * p.OW;
  auto to_acc = [](const at::Tensor& t) {
    std::vector<acc_t> v;
    if (!t.defined()) return v;
    const T* d = t.const_data_ptr<T>();
    v.assign(d, d + t.numel());
    return v;
  };
  const std::vector<acc_t> wd = to_acc(dw_w), bd = to_acc(dw_b), wp = to_acc(pw_w), bp = to_acc(pw_b);
  const int64_t nb = (HW + band - 1) / band;
  at::parallel_for(0, p.N * nb, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> tile(C * band), orow(band);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / nb, q0 = (task % nb) * band, q1 = std::min(q0 + band, HW), P = q1 - q0;
      const T* ip = in + n * p.in_sn;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t j = 0; j < P; ++j) {
          const int64_t oh = (q0 + j) / p.OW, ow = (q0 + j) % p.OW;
          acc_t acc = bd.empty() ? acc_t(0) : bd[c];
          for (int64_t kh = 0; kh < p.KH; ++kh) {
            const int64_t ih = oh * p.stride_h - p.pad_t + kh * p.dil_h;
            if (ih < 0 || ih >= p.H) continue;
            for (int64_t kw = 0; kw < p.KW; ++kw) {
              const int64_t iw = ow * p.stride_w - p.pad_l + kw * p.dil_w;
              if (iw < 0 || iw >= p.W) continue;
              acc += wd[c * taps + kh * p.KW + kw] * static_cast<acc_t>(ip[c * p.in_sc + ih * p.in_sh + iw * p.in_sw]);
            }
          }
          tile[c * P + j] = apply_act<acc_t>(acc, act);
        }
      }
      for (int64_t co = 0; co < Cout; ++co) {
        std::fill(orow.begin(), orow.begin() + P, bp.empty() ? acc_t(0) : bp[co]);
        for (int64_t c = 0; c < C; ++c) {
          const acc_t w = wp[co * C + c];
          const acc_t* t = tile.data() + c * P;
          for (int64_t j = 0; j < P; ++j) orow[j] += w * t[j];
        }
        T* op = out + n * p.out_sn + co * p.out_sc;
        for (int64_t j = 0; j < P; ++j) {
          const int64_t oh = (q0 + j) / p.OW, ow = (q0 + j) % p.OW;
          op[oh * p.out_sh + ow * p.out_sw] = static_cast<T>(apply_act<acc_t>(orow[j], pw_act));
        }
      }
    }
  });
}

// Per-thread buffers start on a 64-byte line: the kernels' full-vector loads and stores of the
// tile and of the packed weights then never straddle two cache lines. (std::vector's storage of a
// large buffer is an mmap'ed page plus malloc's 16-byte header: every 64-byte access split two
// lines, which made the depthwise stage 17-26% and the GEMM 3-5% slower in a paired
// microbenchmark, 2026-11-27.)
constexpr int64_t kLineFloats = 64 / static_cast<int64_t>(sizeof(float));
float* line_aligned(std::vector<float>& buf) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + (((64 - a % 64) % 64) / sizeof(float));
}

// Per-thread scratch, kept between calls: a fresh buffer per call would be a fresh mmap of a few
// hundred KiB, i.e. page faults and kernel page clearing on every call. Zero-filled when it grows
// (the kernels may read stale lanes of it, whose results they discard).
float* thread_scratch(int64_t floats) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < floats + kLineFloats) {
    buf.clear();
    buf.shrink_to_fit();
    buf.resize(static_cast<size_t>(floats + kLineFloats), 0.f);
  }
  return line_aligned(buf);
}

// The calling thread's buffer for the packed weights, kept between calls for the same reason (a
// fresh 221 KiB buffer for 576 -> 96 weights cost ~40 us of page faults per call). Workspaces over
// 16 MiB are not kept (the caller allocates those per call, with `own`).
float* thread_workspace(int64_t floats, std::vector<float>& own) {
  thread_local std::vector<float> buf;
  std::vector<float>& b = floats > (int64_t(4) << 20) ? own : buf;
  if (static_cast<int64_t>(b.size()) < floats + kLineFloats) {
    b.clear();
    b.shrink_to_fit();
    b.resize(static_cast<size_t>(floats + kLineFloats));
  }
  return line_aligned(b);
}

// --- fast path -----------------------------------------------------------------------------------------
void fast_forward(const Kernels* K, const DwParams& p, int64_t Cout, bool pixels, const at::Tensor& input,
                  const at::Tensor& dw_w, const at::Tensor& dw_b, const at::Tensor& pw_w, const at::Tensor& pw_b,
                  int64_t act, int64_t pw_act, at::Tensor& out) {
  auto f32 = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat).contiguous() : t; };
  const at::Tensor wd = f32(dw_w), bd = f32(dw_b), wp = f32(pw_w), bp = f32(pw_b);
  Problem prob{};
  prob.p = p;
  prob.Cout = Cout;
  prob.pixels = pixels;
  prob.dtype = input.scalar_type() == at::kBFloat16 ? cpu::fused::kBF16 : cpu::fused::kF32;
  prob.in = input.const_data_ptr();
  prob.out = out.mutable_data_ptr();
  prob.dw_w = wd.const_data_ptr<float>();
  prob.dw_b = bd.defined() ? bd.const_data_ptr<float>() : nullptr;
  prob.pw_w = wp.const_data_ptr<float>();
  prob.pw_b = bp.defined() ? bp.const_data_ptr<float>() : nullptr;
  prob.act = static_cast<int>(act);
  prob.pw_act = static_cast<int>(pw_act);
  const int64_t threads = at::get_num_threads(), HW = p.OH * p.OW;
  const int64_t col_block = pixels ? 1 : K->planes_col_block;
  // Few images of few pixels (batch-1 inference of the late layers, e.g. 1x960x7x7 -> 160): rather
  // than cutting the images into narrow bands (each re-reads all the weights and pads its GEMM
  // rows; a planes image of one band stays one task), the output channels are split across the
  // threads. Each part recomputes its band's depthwise, small next to the pointwise product when
  // Cout >= 64 (>= 7x the multiply-adds). 1x960x7x7 -> 160, 2 threads: ~0.9x of stock PyTorch
  // before (one thread busy in NCHW, 5 bands of 10 pixels in channels_last).
  prob.band = plan_band(p, pixels, col_block, 1);
  int64_t nsplit = 1;
  const int64_t tasks_whole = p.N * ((HW + prob.band - 1) / prob.band);
  const int64_t unit = K->co_unit(prob), units = (Cout + unit - 1) / unit;
  if (threads > 1 && tasks_whole < threads && Cout >= 64 && units >= 2)
    nsplit = std::min(units, (threads + tasks_whole - 1) / tasks_whole);
  else
    prob.band = plan_band(p, pixels, col_block, 2 * threads);
  // An output too large to stay in the L3 cache is written with streaming stores: they skip reading
  // each output line from memory before overwriting it (a third of the memory traffic).
  prob.nt_out = out.nbytes() >= (int64_t(16) << 20);
  if (const char* e = std::getenv("DSCONV_FUSED_NT"))
    if (*e) prob.nt_out = std::atoi(e) != 0;
  // prepare() writes every element of the workspace (padding included): no zero-fill needed.
  const int64_t ws_floats = K->workspace_size(prob);
  std::vector<float> ws_own;
  float* ws = thread_workspace(ws_floats, ws_own);
  K->prepare(prob, ws);
  const int64_t nb = (HW + prob.band - 1) / prob.band;
  const int64_t scratch_floats = K->scratch_size(prob);
  // Contiguous ranges of bands per thread. Handing bands out one at a time from a shared counter
  // (a guard against one thread being time-sliced away) measured 3-5% slower on 256->256@28,
  // both layouts (likely because a thread's consecutive bands no longer share halo rows in L2).
  // Static ranges with stealing from the back of the other thread's range did not help either: the
  // op runs 8-10% slower right after another op (2x after a 30 ms sleep) with both threads busy
  // but slow, not with one thread starting late (stealing made the post-sleep case 7.6 -> 9.8 ms).
  at::parallel_for(0, p.N * nb * nsplit, 1, [&](int64_t begin, int64_t end) {
    float* scratch = thread_scratch(scratch_floats);
    auto band_of = [&](int64_t task) {
      if (task >= end) return cpu::fused::Band{0, 0, 0};
      const int64_t part = task % nsplit, b = task / nsplit;
      const int64_t q0 = (b % nb) * prob.band;
      cpu::fused::Band band{b / nb, q0, std::min(q0 + prob.band, HW)};
      if (nsplit > 1) {
        band.co_lo = part * units / nsplit * unit;
        band.co_hi = std::min(Cout, (part + 1) * units / nsplit * unit);
      }
      return band;
    };
    for (int64_t task = begin; task < end; ++task) K->run_band(prob, band_of(task), band_of(task + 1), scratch);
  });
}

at::Tensor separable_conv2d_cpu(const at::Tensor& input, const at::Tensor& dw_weight,
                                const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                                const c10::optional<at::Tensor>& pw_bias, c10::IntArrayRef stride,
                                c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t act, int64_t pw_act) {
  DwParams p = check_forward_args(input, dw_weight, dw_bias, stride, padding, dilation);
  const int64_t Cout = check_separable_args(input, dw_weight, dw_bias, pw_weight, pw_bias, act, pw_act, p);
  const at::MemoryFormat fmt = separable_memory_format(input, dw_weight, pw_weight);
  at::Tensor out = empty_output({p.N, Cout, p.OH, p.OW}, input.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  fill_in_strides(p, input);
  fill_out_strides(p, out);
  const at::Tensor wd = dw_weight.contiguous(), wp = pw_weight.contiguous();
  const at::Tensor bd = (dw_bias.has_value() && dw_bias->defined()) ? dw_bias->contiguous() : at::Tensor();
  const at::Tensor bp = (pw_bias.has_value() && pw_bias->defined()) ? pw_bias->contiguous() : at::Tensor();

  const auto dtype = input.scalar_type();
  const bool pixels = fmt == at::MemoryFormat::ChannelsLast;
  if (dtype == at::kFloat || dtype == at::kBFloat16) {
    const Kernels* K = select_kernels();
    // The pixel-major kernels read channels with unit stride; the planes kernels take any input strides.
    if (K && (!pixels || input.stride(1) == 1)) {
      fast_forward(K, p, Cout, pixels, input, wd, bd, wp, bp, act, pw_act, out);
      return out;
    }
  }
  const int64_t band = std::max<int64_t>(1, std::min<int64_t>(p.OH * p.OW, 16384 / p.C));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "dsconv::separable_conv2d", [&] {
    generic_forward<scalar_t>(p, Cout, input.const_data_ptr<scalar_t>(), wd, bd, wp, bp, act, pw_act,
                              out.mutable_data_ptr<scalar_t>(), band);
  });
  return out;
}

std::string separable_cpu_isa() {
  const Kernels* k = select_kernels();
  return k ? k->name : "generic";
}

}  // namespace

TORCH_LIBRARY_IMPL(dsconv, CPU, m) { m.impl("separable_conv2d", &separable_conv2d_cpu); }

TORCH_LIBRARY_FRAGMENT(dsconv, m) {
  // Name of the CPU code path separable_conv2d takes for float32/bfloat16 in this process
  // ("avx512", "avx2" or "generic"), after the DSCONV_FUSED_ISA cap (for tests and benchmarks).
  m.def("_separable_cpu_isa() -> str", &separable_cpu_isa);
}

}  // namespace dsconv
