// Fused depthwise-separable block on the CPU: depthwise (multiplier 1) -> bias -> act ->
// pointwise 1x1 -> bias -> act, computed band by band so that the depthwise intermediate only
// ever lives in a per-thread scratch tile (L1/L2 sized), never in main memory.
//
// This header is free of torch headers: the ISA-specific translation units (fused_avx512.cpp,
// fused_avx2.cpp) include it after `#pragma GCC target`, and must not pull inline torch code
// into a TU compiled for a wider ISA (ODR: the linker could keep the AVX-512 copy).
//
// Work decomposition (planned in fused_cpu.cpp): per image n, the OH*OW output pixels are cut
// into bands of consecutive pixel indices q = oh*OW + ow, [q0, q1). A band is one task:
//   - planes (NCHW output): tile[c][q - q0] (C x band, rows padded to the micro-kernel width),
//     then out[n, :, band] = pw_w (Cout x C) @ tile, written straight into the output planes;
//   - pixels (channels_last output): tile[q - q0][c] (band x C), then
//     out[n, band, :] = tile @ pw_w^T.
// Biases and activations are applied on registers / on the freshly written tile, once.
//
// Depthwise into the tile:
//   - planes: column stride 1 and 3/5/7 taps per row: straight from the input planes, lane masks
//     for the borders computed once per band, rows outside the input read from a zero row; 3x3 at
//     row stride 1 loads each input row piece once for all (up to 3) output rows. Otherwise per
//     channel the band's input rows are copied (zero-padded, split into stride phases) into a
//     small row buffer, then register chunks of up to 4 rows x 4 vectors run the taps over it.
//     The input of channel c + 3 is prefetched meanwhile;
//   - pixels: 3x3 stride 1 (AVX-512): per channel vector, a window of up to 4 output rows slides
//     along the row, each input vector loaded once for the 3 output columns that read it (one
//     pointer per input row plus a shared column offset: no per-tap address registers); other
//     kernels: groups of 8 (then 4, 1) output pixels x 32 channels, each input vector loaded once
//     and used by every (pixel, tap) that reads it, the row's tap weights in registers; channel
//     blocks of 64 outermost so a block's input rows stay in L1 across the band's rows.
// GEMM: register-blocked micro-kernels (planes 6 x 64, pixels 14 x 32 preferred, up to 6 x 64;
// AVX-512 sizes) on a pre-packed pointwise weight, bias and activation applied on the registers
// and the block stored straight into the output (streaming stores for large float32 outputs:
// Problem::nt_out). While a band runs its GEMM, the next band's input is prefetched, one line
// every few k steps of the micro-kernel.
#pragma once
#include "../dw_params.h"

#include <cstdint>

namespace dsconv {
namespace cpu {
namespace fused {

// Activation codes, shared with the op schema (`int act`) and dsconv_ext/fused.py.
enum Act : int { kActNone = 0, kActRelu = 1, kActRelu6 = 2, kActSilu = 3, kActHardswish = 4, kActGelu = 5 };
constexpr int kNumActs = 6;

enum DType : int { kF32 = 0, kBF16 = 1 };

struct Problem {
  DwParams p;            // depthwise geometry (M == 1); in_* strides: input, out_* strides: output
  int64_t Cout;          // pointwise output channels
  bool pixels;           // true: channels_last output (pixel-major tile), false: planes (NCHW)
  DType dtype;           // of input and output; weights are always float here
  const void* in;
  void* out;
  // Float weights, dense, as given (fused_cpu.cpp converts them).
  const float* dw_w;     // (C, KH*KW)
  const float* dw_b;     // (C) or nullptr
  const float* pw_w;     // (Cout, C)
  const float* pw_b;     // (Cout) or nullptr
  int act, pw_act;
  bool nt_out = false;   // write full float output vectors with streaming (non-temporal) stores
  // Filled by Kernels::prepare: ISA-specific packed copies living in a caller-owned workspace.
  const float* packed_pw = nullptr;
  const float* packed_dw = nullptr;
  const float* packed_dw_b = nullptr;
  const float* packed_pw_b = nullptr;
  const float* packed_pw_t = nullptr;  // planes, narrow last column blocks: pw_w^T in blocks of 2L output channels
  const float* zeros = nullptr;  // pixels path: >= C + 2L zero floats (window positions in the padding)
  int64_t band = 0;      // pixels per band (the last band of an image may be shorter)
};

// Output pixels [q0, q1) of image n (q = oh*OW + ow); empty when q1 <= q0. Output channels
// [co_lo, co_hi) only (co_hi < 0: all of them; co_lo a multiple of Kernels::co_unit).
struct Band {
  int64_t n, q0, q1;
  int64_t co_lo = 0, co_hi = -1;
};

// One ISA's implementation. All sizes are in floats.
struct Kernels {
  const char* name;
  // Workspace for the packed weights, then pointers into it (set in prob).
  int64_t (*workspace_size)(const Problem& prob);
  void (*prepare)(Problem& prob, float* workspace);
  // Per-thread scratch for bands of at most prob.band pixels; the caller zero-fills it once.
  int64_t (*scratch_size)(const Problem& prob);
  // Computes out[band.n, :, pixels band.q0..q1); fetches the input of `next` (the band this
  // thread runs next, or an empty one) into cache meanwhile.
  void (*run_band)(const Problem& prob, const Band& band, const Band& next, float* scratch);
  // Preferred band granularity (pixels) for the planes path: the GEMM's column block.
  int64_t planes_col_block;
  // Granularity (output channels) of a split of the output channels across tasks.
  int64_t (*co_unit)(const Problem& prob);
};

// nullptr when the running CPU lacks the ISA (checked at run time) or it wasn't compiled in.
const Kernels* avx512_kernels();
const Kernels* avx2_kernels();

}  // namespace fused
}  // namespace cpu
}  // namespace dsconv
