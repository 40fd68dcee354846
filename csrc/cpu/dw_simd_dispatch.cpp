// Run-time ISA selection for the SIMD kernels, and the dsconv::_cpu_isa / _set_cpu_isa ops.
#include "dw_simd.h"
#include "dw_simd_isa.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace dsconv {
namespace cpu {
namespace simd {
namespace {

Isa detect() {
#if DSCONV_SIMD_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::generic;
}

std::atomic<int> g_isa{-1};
std::mutex g_isa_mutex;

}  // namespace

Isa best_supported_isa() {
  static const Isa best = detect();
  return best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa parse_isa(const std::string& name) {
  if (name.empty() || name == "auto") return best_supported_isa();
  if (name == "avx512") return Isa::avx512;
  if (name == "avx2") return Isa::avx2;
  if (name == "generic") return Isa::generic;
  TORCH_CHECK(false, "dsconv: unknown CPU ISA '", name, "' (DSCONV_CPU_ISA / _set_cpu_isa accept avx512, avx2, ",
              "generic or auto)");
}

void set_isa(Isa isa) {
  TORCH_CHECK(static_cast<int>(isa) <= static_cast<int>(best_supported_isa()), "dsconv: CPU ISA '", isa_name(isa),
              "' is not supported on this machine (best: ", isa_name(best_supported_isa()), ")");
  g_isa.store(static_cast<int>(isa));
}

Isa active_isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v >= 0) return static_cast<Isa>(v);
  std::lock_guard<std::mutex> lock(g_isa_mutex);
  v = g_isa.load();
  if (v >= 0) return static_cast<Isa>(v);
  const char* env = std::getenv("DSCONV_CPU_ISA");
  const std::string req = env ? env : "";
  // A bad value raises here (the first CPU call) and again on every later call until fixed.
  const Isa want = parse_isa(req);
  Isa isa = want;
  if (static_cast<int>(want) > static_cast<int>(best_supported_isa())) {
    TORCH_WARN("dsconv: DSCONV_CPU_ISA=", req, " is not supported on this CPU; using ",
               isa_name(best_supported_isa()));
    isa = best_supported_isa();
  }
  g_isa.store(static_cast<int>(isa));
  return isa;
}

namespace {

// Large outputs are freshly allocated by the op and first touched by the kernel: with 4 KiB
// pages every page faults (zeroing + fault handling cost several times the kernel itself on
// big layers). Asking for transparent huge pages on the 2 MiB-aligned interior first makes
// those faults ~10x cheaper. A hint only: no effect where THP is disabled or the memory is
// already populated (a reused heap block).
constexpr int64_t kHugeAdviseBytes = 8ll << 20;

// DSCONV_HUGE_PAGES=0 turns the hint off (read once).
bool huge_pages_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DSCONV_HUGE_PAGES");
    return !(e && e[0] == '0');
  }();
  return on;
}

void advise_huge_pages(const void* p, int64_t N, int64_t C, int64_t H, int64_t W, int64_t sn, int64_t sc,
                       int64_t sh, int64_t sw, int64_t elem) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!huge_pages_enabled()) return;
  if (sn < 0 || sc < 0 || sh < 0 || sw < 0) return;
  const int64_t extent = ((N - 1) * sn + (C - 1) * sc + (H - 1) * sh + (W - 1) * sw + 1) * elem;
  if (extent < kHugeAdviseBytes) return;
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(extent)) & ~(kHuge - 1);
  if (e > a) (void)madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
#else
  (void)p, (void)N, (void)C, (void)H, (void)W, (void)sn, (void)sc, (void)sh, (void)sw, (void)elem;
#endif
}

template <typename T>
constexpr bool simd_dtype() {
  return std::is_same<T, float>::value || std::is_same<T, c10::BFloat16>::value;
}
template <typename T>
constexpr Dt dt_of() {
  return std::is_same<T, float>::value ? Dt::f32 : Dt::bf16;
}

}  // namespace

template <typename T>
bool forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out) {
#if DSCONV_SIMD_X86
  if constexpr (simd_dtype<T>()) {
    if (active_isa() != Isa::generic)
      advise_huge_pages(out, p.N, p.OC(), p.OH, p.OW, p.out_sn, p.out_sc, p.out_sh, p.out_sw, sizeof(T));
    switch (active_isa()) {
      case Isa::avx512: return avx512::forward(p, dt_of<T>(), in, w, bias, out);
      case Isa::avx2: return avx2::forward(p, dt_of<T>(), in, w, bias, out);
      default: return false;
    }
  }
#endif
  (void)p, (void)in, (void)w, (void)bias, (void)out;
  return false;
}

