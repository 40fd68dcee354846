// Host-side interface of the CUDA fused depthwise-separable kernel (dsconv::separable_conv2d):
// raw device pointers + a plain argument struct, no torch headers (the .cu files compile fast).
// Tensor handling, weight conversion and the fallback path live in fused_register.cpp; the
// design (tiles, shared memory, tensor-core layout) is described in bench/CUDA_NOTES.md.
//
// One thread block computes a band of kFusedBP consecutive output pixels (in (n, oh, ow) order,
// so a band may span images) against a block of BN pointwise output channels. Channels are consumed in chunks of
// kFusedKC: the depthwise output of the chunk (+ bias, act) is written to shared memory (the "A"
// tile, BP x KC), the chunk's pointwise weights next to it (the "B" tile, KC x BN), and the block
// multiplies them into register accumulators (fp16/bf16: WMMA 16x16x16 tensor-core fragments,
// fp32 accumulate; fp32: FMA on CUDA cores, 4 pixels x 8 channels per thread). The depthwise
// intermediate never reaches global memory. Epilogue: + pw bias, pw act, store.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "../dw_params.h"

namespace dsconv {
namespace cuda {

constexpr int kFusedThreads = 256;  // 8 warps
constexpr int kFusedBP = 64;        // output pixels per block (GEMM M tile)
constexpr int kFusedKC = 32;        // channels per chunk (GEMM K step)
constexpr int kFusedMaxTaps = 64;   // depthwise taps staged in shared memory per channel
constexpr int kFusedBN16 = 256;     // largest output-channel tile, fp16/bf16 (8 warps: 4 (M) x 2 (N))
constexpr int kFusedBN32 = 128;     // output-channel tile, fp32 (16 x 16 threads of 4 x 8 outputs)
constexpr int kFusedMaxTileBytes = 64 * 1024;  // largest staged input tile (tile mode, dynamic smem)
// Upper bounds of the kernels' static shared memory (ptxas, sm_90: 43136 bytes for the band /
// tile kernel, 13312 for the pipeline's), for checking a plan against the device's per-block
// limit (227 KiB on Hopper, 163 on A100, 99 on sm_86 / sm_89: a launch past it fails).
constexpr int kFusedStaticSmem = 48 * 1024;
constexpr int kFusedPipeStaticSmem = 16 * 1024;

struct FusedArgs {
  int C, Cout;
  int H, W, OH, OW;
  int KH, KW, taps;
  int S_h, S_w, dil_h, dil_w, pad_t, pad_l;
  int64_t HW;     // OH * OW (< 2^31 - kFusedBP)
  int64_t NHW;    // N * OH * OW: output pixels of the batch
  int64_t bands;  // ceil(NHW / kFusedBP): blocks along grid.x
  int64_t in_sn, in_sc, in_sh, in_sw;  // input strides (any, >= 0)
  int64_t out_sn, out_sc, out_sq;      // output strides: image, channel, pixel q (dense H x W)
  int chan_inner;  // input channels have unit stride: depthwise threads walk channels fastest
  int out_cl;      // output channels_last: epilogue lanes walk output channels fastest
  int BN;          // output channels per block (grid.y = ceil(Cout / BN)); each recomputes the depthwise
  int nf;          // fp16/bf16: 16-wide N fragments per warp (BN = 32 * nf, nf <= 8)
  // Tile mode (tile_R > 0; K x K in 3/5/7, dilation 1, equal strides 1/2, OW <= kFusedBP): a block
  // owns tile_R whole output rows of one image instead of a band, and stages the chunk's input rows
  // (zero padded) in dynamic shared memory: X[KC][IR][XP], channel pitch XCH elements.
  int tile_R, tiles_img;  // output rows per block; blocks per image (ceil(OH / tile_R))
  int IR, IWp, XP, XCH;   // staged rows ((tile_R - 1) * S + K), columns ((OW - 1) * S + K), pitches
  int x_bytes;            // dynamic shared memory of the launch (X; pipeline mode: both buffers)
  // Pipeline mode (pipe = 1; 16-bit tile mode with aligned operands, see fused_pipe_plan): each
  // chunk's input rows, pointwise weights, depthwise weights and bias are copied into shared
  // memory with cp.async (no registers, no per-element index math), two buffers deep, so chunk
  // i + 1's copies fly while chunk i computes. X holds channels-major planes as above (the
  // element of input column iw at column iw + pad_l + XS, XS making pairs 4-byte aligned) or, for
  // channels-innermost input (x_il = 1), pixel-major rows: X[IR][IWp][KC].
  int pipe, x_il, XS;
  int pipe_xb, pipe_bb, pipe_wb, pipe_buf;  // bytes: X, B, dw weights, one whole buffer (+ bias)
  int pipe_nfm;  // accumulator fragments the pipeline kernel holds: 8, or 2 / 4 (>= nf) on request
  int64_t grid_x;         // blocks along grid.x: bands, or N * tiles_img in tile mode
  int act, pw_act;
  const void* in;     // T, strides above
  void* out;          // T
  const float* dw_w;  // (C, taps) float, dense
  const float* dw_b;  // (C) float or nullptr
  const void* pw_w;   // (Cout, C) T, dense
  const float* pw_b;  // (Cout) float or nullptr
};

// Whether the fused kernel takes this problem (multiplier 1 is checked by the caller): kernel of
// at most kFusedMaxTaps taps, and every coordinate / count within the kernel's int math.
inline bool fused_supported(const DwParams& p, int64_t Cout) {
  const int64_t lim = int64_t(1) << 29;
  if (p.M != 1 || p.taps() > kFusedMaxTaps) return false;
  if (p.C >= lim || Cout >= lim || p.H >= lim || p.W >= lim || p.OH >= lim || p.OW >= lim) return false;
  if (p.KH * p.dil_h >= lim || p.KW * p.dil_w >= lim || p.pad_t >= lim || p.pad_l >= lim) return false;
  if (p.OH * p.stride_h >= lim || p.OW * p.stride_w >= lim) return false;
  const int64_t HW = p.OH * p.OW;
  if (HW >= (int64_t(1) << 31) - kFusedBP) return false;
  const int64_t blocks = (p.N * HW + kFusedBP - 1) / kFusedBP;
  if (blocks >= (int64_t(1) << 31)) return false;
  if ((Cout + 31) / 32 > 65535) return false;  // grid.y with the smallest tile
  return true;
}

// Fills the tiling fields (NHW, bands, tile mode, grid_x, BN, nf) for element size elem_bytes (2:
// tensor-core path). Tile mode (see FusedArgs) when the kernel is a templated K x K (3/5/7, equal
// strides 1 or 2, dilation 1), the output rows fit one M tile (OW <= kFusedBP) and the staged tile
// fits kFusedMaxTileBytes; tile_mode -1: automatic for the staging loops (stride 1, OW <= 32:
// measured below), -2: automatic for the pipeline (also 3x3 on wider maps and stride 2), 0: off
// (bands), > 0: at most that many rows (any eligible shape).
// Automatic rows: as many as fit the M tile, halved while that leaves fewer blocks than SMs (the
// first H200 run: 49-147 blocks of this kernel left most SMs idle). Why: in tile mode the depthwise
// stage reads zero-padded rows from shared memory with no border checks and warp-uniform
// branches; the band mode's per-pixel global reads were ~10x the instructions (ncu, H200).
// fp16/bf16 N tile: the widest (all of Cout up to 256) unless that leaves fewer than min_blocks
// blocks (bands) or SM-count blocks (tiles); then narrower tiles, each block recomputing its
// depthwise output. nf_force > 0 overrides.
inline void fused_plan(FusedArgs& a, int64_t N, int elem_bytes, int64_t min_blocks, int nf_force, int tile_mode = 0,
                       int64_t sms = 132, int64_t smem_optin = 227 * 1024) {
  a.HW = int64_t(a.OH) * a.OW;
  a.NHW = N * a.HW;
  a.bands = (a.NHW + kFusedBP - 1) / kFusedBP;
  a.grid_x = a.bands;
  a.tile_R = a.tiles_img = a.IR = a.IWp = a.XP = a.XCH = a.x_bytes = 0;
  const bool sq = a.KH == a.KW && (a.KH == 3 || a.KH == 5 || a.KH == 7) && a.dil_h == 1 && a.dil_w == 1 &&
                  a.S_h == a.S_w && (a.S_h == 1 || a.S_h == 2);
  // Automatic: stride 1 on maps up to 32 wide only. The H200 (2026-11-26, fp16, batch 16, ms
  // band -> tile): 576->96 14x14 0.273 -> 0.195 (NCHW), 0.180 -> 0.134 (channels_last); 256->256
  // 28x28 0.240 -> 0.181, 0.191 -> 0.138; but 144->24 56x56 0.192 -> 0.300 and 144->32 56->28
  // stride 2 0.105 -> 0.154 (ncu: 114M instructions against the band's 72M; the staging loop's
  // per-element divisions and 64-bit address math on 58-wide rows).
  // tile_mode == -2 (the cp.async pipeline's automatic choice, see fused_pipe_plan): also 3x3 on
  // maps up to 64 wide and stride 2, where the pipeline beat the band mode on the H200 (2026-11-26,
  // third session: 144->24 56x56, 144->32 stride 2); 5x5 / 7x7 there are unmeasured: bands.
  const bool tile_auto = (tile_mode < 0 && a.S_h == 1 && a.OW <= 32) || (tile_mode == -2 && a.KH == 3);
  if ((tile_mode > 0 || tile_auto) && sq && a.OW <= kFusedBP) {
    int R = std::min(kFusedBP / a.OW, a.OH);
    if (tile_mode > 0) {
      R = std::min(R, tile_mode);
    } else {
      while (R > 1 && N * ((a.OH + R - 1) / R) < sms) R = (R + 1) / 2;
    }
    const int64_t tiles = (a.OH + R - 1) / R;
    const int IR = (R - 1) * a.S_h + a.KH, IWp = (a.OW - 1) * a.S_w + a.KW;
    int XCH = IR * IWp;
    // Channel pitch: lanes of a warp walk channels, so an odd pitch in 4-byte words keeps their
    // shared-memory reads in distinct banks (16-bit: XCH = 2 mod 4; fp32: XCH odd).
    if (elem_bytes == 2) XCH += (6 - XCH % 4) % 4;
    else XCH |= 1;
    const int64_t bytes = int64_t(kFusedKC) * XCH * (elem_bytes == 2 ? 2 : 4);
    if (bytes <= kFusedMaxTileBytes && bytes + kFusedStaticSmem <= smem_optin && N * tiles < (int64_t(1) << 31)) {
      a.tile_R = R, a.tiles_img = static_cast<int>(tiles);
      a.IR = IR, a.IWp = IWp, a.XP = IWp, a.XCH = XCH, a.x_bytes = static_cast<int>(bytes);
      a.grid_x = N * tiles;
      min_blocks = std::min<int64_t>(min_blocks, sms);
    }
  }
  if (elem_bytes == 2) {
    int nf = std::min(8, (a.Cout + 31) / 32);
    if (nf_force > 0) {
      nf = std::min(8, nf_force);
    } else {
      while (nf > 1 && a.grid_x * ((a.Cout + 32 * nf - 1) / (32 * nf)) < min_blocks) nf = (nf + 1) / 2;
    }
    a.nf = nf;
    a.BN = 32 * a.nf;
  } else {
    a.nf = 0;
    a.BN = kFusedBN32;
  }
}

constexpr int kFusedPipeMaxSmem = 160 * 1024;  // pipeline mode: both buffers (+ ~13 KiB static)

// Pipeline mode (see FusedArgs) for a 16-bit tile-mode plan whose pointers and strides are set:
// every copy a whole aligned 4-byte pair (channels-major input: unit column stride, even row,
// channel and image strides, even W so no pair straddles the right border; the column shift XS
// aligns the left one) or 16-byte group of 8 channels (channels-innermost: C and all strides
// multiples of 8), so each copy is all valid or all zero-filled. C % 8 == 0 for the pointwise
// rows and the chunk tails of the weights. Leaves pipe = 0 (the staging loops) otherwise.
inline void fused_pipe_plan(FusedArgs& a, int64_t smem_optin = 227 * 1024) {
  a.pipe = a.x_il = a.XS = 0;
  a.pipe_xb = a.pipe_bb = a.pipe_wb = a.pipe_buf = 0;
  if (a.tile_R <= 0 || a.nf <= 0 || a.C % 8 != 0) return;
  const auto al = [](const void* p, int n) { return reinterpret_cast<uintptr_t>(p) % n == 0; };
  if (!al(a.pw_w, 16) || !al(a.dw_w, 16) || (a.dw_b && !al(a.dw_b, 16))) return;
  int il = 0, XS = 0, XP = a.XP, XCH = a.XCH;
  int64_t xe;  // X elements of one buffer
  if (a.chan_inner) {
    if (!al(a.in, 16) || a.in_sc != 1 || a.in_sw % 8 || a.in_sh % 8 || a.in_sn % 8) return;
    il = 1, XP = a.IWp, XCH = 1;
    xe = int64_t(a.IR) * a.IWp * kFusedKC;
  } else {
    if (!al(a.in, 4) || a.in_sw != 1 || a.in_sh % 2 || a.in_sc % 2 || a.in_sn % 2 || a.W % 2) return;
    XS = a.pad_l & 1;
    XP = (a.IWp + XS + 1) / 2 * 2;
    XCH = a.IR * XP;
    XCH += (6 - XCH % 4) % 4;  // 2 mod 4: lanes (channels) in distinct banks, as the staging loops
    xe = int64_t(kFusedKC) * XCH;
  }
  const auto up32 = [](int64_t b) { return (b + 31) / 32 * 32; };  // WMMA: 32-byte aligned B
  const int64_t xb = up32(xe * 2), bb = up32(int64_t(a.BN) * (kFusedKC + 8) * 2),
                wb = up32(int64_t(kFusedKC) * a.taps * 4);
  const int64_t buf = xb + bb + wb + kFusedKC * 4;
  if (2 * buf > kFusedPipeMaxSmem || 2 * buf + kFusedPipeStaticSmem > smem_optin) return;
  a.pipe = 1, a.x_il = il, a.XS = XS, a.XP = XP, a.XCH = XCH;
  a.pipe_xb = static_cast<int>(xb), a.pipe_bb = static_cast<int>(bb), a.pipe_wb = static_cast<int>(wb);
  a.pipe_buf = static_cast<int>(buf);
  a.x_bytes = static_cast<int>(2 * buf);
}

// T: float, __half or __nv_bfloat16. Enqueues on `stream`; returns the launch error, if any.
template <typename T>
cudaError_t fused_forward(const FusedArgs& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace dsconv