// The SIMD grad_input engines correlate a zero-padded (NCHW: also zero-inserted for the stride)
// grad_output with the weights, so a non-finite weight would meet those virtual zeros
// (0 * Inf = NaN) and spread NaN to inputs F.conv2d leaves finite. Such a weight (rare: a
// diverged model) goes to the portable kernels, which visit only the real taps. The scan reads
// OC*KH*KW values, nothing next to the pass itself.
template <typename T>
bool all_finite(const DwParams& p, const T* w) {
  const int64_t n = p.OC() * p.taps();
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(static_cast<float>(w[i]))) return false;
  return true;
}

template <typename T>
bool backward_input(const DwParams& p, const T* grad_out, const T* w, T* grad_in) {
#if DSCONV_SIMD_X86
  if constexpr (simd_dtype<T>()) {
    if (!all_finite(p, w)) return false;
    if (active_isa() != Isa::generic)
      advise_huge_pages(grad_in, p.N, p.C, p.H, p.W, p.in_sn, p.in_sc, p.in_sh, p.in_sw, sizeof(T));
    switch (active_isa()) {
      case Isa::avx512: return avx512::backward_input(p, dt_of<T>(), grad_out, w, grad_in);
      case Isa::avx2: return avx2::backward_input(p, dt_of<T>(), grad_out, w, grad_in);
      default: return false;
    }
  }
#endif
  (void)p, (void)grad_out, (void)w, (void)grad_in;
  return false;
}

template <typename T>
bool backward_weight_bias(const DwParams& p, const T* grad_out, const T* in, T* grad_w, T* grad_b) {
#if DSCONV_SIMD_X86
  if constexpr (simd_dtype<T>()) {
    switch (active_isa()) {
      case Isa::avx512: return avx512::backward_weight_bias(p, dt_of<T>(), grad_out, in, grad_w, grad_b);
      case Isa::avx2: return avx2::backward_weight_bias(p, dt_of<T>(), grad_out, in, grad_w, grad_b);
      default: return false;
    }
  }
#endif
  (void)p, (void)grad_out, (void)in, (void)grad_w, (void)grad_b;
  return false;
}

// DSCONV_BWD_ONE_PASS=0 runs grad input and grad weight as two passes everywhere (A/B
// measurements of the one-pass backward, dw_simd_bwd_one_pass.h; read once).
static bool one_pass_backward_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DSCONV_BWD_ONE_PASS");
    return !(e && e[0] == '0');
  }();
  return on;
}

template <typename T>
bool backward_all(const DwParams& pi, const DwParams& pw, const T* grad_out, const T* in, const T* w, T* grad_in,
                  T* grad_w, T* grad_b) {
#if DSCONV_SIMD_X86
  if constexpr (simd_dtype<T>()) {
    if (!one_pass_backward_enabled()) return false;
    if (!all_finite(pi, w)) return false;  // as backward_input: the generic kernels handle those
    if (active_isa() != Isa::generic)
      advise_huge_pages(grad_in, pi.N, pi.C, pi.H, pi.W, pi.in_sn, pi.in_sc, pi.in_sh, pi.in_sw, sizeof(T));
    switch (active_isa()) {
      case Isa::avx512: return avx512::backward_all(pi, pw, dt_of<T>(), grad_out, in, w, grad_in, grad_w, grad_b);
      case Isa::avx2: return avx2::backward_all(pi, pw, dt_of<T>(), grad_out, in, w, grad_in, grad_w, grad_b);
      default: return false;
    }
  }
#endif
  (void)pi, (void)pw, (void)grad_out, (void)in, (void)w, (void)grad_in, (void)grad_w, (void)grad_b;
  return false;
}

#define DSCONV_INSTANTIATE(T)                                                          \
  template bool forward<T>(const DwParams&, const T*, const T*, const T*, T*);         \
  template bool backward_input<T>(const DwParams&, const T*, const T*, T*);            \
  template bool backward_weight_bias<T>(const DwParams&, const T*, const T*, T*, T*);  \
  template bool backward_all<T>(const DwParams&, const DwParams&, const T*, const T*, const T*, T*, T*, T*);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(double)
DSCONV_INSTANTIATE(c10::BFloat16)
DSCONV_INSTANTIATE(c10::Half)
#undef DSCONV_INSTANTIATE

}  // namespace simd
}  // namespace cpu
}  // namespace dsconv

// Python-visible ISA control (no tensors: a catch-all kernel).
namespace {
std::string cpu_isa_op() { return dsconv::cpu::simd::isa_name(dsconv::cpu::simd::active_isa()); }
std::string set_cpu_isa_op(std::string name) {
  const std::string prev = cpu_isa_op();
  dsconv::cpu::simd::set_isa(dsconv::cpu::simd::parse_isa(name));
  return prev;
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(dsconv, m) {
  // The instruction set the CPU kernels use: "avx512", "avx2" or "generic".
  m.def("_cpu_isa() -> str", &cpu_isa_op);
  // Forces one ("avx512", "avx2", "generic", "auto"); returns the previous one. For tests.
  m.def("_set_cpu_isa(str isa) -> str", &set_cpu_isa_op);
}
