// Hand-vectorised depthwise kernels, written once against the `Vec` traits (dw_simd_vec.h) and
// compiled once per ISA by dw_simd_avx512.cpp / dw_simd_avx2.cpp inside a #pragma GCC target
// region, with DSCONV_SIMD_NS naming the ISA's namespace. Internal linkage throughout (anonymous
// namespace) except the three entry points at the bottom.
//
// Paths (entry points at the bottom pick one from the layout of the tensor being written, as the
// generic kernels do; anything not listed returns false and runs the generic kernels):
//
// * planes (NCHW-like output, W the unit-stride axis; any input strides). One task = (n, channel,
//   band of rows). The input rows a band needs are copied (a few rows ahead of use, with software
//   prefetch further ahead) into a per-thread fp32 scratch that is zero outside the data, so every
//   tap of every kernel is one plain unaligned vector load and the inner loops carry no border
//   logic; stride-w > 1 inputs are split into stride phases while copying. Register tiles of R
//   output rows x V vectors over all taps; with row stride 1 (and 2 in the fixed kernels) an input
//   row is loaded once for every output row of the tile it feeds. Fixed kernels: 3x3/5x5/7x7 with
//   stride 1/1 or 2/2 (fully unrolled); runtime-size kernels for everything else (any size,
//   dilation, stride, multiplier; deeper row tiles on narrow planes). Outputs >= 16 MB go through
//   a staging buffer and non-temporal stores. float32 3x3 stride-1 forward on planes up to 128
//   wide skips the scratch: its tiles read the input rows in place (direct3_tile); so do float32
//   3x3 / 5x5 stride-2 forwards up to 4 output vectors wide, splitting the column phases in
//   registers (direct_s2_tile).
//   - grad input: the same engine on a virtual input, grad_output zero-inserted by the stride and
//     padded by (K-1)*dil - pad, correlated with the flipped weights (summing the M outputs of
//     each input channel). float32 3x3 stride 1, multiplier 1: the in-place tiles on grad_output,
//     with software prefetch of the rows ahead.
//   - grad weight + bias of kernels >= 9x9 (row stride and dilation 1): gw_cl_pixels_shared on
//     rows transposed into pixel vectors (see the channels_last paths). Others below.
//   - grad weight + bias: task = (output channel, fixed batch chunk); the forward scratch rows,
//     row-shared tap tiles (KHB x KWB accumulators, rows innermost) where the row stride and
//     dilation are 1, tap blocks otherwise; the bias is summed in the same pass. With grad input
//     asked for too, these tasks also compute each plane's grad input right after its weight
//     gradient (dw_simd_bwd_one_pass.h), so grad_output is read from memory once.
//
// * pixels (channels_last output and input, multiplier 1). One task = a band of output rows;
//   channel vectors x P pixels in registers (P = 7 where that computes fewer pixels per row than
//   the default 6 / 4); per row a table of column pointers (XNNPACK-style: padding columns point
//   at a zero buffer, padding rows are skipped), built once for all channel blocks; per row,
//   channel chunks sized so a tile's input window stays in L1, the row's tiles inside a chunk,
//   and before each tile an L1 prefetch of its share of the source rows the next row needs.
//   Fixed 3/5/7-wide kernels load each column once for every pixel of the tile it feeds.
//   Grad input is the same engine with row/column maps onto grad_output. Grad weight + bias: fixed
//   row groups with per-group partial sums reduced in group order; interior pixels of fixed
//   kernels by direct addressing with software prefetch, borders through the pointer table.
//   When both are asked for, grad input and grad weight run in one pass over grad_output
//   (dw_simd_bwd_one_pass.h): the grad-input rows right after the weight-gradient row that completes
//   them, so grad_output is read from memory once.
//   Kernels of >= kClPlanesTaps taps on planes of more than 16x16 pixels (grad weight: 10x10):
//   blocks of L channels are transposed into zero-padded planes and computed by the planes
//   kernels (forward, grad input; grad weight + bias with row stride or dilation > 1). Grad weight
//   + bias with row stride and dilation 1: the row-shared tap tiles on pixel vectors of a
//   zero-padded pixel-major copy of each image's channel block (gw_cl_pixels_shared).
//
// * NCHW on narrow planes (float32 and bfloat16, multiplier 1, output width <= one vector: 7x7
//   and 14x14 maps, except float32 3x3 stride 1 on 14x14 maps: the direct planes tiles measured
//   faster there): the
//   planes kernels would fill a fraction of a vector per row, so a task takes a chunk
//   of channels of one image, transposes it into an L2-resident pixel-major buffer, runs the
//   pixels kernels there and transposes the result back (forward, grad input; grad weight on
//   7-wide rows and stride-2 14-wide rows, per-image sums added in image order).
// * NCHW 7x7 / 14x14 maps under "same" 3x3 / 5x5 / 7x7 kernels at stride 1 (AVX-512; forward, and
//   grad input at multiplier 1; grad weight + bias for 3x3 / 5x5 at multiplier 1), planes with
//   unit-stride rows: dw_simd_flat.h holds each plane in registers as ceil(H*W / 16) full vectors
//   and forms every tap's input with a lane shift across two of them (ahead of the two routes
//   above and below for those problems).
// * narrow images under wide kernels (stride 1, same width <= 15 (AVX2: 7), kernel at least 7
//   wide or as wide as the image: RepLKNet 13x13 / ConvNeXt 7x7 on 7x7 and 14x14 maps): the
//   row's input pixels and a tile of 7 outputs in registers, accumulated by diagonals (one weight
//   vector per input-output column offset), skipping the taps in the padding; forward and grad
//   input, both layouts (NCHW through the chunks above); grad weight likewise for images up to
//   8 wide (AVX2: 4), products summed by diagonal over all images in registers.
//
// Determinism: every output element is computed by one task in a fixed order, and weight/bias
// gradients are reduced over fixed, shape-derived chunks in a fixed order, so results are
// bitwise identical for any thread count.
//
// Accumulation is fp32 for both fp32 and bf16 tensors; bf16 values are widened on load (the
// planes engine widens once, into the scratch) and rounded to nearest even on store exactly as
// c10::BFloat16 does.

namespace dsconv {
namespace cpu {
namespace simd {
namespace DSCONV_SIMD_NS {
namespace {

using V = Vec::V;
using Mask = Vec::Mask;
constexpr int L = Vec::L;
typedef uint16_t bf16_t;

// ---------------------------------------------------------------------------------------------
// Small helpers (own versions instead of std:: templates: keep all ISA code in this TU).

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t clampi(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t rup(int64_t a, int64_t b) { return cdiv(a, b) * b; }

// 64-byte aligned heap buffer (scratch per thread / per call).
// A per-thread float buffer that grows as needed (for thread_local scratch).
struct TlsFloats {
  float* p = nullptr;
  int64_t n = 0;
  float* get(int64_t want) {
    if (want > n) {
      std::free(p);
      n = rup(imax(want, 1024), 1024);
      p = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(n) * sizeof(float)));
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
  ~TlsFloats() { std::free(p); }
};

struct Buf {
  void* p = nullptr;
  explicit Buf(int64_t bytes) {
    const size_t n = static_cast<size_t>(rup(imax(bytes, 64), 64));
    p = std::aligned_alloc(64, n);
    if (!p) throw std::bad_alloc();
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  template <class U>
  U* as() const { return static_cast<U*>(p); }
};

inline void zero_floats(float* d, int64_t n) {
  int64_t i = 0;
  const V z = Vec::zero();
  for (; i + L <= n; i += L) Vec::store(d + i, z);
  if (i < n) Vec::store(d + i, z, Vec::mask(static_cast<int>(n - i)));
}

// d[0, n) = float(s[0, n)) for unit-stride s.
template <class T>
inline void widen_copy(float* d, const T* s, int64_t n) {
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    const V a = Vec::load(s + i), b = Vec::load(s + i + L), c = Vec::load(s + i + 2 * L), e = Vec::load(s + i + 3 * L);
    Vec::store(d + i, a);
    Vec::store(d + i + L, b);
    Vec::store(d + i + 2 * L, c);
    Vec::store(d + i + 3 * L, e);
  }
  for (; i + L <= n; i += L) Vec::store(d + i, Vec::load(s + i));
  if (i < n) {
    const Mask m = Vec::mask(static_cast<int>(n - i));
    Vec::store(d + i, Vec::load(s + i, m), m);
  }
}

// Copies n contiguous elements with non-temporal stores where dst is vector-aligned (large outputs:
// no read-for-ownership of lines that are overwritten anyway, and no cache pollution).
template <class T>
inline void stream_copy(T* dst, const T* src, int64_t n) {
  constexpr int64_t VB = L * 4;  // bytes per float vector
  int64_t i = 0;
  const int64_t mis = reinterpret_cast<uintptr_t>(dst) % VB;
  if (mis % sizeof(T) != 0) {
    std::memcpy(dst, src, n * sizeof(T));
    return;
  }
  if (mis != 0) {
    i = imin(n, static_cast<int64_t>((VB - mis) / sizeof(T)));
    std::memcpy(dst, src, i * sizeof(T));
  }
  char* d = reinterpret_cast<char*>(dst + i);
  const char* s = reinterpret_cast<const char*>(src + i);
  const int64_t nb = (n - i) * static_cast<int64_t>(sizeof(T));
  int64_t b = 0;
  for (; b + VB <= nb; b += VB)
    Vec::stream(reinterpret_cast<float*>(d + b), Vec::load(reinterpret_cast<const float*>(s + b)));
  if (b < nb) std::memcpy(d + b, s + b, nb - b);
}

// Software prefetch of the cache lines of [p, p + bytes). Volatile asm: GCC deletes a loop
// holding only _mm_prefetch as side-effect free (the L2 variant had vanished from the object
// code entirely).
inline void prefetch_bytes(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  const char* e = c + bytes;
  for (c = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(c) & ~uintptr_t(63)); c < e; c += 64)
    __asm__ volatile("prefetcht0 %0" : : "m"(*c));
}
inline void prefetch_bytes_l2(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  const char* e = c + bytes;
  for (c = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(c) & ~uintptr_t(63)); c < e; c += 64)
    __asm__ volatile("prefetcht1 %0" : : "m"(*c));
}
constexpr int64_t kPrefetchRows = 6;  // input rows prefetched ahead of the one being prepared
constexpr int64_t kPrepLead = 4;      // scratch rows prepared ahead of the first one read
// how far ahead of the row being prepared to prefetch (NCHW planes): 2 KiB left 112-wide layers
// (448-byte rows, 6 rows ahead) at 36-39 GB/s, 6 KiB gives 40-45 (2 threads, this VM)
constexpr int64_t kPrefetchBytes = 6144;

// Rows ahead to prefetch for rows of `row_bytes` in tasks of `task_rows` virtual rows (the
// lookahead reaches at most into the next task).
inline int64_t prefetch_rows_ahead(int64_t row_bytes, int64_t task_rows) {
  return imax(1, imin(imax(kPrefetchRows, kPrefetchBytes / imax(1, row_bytes)), task_rows));
}

// Prefetches virtual row Y of a planes task's source (row Y - pad of `plane`, rows row_stride
// apart, H of them) or, past the task's last virtual row Y1, row nY0 + (Y - Y1) of the next
// task's plane `next` (nullptr: no next task).
template <class T>
inline void prefetch_src_row(const T* plane, const T* next, int64_t Y, int64_t Y1, int64_t nY0, int64_t pad,
                             int64_t H, int64_t row_stride, int64_t bytes) {
  if (Y >= Y1) {
    plane = next;
    Y = nY0 + (Y - Y1);
  }
  const int64_t r = Y - pad;
  if (plane && r >= 0 && r < H) prefetch_bytes(plane + r * row_stride, bytes);
}

// prefetch_src_row for virtual rows [Ya, Yb): each plane's part in one pass over its lines where
// the rows are contiguous (row_stride elements of `bytes` bytes), else row by row. (Per row, the
// calls cost the direct 3x3 forward on hot 28x28 planes ~20% of its time.)
template <class T>
inline void prefetch_src_rows(const T* plane, const T* next, int64_t Ya, int64_t Yb, int64_t Y1, int64_t nY0,
                              int64_t pad, int64_t H, int64_t row_stride, int64_t bytes) {
  if (row_stride * static_cast<int64_t>(sizeof(T)) != bytes) {
    for (int64_t Y = Ya; Y < Yb; ++Y) prefetch_src_row(plane, next, Y, Y1, nY0, pad, H, row_stride, bytes);
    return;
  }
  auto part = [&](const T* pl, int64_t ya, int64_t yb) {  // virtual rows [ya, yb) of pl
    const int64_t r0 = imax(0, ya - pad), r1 = imin(H, yb - pad);
    if (pl && r0 < r1) prefetch_bytes(pl + r0 * row_stride, (r1 - r0) * bytes);
  };
  part(plane, Ya, imin(Yb, Y1));
  if (Yb > Y1) part(next, nY0 + imax(0, Ya - Y1), nY0 + (Yb - Y1));
}

// Prefetch of the pixels engine's next source rows: 1 into L1 (prefetcht0, the default), 2 into
// L2 (prefetcht1), 0 none. DSCONV_PIX_PF overrides (A/B measurements). In-process A/B on the
// Intel Xeon VM (2 threads, batch 32, channels_last forward, 2026-11-26): none is 16-39% slower
// on 3x3 / 5x5 / 7x7 layers; L2 instead of L1 within noise (-6% to +9%).
inline int pix_prefetch_mode() {
  static const int m = [] {
    const char* e = std::getenv("DSCONV_PIX_PF");
    return (e && *e) ? std::atoi(e) : 1;
  }();
  return m;
}

// Software prefetch of the next output row's rows in the channels_last weight gradient
// (gw_pix_row): -1 automatic (the default), 0 never, 1 always (into L1). DSCONV_GW_PF=0|1
// overrides; read on every call (once per op), so that one process can A/B it.
inline int gw_prefetch_mode() {
  const char* e = std::getenv("DSCONV_GW_PF");
  return (e && *e) ? std::atoi(e) : -1;
}

// Output rows per chunk of the channels_last weight gradient (gw_pix_rows): 0 automatic (the
// default), n >= 1 forces n (1: one row at a time, each channel block's accumulators loaded and
// stored per row). DSCONV_GW_ROWS overrides; read on every call, for in-process A/B.
inline int64_t gw_rows_override() {
  const char* e = std::getenv("DSCONV_GW_ROWS");
  return (e && *e) ? imax(0, static_cast<int64_t>(std::atoll(e))) : 0;
}

// Outputs of at least this many bytes are written with non-temporal stores (they can't stay in
// the L3). DSCONV_STREAM_MB overrides the 16 MiB, and the pixels engine's 8 MiB below (A/B
// measurements). Measured on an Intel Xeon VM whose L3 ran no faster than its memory (2026-11-26,
// in-process A/B): 2 MiB made channels_last 32x576x14x14 3x3 forward (14.4 MiB out) 23-34% faster
// but NCHW 32x576x14x14 (transposed chunks) 22-25% slower and outputs of 6-13 MiB 0-9% slower,
// so the default stays for the NCHW paths.
inline int64_t stream_mb_override() {
  static const int64_t v = [] {
    const char* e = std::getenv("DSCONV_STREAM_MB");
    return (e && *e) ? static_cast<int64_t>(std::atoll(e)) << 20 : int64_t(-1);
  }();
  return v;
}
inline int64_t stream_bytes_threshold() {
  const int64_t v = stream_mb_override();
  return v >= 0 ? v : int64_t(16) << 20;
}
// The pixels engine (channels_last forward and grad input): 8 MiB. In-process A/B on the same VM
// (2026-11-27, 2 threads, batch 32, 9 alternating rounds, 17 channels_last layers of
// MobileNetV1/V2 and EfficientNet-B0, 3x3 / 5x5): forward+backward geomean 1.07-1.08x over two
// runs against 16 MiB (the 9.6-14.5 MiB outputs of the 14x14 layers: 32x576x14x14 stride 2 1.27x,
// 384x14x14 1.19x, 576x14x14 1.14x; 6-7 MiB 7x7 layers 0.97-1.07x), forward alone 1.04-1.08x
// (14x14 layers 1.19-1.22x). 4 MiB: forward+backward 1.07x, but 7x7 forward 0.90-0.94x.
inline int64_t pix_stream_bytes_threshold() {
  const int64_t v = stream_mb_override();
  return v >= 0 ? v : int64_t(8) << 20;
}

// d[x] = s[(x - pad) * ss] for the x in [0, len) with 0 <= x - pad < n; other x untouched.
template <class T>
inline void copy_data(float* d, int64_t len, const T* s, int64_t ss, int64_t n, int64_t pad) {
  const int64_t lo = clampi(pad, 0, len), hi = clampi(pad + n, 0, len);
  if (hi <= lo) return;
  if (ss == 1) {
    widen_copy(d + lo, s + (lo - pad), hi - lo);
  } else {
    const T* src = s + (lo - pad) * ss;
    for (int64_t x = 0; x < hi - lo; ++x) d[lo + x] = to_f32(src[x * ss]);
  }
}

// d[x] = s[(x - pad) * ss] where 0 <= x - pad < n, 0 elsewhere, for x in [0, len).
template <class T>
inline void copy_padded(float* d, int64_t len, const T* s, int64_t ss, int64_t n, int64_t pad) {
  const int64_t lo = clampi(pad, 0, len), hi = clampi(pad + n, 0, len);
  if (hi <= lo) {
    zero_floats(d, len);
    return;
  }
  zero_floats(d, lo);
  if (ss == 1) {
    widen_copy(d + lo, s + (lo - pad), hi - lo);
  } else {
    const T* src = s + (lo - pad) * ss;
    for (int64_t x = 0; x < hi - lo; ++x) d[lo + x] = to_f32(src[x * ss]);
  }
  zero_floats(d + hi, len - hi);
}

// ---------------------------------------------------------------------------------------------
// Planes engine

// One engine problem: out[o][q] = bias + sum_src sum_{kh,kw} w_src[kh][kw] *
//                                 S_src[o*sh + kh*dh][koff[kw] + q]
// where S_src is the scratch (rows of RS floats, row 0 = virtual row Y0 of the band).
struct PlaneGeom {
  int64_t OH, OW;     // engine output plane
  int64_t KH, KW;
  int64_t sh, dh;     // virtual row stride / dilation
  int64_t PWp, RS;    // per-phase row width, scratch row stride (floats)
  int64_t NV;         // vectors per output row
  int tail;           // valid lanes in the last vector of a row (1..L)
  int kind;           // kernel family, see plane_rows
  const int64_t* koff;
};

// f(integral_constant<int, I>()) for each I of the sequence, in order (compile-time row indices).
template <class F, int... I>
__attribute__((always_inline)) inline void for_each_ic(const F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>()), ...);
}

// Stores an R x NV_T register tile at o (rows osh apart); the last vector masked by tm if partial.
template <class T, int R, int NV_T>
__attribute__((always_inline)) inline void store_tile(const V (&acc)[R][NV_T], T* o, int64_t osh, bool partial,
                                                      Mask tm) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    T* orow = o + r * osh;
#pragma GCC unroll 8
    for (int v = 0; v < NV_T - 1; ++v) Vec::store(orow + v * L, acc[r][v]);
    if (partial)
      Vec::store(orow + (NV_T - 1) * L, acc[r][NV_T - 1], tm);
    else
      Vec::store(orow + (NV_T - 1) * L, acc[r][NV_T - 1]);
  }
}

// R output rows x NV_T vectors, all taps, all sources. s: scratch at the tile's first output row
// and first column; o: output at the same place.
template <class T, int R, int NV_T, int KH_, int KW_, int SH_>
__attribute__((always_inline)) inline void plane_tile(const PlaneGeom& g, const float* s, int64_t src_stride,
                                                      const float* const* ws, int nsrc, float bias, T* o,
                                                      int64_t osh, bool partial, Mask tm) {
  const int64_t KH = KH_ ? KH_ : g.KH, KW = KW_ ? KW_ : g.KW;
  const int64_t RS = g.RS;
  const int64_t* koff = g.koff;
  V acc[R][NV_T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV_T; ++v) acc[r][v] = Vec::set1(bias);

  for (int si = 0; si < nsrc; ++si) {
    const float* ss = s + si * src_stride;
    const float* w = ws[si];
    if constexpr (SH_ > 0) {
      // Row j of the tile's window feeds output row r with kh = j - r*SH_ (dilation 1).
      const int64_t J = (R - 1) * SH_ + KH;
      if constexpr (KH_ > 0) {
        // Fixed kernels: stride (SH_, SH_), so column phase kw % SH_ and offset kw / SH_ are
        // compile-time; weights are re-read per tile (embedded broadcasts, no hoisting/spills).
        const int64_t PWp = g.PWp;
#pragma GCC unroll 64
        for (int64_t j = 0; j < J; ++j) {
          // a fresh (opaque) weight pointer per input row: broadcasts are not kept live across
          // rows (they would spill), each is loaded where used (one load per R*V... V FMAs)
          __asm__("" : "+r"(w));
          const float* row = ss + j * RS;
#pragma GCC unroll 16
          for (int64_t kw = 0; kw < KW; ++kw) {
            V x[NV_T];
            const float* rp = row + (kw % SH_) * PWp + kw / SH_;
#pragma GCC unroll 8
            for (int v = 0; v < NV_T; ++v) {
              x[v] = Vec::load(rp + v * L);
              __asm__("" : "+v"(x[v]));  // one (unaligned) load feeds every row of the tile
            }
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
              const int64_t kh = j - r * SH_;
              if (kh >= 0 && kh < KH) {
                const V wv = Vec::set1(w[kh * KW + kw]);
#pragma GCC unroll 8
                for (int v = 0; v < NV_T; ++v) acc[r][v] = Vec::fmadd(wv, x[v], acc[r][v]);
              }
            }
          }
        }
      } else {
        // Input row j with the tile rows [RLO, RHI) that take it (compile-time), kh = j - r * SH_.
        // Weights transposed (plane_rows_k): the R taps of column kw at wk[r * SH_].
        auto row_taps = [&](int64_t j, auto rlo, auto rhi) __attribute__((always_inline)) {
          constexpr int RLO = decltype(rlo)::value, RHI = decltype(rhi)::value;
          const float* row = ss + j * RS;
          const float* wj = w + (KH - 1 - j);
#pragma GCC unroll 4
          for (int64_t kw = 0; kw < KW; ++kw) {
            V x[NV_T];
            const float* rp = row + koff[kw];
            const float* wk = wj + kw * KH;
#pragma GCC unroll 8
            for (int v = 0; v < NV_T; ++v) x[v] = Vec::load(rp + v * L);
#pragma GCC unroll 8
            for (int r = RLO; r < RHI; ++r) {
              const V wv = Vec::set1(wk[r * SH_]);
#pragma GCC unroll 8
              for (int v = 0; v < NV_T; ++v) acc[r][v] = Vec::fmadd(wv, x[v], acc[r][v]);
            }
          }
        };
        using R0 = std::integral_constant<int, 0>;
        using RR = std::integral_constant<int, R>;
        if (SH_ == 1 && KH >= R - 1) {
          // Edge rows at compile time (zero weights are not an option: 0 * inf would turn finite
          // outputs into NaN): head row i feeds tile rows [0, i], tail row KH + i rows [i+1, R).
          // They carried runtime tests per row before, ~a third of the time at 31x31.
          for_each_ic([&](auto I) __attribute__((always_inline)) {
            row_taps(decltype(I)::value, R0(), std::integral_constant<int, decltype(I)::value + 1>());
          }, std::make_integer_sequence<int, R - 1>());
          for (int64_t j = R - 1; j < KH; ++j) row_taps(j, R0(), RR());
          for_each_ic([&](auto I) __attribute__((always_inline)) {
            row_taps(KH + decltype(I)::value, std::integral_constant<int, decltype(I)::value + 1>(), RR());
          }, std::make_integer_sequence<int, R - 1>());
        } else {
          for (int64_t j = 0; j < J; ++j) {
            const float* row = ss + j * RS;
            if (j >= (R - 1) * SH_ && j < KH) {  // every row of the tile takes this input row
              row_taps(j, R0(), RR());
            } else {
              // Edge rows when the kernel is shorter than the tile: only some tile rows take row j
              // (branches on loop-invariant flags: measured faster than predicated FMAs).
              bool ok[R];
#pragma GCC unroll 8
              for (int r = 0; r < R; ++r) ok[r] = j - r * SH_ >= 0 && j - r * SH_ < KH;
              for (int64_t kw = 0; kw < KW; ++kw) {
                V x[NV_T];
#pragma GCC unroll 8
                for (int v = 0; v < NV_T; ++v) x[v] = Vec::load(row + koff[kw] + v * L);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) {
                  if (ok[r]) {
                    const V wv = Vec::set1(w[kw * KH + (KH - 1 - j) + r * SH_]);
#pragma GCC unroll 8
                    for (int v = 0; v < NV_T; ++v) acc[r][v] = Vec::fmadd(wv, x[v], acc[r][v]);
                  }
                }
              }
            }
          }
        }
      }
    } else {
      const int64_t rstep = g.sh * RS, dstep = g.dh * RS;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const float* row = ss + kh * dstep;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const V wv = Vec::set1(w[kh * KW + kw]);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            const float* rp = row + r * rstep + koff[kw];
#pragma GCC unroll 8
            for (int v = 0; v < NV_T; ++v) acc[r][v] = Vec::fmadd(wv, Vec::load(rp + v * L), acc[r][v]);
          }
        }
      }
    }
  }

  store_tile<T, R, NV_T>(acc, o, osh, partial, tm);
}

// A row group (RR rows) across the full width: VM-vector tiles and one narrower remainder tile.
template <class T, int RR, int VM, int KH_, int KW_, int SH_>
inline void plane_row_group(const PlaneGeom& g, const float* s, int64_t src_stride, const float* const* ws,
                            int nsrc, float bias, T* o, int64_t osh) {
  const Mask tm = Vec::mask(g.tail);
  const bool tail_partial = g.tail < L;
  int64_t v0 = 0;
  for (; v0 + VM <= g.NV; v0 += VM)
    plane_tile<T, RR, VM, KH_, KW_, SH_>(g, s + v0 * L, src_stride, ws, nsrc, bias, o + v0 * L, osh,
                                          tail_partial && v0 + VM == g.NV, tm);
  const int64_t rem = g.NV - v0;
  if (rem <= 0) return;
  const float* sv = s + v0 * L;
  T* ov = o + v0 * L;
  switch (rem) {
#define DSCONV_REM(n)                                                                                     \
  case n:                                                                                                 \
    if constexpr (n < VM)                                                                                 \
      plane_tile<T, RR, n, KH_, KW_, SH_>(g, sv, src_stride, ws, nsrc, bias, ov, osh, tail_partial, tm); \
    break;
    DSCONV_REM(1)
    DSCONV_REM(2)
    DSCONV_REM(3)
    DSCONV_REM(4)
    DSCONV_REM(5)
    DSCONV_REM(6)
    DSCONV_REM(7)
#undef DSCONV_REM
    default:
      break;
  }
}

// Output rows [o0, o1) of one output plane. scratch row 0 = virtual row Y0.
template <class T, int R, int VM, int KH_, int KW_, int SH_>
void plane_rows_k(const PlaneGeom& g, const float* scratch, int64_t Y0, int64_t src_stride, const float* const* ws,
                  int nsrc, float bias, T* out, int64_t osh, int64_t o0, int64_t o1) {
  if constexpr (KH_ == 0 && SH_ > 0) {
    // The shared kernels (runtime size) read the weights transposed, wt[kw][KH - 1 - kh] =
    // w[kh][kw]: a tile's R rows then take the taps of one column at fixed offsets wk[r * SH_] of
    // one pointer. With w[kh][kw] they sat R * KW apart, a register per row that GCC spilled and
    // reloaded from the stack in the FMA loop. In-process A/B, Intel Xeon VM, 2026-11-27, 2
    // threads: 16x256x32x32 31x31 forward and grad input, NCHW and channels_last, 1.21-1.24x
    // faster (NCHW forward 96 -> 117 GFLOP/s); 13x13 layers (other kernels) unchanged.
    // Per source, then the source pointers, in a per-thread buffer (no std::vector here: its
    // members would be emitted by both ISA files, see dw_simd_vec.h).
    static thread_local TlsFloats tb;
    const int64_t taps = g.KH * g.KW;
    const int64_t tp_off = rup(nsrc * taps, 16);  // the pointers 64-byte aligned
    float* d = tb.get(tp_off + nsrc * 2);
    const float** tp = reinterpret_cast<const float**>(d + tp_off);
    for (int si = 0; si < nsrc; ++si) {
      for (int64_t kh = 0; kh < g.KH; ++kh)
        for (int64_t kw = 0; kw < g.KW; ++kw) d[si * taps + kw * g.KH + (g.KH - 1 - kh)] = ws[si][kh * g.KW + kw];
      tp[si] = d + si * taps;
    }
    ws = tp;
  }
  int64_t o = o0;
  for (; o + R <= o1; o += R)
    plane_row_group<T, R, VM, KH_, KW_, SH_>(g, scratch + (o * g.sh - Y0) * g.RS, src_stride, ws, nsrc, bias,
                                             out + o * osh, osh);
  for (; o < o1; ++o)
    plane_row_group<T, 1, VM, KH_, KW_, SH_>(g, scratch + (o * g.sh - Y0) * g.RS, src_stride, ws, nsrc, bias,
                                             out + o * osh, osh);
}

// Kernel families (PlaneGeom::kind).
enum PlaneKind : int {
  kP3s1, kP3s2, kP5s1, kP5s2, kP7s1, kP7s2,  // fixed k x k, dilation 1, stride (s, s)
  kPShared,                                  // runtime size, row stride 1 / row dilation 1
  kPShared4,                                 //   the same with 4-row tiles (narrow planes)
  kPShared8,                                 //   the same with 8-row tiles (narrow planes)
  kPGeneral,                                 // runtime size, any stride / dilation
};

// Register tiles: AVX-512 has 32 vector registers, AVX2 16.
constexpr int kVM = 4;                       // vectors per tile along the row
constexpr int kRFixed = L == 16 ? 4 : 2;      // rows per tile, fixed kernels
constexpr int kRShared = L == 16 ? 4 : 2;    // rows per tile, runtime-size kernels

int plane_kind(int64_t KH, int64_t KW, int64_t sh, int64_t sw, int64_t dh, int64_t dw) {
  if (KH == KW && dh == 1 && dw == 1 && sh == sw && (sh == 1 || sh == 2)) {
    if (KH == 3) return sh == 1 ? kP3s1 : kP3s2;
    if (KH == 5) return sh == 1 ? kP5s1 : kP5s2;
    if (KH == 7) return sh == 1 ? kP7s1 : kP7s2;
  }
  return (sh == 1 && dh == 1) ? kPShared : kPGeneral;
}

// Deeper row tiles of the runtime-size kernel on narrow planes (one or two vectors per row), for
// enough independent accumulators; not deeper than the kernel is tall (the window's edge rows
// feed only part of the tile). Measured on Zen 5.
int plane_kind_for_width(int kind, int64_t NV, int64_t KH) {
  if (kind != kPShared) return kind;
  if (L == 16) return NV == 2 && KH >= 16 ? kPShared8 : kind;
  if (NV == 1) return KH >= 16 ? kPShared8 : kPShared4;
  return NV == 2 ? kPShared4 : kind;
}

template <class T>
void plane_rows(const PlaneGeom& g, const float* scratch, int64_t Y0, int64_t src_stride, const float* const* ws,
                int nsrc, float bias, T* out, int64_t osh, int64_t o0, int64_t o1) {
  switch (g.kind) {
#define DSCONV_K(kind, R, K, S)                                                                          \
  case kind:                                                                                              \
    plane_rows_k<T, R, kVM, K, K, S>(g, scratch, Y0, src_stride, ws, nsrc, bias, out, osh, o0, o1); \
    break;
    DSCONV_K(kP3s1, kRFixed, 3, 1)
    DSCONV_K(kP3s2, kRFixed, 3, 2)
    DSCONV_K(kP5s1, kRFixed, 5, 1)
    DSCONV_K(kP5s2, kRFixed, 5, 2)
    DSCONV_K(kP7s1, kRFixed, 7, 1)
    DSCONV_K(kP7s2, kRFixed, 7, 2)
    DSCONV_K(kPShared, kRShared, 0, 1)
    DSCONV_K(kPShared4, 4, 0, 1)
    DSCONV_K(kPShared8, 8, 0, 1)
#undef DSCONV_K
    default:
      plane_rows_k<T, 1, kVM, 0, 0, 0>(g, scratch, Y0, src_stride, ws, nsrc, bias, out, osh, o0, o1);
      break;
  }
}

// Scratch rows hold the phases of the input columns: phase ph, position x <-> padded input
// column x*sw + ph <-> input column x*sw + ph - pad_l.
// Scratch rows are zeroed once per thread and kept zero outside the data positions, so preparing
// a row writes only its data; `dirty` marks rows holding data (cleared when a later band needs
// the row as padding).
//
// Scratch row for one input row (src == nullptr: zero row): phases of the zero-padded row.
template <class T>
void prep_fwd_row_slow(float* dst, const T* src, int64_t in_sw, int64_t W, int64_t pad_l, int64_t phases,
                       int64_t PWp, float* tmp, bool* dirty);

// Stride-2 rows (2 phases, unit column stride): the chunks of L phase positions that hold data,
// with the source column and the lane masks of their two source vectors, worked out once per
// problem instead of once per row (per row, the mask arithmetic and the out-of-line call cost
// about twice the stride-2 3x3 FMAs: 32x144x56x56 k3 s2 spent 37% of its time preparing rows).
struct Phase2Plan {
  static constexpr int kMax = 16;
  int n = 0;  // 0: not applicable (the general path prepares the rows)
  int64_t x[kMax], b[kMax];
  Mask lo[kMax], hi[kMax];
};

inline Phase2Plan phase2_plan(int64_t phases, int64_t in_sw, int64_t W, int64_t pad_l, int64_t PWp) {
  Phase2Plan pl;
  if (phases != 2 || in_sw != 1 || PWp % L != 0) return pl;
  int n = 0;
  for (int64_t x = 0; x < PWp; x += L) {  // as prep_fwd_row_slow's phases == 2 branch
    const int64_t b = 2 * x - pad_l;
    if (b + 2 * L <= 0 || b >= W) continue;  // all padding: stays zero
    if (n == Phase2Plan::kMax) return Phase2Plan{};
    pl.x[n] = x;
    pl.b[n] = b;
    pl.lo[n] = Vec::mask_range(static_cast<int>(clampi(-b, 0, L)), static_cast<int>(clampi(W - b, 0, L)));
    pl.hi[n] = Vec::mask_range(static_cast<int>(clampi(-b - L, 0, L)), static_cast<int>(clampi(W - b - L, 0, L)));
    ++n;
  }
  pl.n = n;
  return pl;
}

template <class T>
__attribute__((always_inline)) inline void prep_fwd_row(float* dst, const T* src, int64_t in_sw, int64_t W,
                                                        int64_t pad_l, int64_t phases, int64_t PWp, float* tmp,
                                                        bool* dirty, const Phase2Plan* p2 = nullptr) {
  if (sizeof(T) == 4 && src && p2 && p2->n) {  // float (AVX2's 16-bit masked loads take other masks)
    *dirty = 1;
    for (int i = 0; i < p2->n; ++i) {
      const T* s = src + p2->b[i];
      V e, od;
      Vec::deinterleave2(Vec::load(s, p2->lo[i]), Vec::load(s + L, p2->hi[i]), &e, &od);
      Vec::store(dst + p2->x[i], e);
      Vec::store(dst + PWp + p2->x[i], od);
    }
    return;
  }
  // common case inline: unit stride, no stride phases, a row of at most 4 vectors inside the scratch
  if (src && phases == 1 && in_sw == 1 && pad_l >= 0 && pad_l + W <= PWp && W <= 4 * L) {
    *dirty = 1;
    float* d = dst + pad_l;
    int64_t i = 0;
    for (; i + L <= W; i += L) Vec::store(d + i, Vec::load(src + i));
    if (i < W) {
      const Mask m = Vec::mask(static_cast<int>(W - i));
      Vec::store(d + i, Vec::load(src + i, m), m);
    }
    return;
  }
  prep_fwd_row_slow(dst, src, in_sw, W, pad_l, phases, PWp, tmp, dirty);
}

// `rows` consecutive stride-2 float32 input rows (all inside the input) into scratch rows RS apart,
// as prep_fwd_row with a Phase2Plan of NC chunks: one loop with the chunk geometry in registers
// instead of a call with its branches per row. pf(r) is called before row r is read (the caller's
// prefetch ahead; issued row by row, not as one burst before the run: a burst of a few hundred
// prefetches made cold 56x56 and 112x112 stride-2 layers 15-35% slower).
template <int NC, class Pf>
__attribute__((always_inline)) inline void prep_rows_p2(const Phase2Plan& pl, const float* src, int64_t in_sh,
                                                        float* dst, int64_t RS, int64_t PWp, int64_t rows,
                                                        bool* dirty, const Pf& pf) {
  int64_t x[NC], b[NC];
  Mask lo[NC], hi[NC];
#pragma GCC unroll 8
  for (int i = 0; i < NC; ++i) {
    x[i] = pl.x[i];
    b[i] = pl.b[i];
    lo[i] = pl.lo[i];
    hi[i] = pl.hi[i];
  }
  for (int64_t r = 0; r < rows; ++r, src += in_sh, dst += RS) {
    pf(r);
#pragma GCC unroll 8
    for (int i = 0; i < NC; ++i) {
      V e, od;
      Vec::deinterleave2(Vec::load(src + b[i], lo[i]), Vec::load(src + b[i] + L, hi[i]), &e, &od);
      Vec::store(dst + x[i], e);
      Vec::store(dst + PWp + x[i], od);
    }
    dirty[r] = true;
  }
}

// `rows` consecutive stride-1 float32 input rows (unit column stride, all inside the input) into
// scratch rows RS apart at column pad_l, as prep_fwd_row's inline case, in one loop; pf as above.
template <class Pf>
__attribute__((always_inline)) inline void prep_rows_s1(const float* src, int64_t in_sh, float* dst, int64_t RS,
                                                        int64_t W, int64_t rows, bool* dirty, const Pf& pf) {
  const int64_t nfull = W / L;
  const Mask tm = Vec::mask(static_cast<int>(W - nfull * L));
  const bool tail = W > nfull * L;
  for (int64_t r = 0; r < rows; ++r, src += in_sh, dst += RS) {
    pf(r);
    int64_t i = 0;
    for (; i < nfull * L; i += L) Vec::store(dst + i, Vec::load(src + i));
    if (tail) Vec::store(dst + i, Vec::load(src + i, tm), tm);
    dirty[r] = true;
  }
}

template <class T>
void prep_fwd_row_slow(float* dst, const T* src, int64_t in_sw, int64_t W, int64_t pad_l, int64_t phases,
                       int64_t PWp, float* tmp, bool* dirty) {
  if (!src) {
    if (*dirty) zero_floats(dst, phases * PWp);
    *dirty = 0;
    return;
  }
  *dirty = 1;
  if (phases == 1) {
    copy_data(dst, PWp, src, in_sw, W, pad_l);
    return;
  }
  if (phases == 2 && in_sw == 1) {
    // Deinterleave straight from the source: chunk x0 of both phases is src[b, b + 2L) with
    // b = 2*x0 - pad_l; lanes outside [0, W) load as zeros (masked, never touched).
    for (int64_t x = 0; x < PWp; x += L) {  // PWp is a multiple of L
      const int64_t b = 2 * x - pad_l;
      if (b + 2 * L <= 0 || b >= W) continue;  // all padding: already zero
      V lo, hi;
      if (b >= 0 && b + 2 * L <= W) {
        lo = Vec::load(src + b);
        hi = Vec::load(src + b + L);
      } else {
        lo = Vec::load_range(src + b, static_cast<int>(clampi(-b, 0, L)), static_cast<int>(clampi(W - b, 0, L)));
        hi = Vec::load_range(src + b + L, static_cast<int>(clampi(-b - L, 0, L)),
                             static_cast<int>(clampi(W - b - L, 0, L)));
      }
      V e, od;
      Vec::deinterleave2(lo, hi, &e, &od);
      Vec::store(dst + x, e);
      Vec::store(dst + PWp + x, od);
    }
    return;
  }
  copy_padded(tmp, phases * PWp, src, in_sw, W, pad_l);
  for (int64_t ph = 0; ph < phases; ++ph)
    for (int64_t x = 0; x < PWp; ++x) dst[ph * PWp + x] = tmp[x * phases + ph];
}

// Zeroed per-thread scratch with per-row dirty flags. The flags are bool, not uint8_t: a store
// through an unsigned char pointer may alias any object (as vector stores may), which makes the
// compiler reload, after each row, what the per-row loops read through references; those loops
// also keep their invariants in locals (see fwd_planes).
struct Scratch {
  Buf buf, flags;
  Scratch(int64_t floats, int64_t rows) : buf(floats * 4 + 256), flags(rows + 64) {
    std::memset(buf.p, 0, static_cast<size_t>(floats * 4 + 256));
    std::memset(flags.p, 0, static_cast<size_t>(rows + 64));
  }
  float* f() const { return buf.as<float>(); }
  bool* dirty(int64_t row) const { return flags.as<bool>() + row; }
};

// Scratch budget per band (floats): the band's rows stay in L2 while its outputs are computed.
constexpr int64_t kBandFloats = 48 * 1024;

// Output rows per band so that `rows(B) * row_floats` fits the budget (at least R_min rows).
// (budget: floats for all nsrc planes; bands are multiples of 8 rows, the deepest row tile)
int64_t band_rows(int64_t OH, int64_t sh, int64_t win, int64_t row_floats, int64_t nsrc,
                  int64_t budget = kBandFloats) {
  const int64_t fit = budget / imax(1, row_floats * nsrc);
  int64_t B = fit > win ? (fit - win) / imax(1, sh) + 1 : 1;
  B = imax(8, B / 8 * 8);
  return B >= OH ? OH : B;
}
constexpr int64_t kClBandFloats = 256 * 1024;  // L planes of a channels_last block: ~1 MB

// ---------------------------------------------------------------------------------------------
// Direct planes forward: float32, stride 1, dilation 1, unit column stride, 3x3 (the tile code is
// written for any K; 5x5 / 7x7 stay on the scratch path, where they measured faster).
// The tiles read the input rows where they lie instead of a scratch copy (on 56-wide planes the
// copy cost about as much as the FMAs: fwd_planes' row preparation was ~45% of its time with the
// data in cache). Rows outside [0, H) point at a zero row; the first and last vector of each tile
// load with per-tap lane masks, so lanes left of column 0 or right of column W-1 are zeros and
// never touched (no read leaves the row); inner vectors load unmasked. Taps as in plane_tile's
// fixed branch: each input vector is loaded once and feeds every output row of the tile.

// Whether a problem takes the direct path: only the first vector of a row may reach into the left
// padding and only the last one past column W-1. DSCONV_NCHW_DIRECT=0 turns it off (A/B tests).
inline bool nchw_direct_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DSCONV_NCHW_DIRECT");
    return !(e && e[0] == '0');
  }();
  return on;
}

constexpr int kDirectVM = 4;  // vectors per tile

// The geometry part: source rows of width W read from column -pad_l, NV output vectors per row.
inline bool direct_geom_ok(int64_t pad_l, int64_t W, int64_t NV, int64_t KW) {
  if (pad_l > L) return false;
  if (NV > 2 * kDirectVM) return false;  // see direct_fwd_ok
  return NV < 2 || (NV - 1) * L - 1 - pad_l + KW - 1 < W;
}

inline bool direct_fwd_ok(const DwParams& p, int64_t NV) {
  if (!nchw_direct_enabled()) return false;
  if (p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1 || p.in_sw != 1) return false;
  // 3x3 only: on 5x5 / 7x7 the masked edge loads (2K masks, more than the 8 mask registers) made
  // the FMA-bound tiles 13-17% slower than copying the rows (measured: 32x240x28x28 k5, 32x96x56x56 k7).
  // Measured again with the per-problem plan (2026-11-26, hot, 1 thread): 5x5 direct equal on
  // 28-wide planes, 28-31% slower on 56- and 14-wide ones.
  if (p.KH != 3 || p.KW != 3) return false;
  // Up to 8 vectors (128-wide planes: MobileNet's 112x112), the widths measured. On a quiet VM
  // (copy_ 76 GB/s) 32x32x112x112 ran 1.46-1.56 ms direct against 1.58-1.61 copied; under a noisy
  // neighbour once 2.4 against 2.2 ms. Prefetching further ahead did not change it.
  return direct_geom_ok(p.pad_l, p.W, NV, p.KW);
}

// R output rows x NV_T vectors of one plane, 3x3 taps. rows[j]: input row of the tile's window
// row j (tap row kh = j - r for output row r), c0: column of vector 0's tap 0 (may be negative:
// masked). kml / kmr: lane masks of the tile's first / last vector per tap kw (all lanes when the
// vector is inside; for a single vector, both edges in kml). wv: the 9 weights broadcast (HOIST,
// AVX-512: they stay in registers for the whole row range), else read from w at each use.
template <class T, int R, int NV_T, bool HOIST>
__attribute__((always_inline)) inline void direct3_tile(const float* const* rows, int64_t c0, const Mask* kml,
                                                        const Mask* kmr, const V* wv, const float* w, V vb, T* o,
                                                        int64_t osh, bool partial, Mask tm) {
  V acc[R][NV_T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV_T; ++v) acc[r][v] = vb;
  constexpr int J = R + 2;
#pragma GCC unroll 16
  for (int j = 0; j < J; ++j) {
    if (!HOIST) __asm__("" : "+r"(w));  // weights loaded where used (broadcast loads), as in plane_tile
    const float* row = rows[j] + c0;
#pragma GCC unroll 8
    for (int kw = 0; kw < 3; ++kw) {
      V x[NV_T];
#pragma GCC unroll 8
      for (int v = 0; v < NV_T; ++v) {
        const float* xp = row + kw + v * L;
        if (v == 0)
          x[v] = Vec::load(xp, kml[kw]);
        else if (v == NV_T - 1)
          x[v] = Vec::load(xp, kmr[kw]);
        else
          x[v] = Vec::load(xp);
        __asm__("" : "+v"(x[v]));
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int kh = j - r;
        if (kh >= 0 && kh < 3) {
          const V wk = HOIST ? wv[kh * 3 + kw] : Vec::set1(w[kh * 3 + kw]);
#pragma GCC unroll 8
          for (int v = 0; v < NV_T; ++v) acc[r][v] = Vec::fmadd(wk, x[v], acc[r][v]);
        }
      }
    }
  }
  store_tile<T, R, NV_T>(acc, o, osh, partial, tm);
}

// The 9 weights of a 3x3 kernel broadcast into wv (HOIST: kept in registers over a row range).
template <bool HOIST>
__attribute__((always_inline)) inline void hoist_weights9(const float* w, V* wv) {
  if constexpr (HOIST) {
#pragma GCC unroll 9
    for (int i = 0; i < 9; ++i) wv[i] = Vec::set1(w[i]);
  }
}

// Rows [0, nrows) of one chunk of NV_T vectors: R-row tiles, then single rows. rows[i]: input row
// of window row i (output row i reads rows[i .. i + 2]). Everything per chunk (masks, weights,
// row pointers) is set up once by the caller: per 4-row tile on 28-wide planes that setup had cost
// about three times the tile's 72 FMAs (2,256,28,28 hot: 277 ns per plane, FMA bound ~62).
// pf(e): called before the tile that ends at row e (rows counted from o0), for the caller's
// prefetches ahead (issued tile by tile: a step's worth at once made cold 56-wide planes slower).
template <class T, int NV_T, class Pf>
void direct3_chunk(const float* const* rows, int64_t c0, const Mask* kml, const Mask* kmr, const float* w, float bias,
                   T* o, int64_t osh, int64_t nrows, bool partial, Mask tm, Pf&& pf) {
  // Weights in registers: AVX-512 with up to 3 vectors a row (12 + 3 + 9 of the 32 registers; AVX2
  // has 16). 4-vector tiles (16 accumulators) keep the broadcast loads: hoisted there, hot 56x56
  // planes were no faster and cold 32x144x56x56 ran ~8% slower (A/B, 2 threads).
  constexpr bool HOIST = L == 16 && NV_T < 4;
  V wv[HOIST ? 9 : 1];
  hoist_weights9<HOIST>(w, wv);
  const V vb = Vec::set1(bias);
  int64_t r = 0;
  // 8-row tiles on rows of up to 2 vectors: the 4-row tile's 8 accumulators are each a chain of 9
  // dependent FMAs, and the window's edge rows feed only 1-2 of the tile's rows (hot 28x28 planes:
  // 150 -> 139 ns a plane).
  constexpr int R8 = (HOIST && NV_T <= 2) ? 8 : kRFixed;
  for (; r + R8 <= nrows; r += R8) {
    pf(r + R8);
    direct3_tile<T, R8, NV_T, HOIST>(rows + r, c0, kml, kmr, wv, w, vb, o + r * osh, osh, partial, tm);
  }
  for (; r + kRFixed <= nrows; r += kRFixed) {
    pf(r + kRFixed);
    direct3_tile<T, kRFixed, NV_T, HOIST>(rows + r, c0, kml, kmr, wv, w, vb, o + r * osh, osh, partial, tm);
  }
  for (; r < nrows; ++r) {
    pf(r + 1);
    direct3_tile<T, 1, NV_T, HOIST>(rows + r, c0, kml, kmr, wv, w, vb, o + r * osh, osh, partial, tm);
  }
}

// The column geometry of a problem's direct tiles, worked out once per problem (per call of
// direct_rows it had cost 17% of a hot 28x28 forward): chunks of kDirectVM vectors and one
// narrower remainder, their first columns and edge masks.
struct DirectPlan {
  struct Chunk {
    int64_t c0, v0;  // column of vector 0's tap 0 (may be negative), first output vector
    int n;           // vectors
    bool partial;    // last vector partial (stored with tm)
    Mask kml[3], kmr[3];
  };
  Chunk ch[2];  // NV <= 2 * kDirectVM (direct_geom_ok)
  int nch;
  Mask tm;
  int64_t pad_t, H, in_sh;  // rows: input row of output row o's tap kh is o - pad_t + kh
};

inline DirectPlan direct_plan(const DwParams& p, int64_t NV, int tail) {
  DirectPlan d;
  d.nch = 0;
  d.tm = Vec::mask(tail);
  d.pad_t = p.pad_t, d.H = p.H, d.in_sh = p.in_sh;
  const Mask all = Vec::mask_range(0, L);
  for (int64_t v0 = 0; v0 < NV; v0 += kDirectVM) {
    DirectPlan::Chunk& c = d.ch[d.nch++];
    const int64_t n = imin(kDirectVM, NV - v0), c0 = v0 * L - p.pad_l;
    const bool right = v0 + n == NV;
    c.c0 = c0, c.v0 = v0, c.n = static_cast<int>(n), c.partial = right && tail < L;
    for (int kw = 0; kw < 3; ++kw) {
      // lanes l of the first vector with column c0 + kw + l >= 0; of the last, column < W
      c.kml[kw] = v0 == 0 ? Vec::mask_range(static_cast<int>(imax(0, -(c0 + kw))), L) : all;
      c.kmr[kw] = right ? Vec::mask_range(0, static_cast<int>(clampi(p.W - (c0 + kw + (n - 1) * L), 0, L))) : all;
      if (n == 1) c.kml[kw] = c.kml[kw] & c.kmr[kw];
    }
  }
  return d;
}

// Output rows [o0, o1) of one plane (3x3, see direct_fwd_ok), each chunk over all the rows.
// pf(e): called before computing output rows up to e (absolute), see direct3_chunk.
template <class T, class Pf>
void direct_rows(const DirectPlan& d, const float* plane, const float* zrow, const float* w, float bias, T* out,
                 int64_t osh, int64_t o0, int64_t o1, Pf&& pf) {
  constexpr int64_t kMaxRows = 64;
  const float* rows[kMaxRows + 2];
  const int64_t nrows = imin(o1 - o0, kMaxRows);
  const int64_t pad_t = d.pad_t, H = d.H, in_sh = d.in_sh;
  for (int64_t j = 0; j < nrows + 2; ++j) {
    const int64_t ih = o0 - pad_t + j;
    rows[j] = (ih >= 0 && ih < H) ? plane + ih * in_sh : zrow;
  }
  T* o = out + o0 * osh;
  auto pfr = [&](int64_t e) { pf(o0 + e); };
  for (int i = 0; i < d.nch; ++i) {
    const DirectPlan::Chunk& c = d.ch[i];
    T* ov = o + c.v0 * L;
    switch (c.n) {
      case 1: direct3_chunk<T, 1>(rows, c.c0, c.kml, c.kmr, w, bias, ov, osh, nrows, c.partial, d.tm, pfr); break;
      case 2: direct3_chunk<T, 2>(rows, c.c0, c.kml, c.kmr, w, bias, ov, osh, nrows, c.partial, d.tm, pfr); break;
      case 3: direct3_chunk<T, 3>(rows, c.c0, c.kml, c.kmr, w, bias, ov, osh, nrows, c.partial, d.tm, pfr); break;
      default:
        direct3_chunk<T, kDirectVM>(rows, c.c0, c.kml, c.kmr, w, bias, ov, osh, nrows, c.partial, d.tm, pfr);
        break;
    }
  }
  if (o1 - o0 > kMaxRows) direct_rows<T>(d, plane, zrow, w, bias, out, osh, o0 + kMaxRows, o1, pf);
}

// Rows a direct task computes per call (the staging buffer's rows): 64 on planes of up to 2
// vectors (the per-call overhead counted on 28x28 planes), else 16.
inline int64_t direct_step_rows(int64_t OW, int64_t RK) { return rup(OW <= 2 * L ? 64 : 16, RK); }
// Whether a direct call issues the prefetches for all its rows before its first tile (input rows
// of up to 2 vectors: cold 32x256x28x28 0.68 ms, against 0.86 tile by tile) or tile by tile
// (wider: a call's worth at once made cold 32x144x56x56 stride 2 1.5-1.65 ms against 1.2).
// The distance is one plane on 28x28 layers: two planes ahead measured the same, none at all 2x
// slower (the hardware prefetchers do not follow these short per-plane streams).
inline bool direct_prefetch_burst(int64_t W) { return W <= 2 * L; }

// ---------------------------------------------------------------------------------------------
// Direct planes forward, stride 2: float32 3x3 and 5x5, stride 2x2, dilation 1, unit column
// stride, output rows of up to kS2MaxV vectors (MobileNet's and EfficientNet's stride-2 layers up
// to 112x112 -> 56x56). Output vector v of a row reads input columns c = 2Lv - pad_l + [0, 2L+K-3]:
// the vectors A = [c, c+L), B = [c+L, c+2L) and the first K-2 lanes of C = [c+2L, ...). With
// E = even(A, B), O = odd(A, B) and Ce, Co the even / odd lanes of C, tap kw reads E (kw even) or
// O (kw odd) shifted down kw/2 lanes with the first lanes of Ce / Co shifted in. The rows are read
// in place, as in the stride-1 direct tiles: the scratch path's phase-splitting copy cost ~60% of
// a hot 56x56 stride-2 3x3 plane (per-row bookkeeping more than the copy itself).
constexpr int kS2MaxV = 4;

inline bool direct_s2_ok(const DwParams& p, int64_t NV) {
  if (!nchw_direct_enabled()) return false;
  if (p.stride_h != 2 || p.stride_w != 2 || p.dil_h != 1 || p.dil_w != 1 || p.in_sw != 1) return false;
  if (p.KH != p.KW || (p.KH != 3 && p.KH != 5) || p.M != 1) return false;
  return NV <= kS2MaxV && p.pad_l >= 0 && p.pad_l <= L;
}

struct DirectS2Plan {
  Mask mA[kS2MaxV], mB[kS2MaxV], mC[kS2MaxV];  // per output vector: lanes inside [0, W)
  int nv, K;
  bool partial;  // last output vector partial (stored with tm)
  Mask tm;
  int64_t c0, pad_t, H, in_sh;
};

inline DirectS2Plan direct_s2_plan(const DwParams& p, int64_t NV, int tail) {
  DirectS2Plan d;
  d.nv = static_cast<int>(NV);
  d.K = static_cast<int>(p.KW);
  d.partial = tail < L;
  d.tm = Vec::mask(tail);
  d.c0 = -p.pad_l, d.pad_t = p.pad_t, d.H = p.H, d.in_sh = p.in_sh;
  // lanes of the `lanes` columns from column a that lie in [0, W)
  auto inside = [&](int64_t a, int64_t lanes) {
    return Vec::mask_range(static_cast<int>(clampi(-a, 0, lanes)), static_cast<int>(clampi(p.W - a, 0, lanes)));
  };
  for (int64_t v = 0; v < NV; ++v) {
    const int64_t a = d.c0 + 2 * L * v;
    d.mA[v] = inside(a, L);
    d.mB[v] = inside(a + L, L);
    d.mC[v] = inside(a + 2 * L, p.KW - 2);
  }
  return d;
}

// a shifted down S lanes, the first S lanes of b shifted in (S = 0: a)
template <int S>
inline V shift_in(V a, V b) {
  if constexpr (S == 0) return a;
  else if constexpr (S == 1) return Vec::shift_in1(a, b);
  else return shift_in<S - 1>(Vec::shift_in1(a, b), Vec::shift_in1(b, b));
}

// R output rows x NV_T vectors, K x K taps. rows[j]: input row of window row j (j < 2R + K - 2;
// output row r takes taps kh = j - 2r).
template <class T, int R, int NV_T, int K, bool HOIST>
__attribute__((always_inline)) inline void direct_s2_tile(const float* const* rows, const DirectS2Plan& d,
                                                          const V* wv, const float* w, V vb, T* o, int64_t osh) {
  V acc[R][NV_T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV_T; ++v) acc[r][v] = vb;
#pragma GCC unroll 16
  for (int j = 0; j < 2 * R + K - 2; ++j) {
    if (!HOIST) __asm__("" : "+r"(w));  // weights loaded where used (broadcast loads)
    const float* row = rows[j] + d.c0;
#pragma GCC unroll 8
    for (int v = 0; v < NV_T; ++v) {
      const float* xp = row + 2 * L * v;
      const V a = Vec::load(xp, d.mA[v]), b = Vec::load(xp + L, d.mB[v]), c = Vec::load(xp + 2 * L, d.mC[v]);
      V e, od, x[K];
      Vec::deinterleave2(a, b, &e, &od);
      if constexpr (K == 3) {
        x[0] = e, x[1] = od, x[2] = Vec::shift_in1(e, c);  // even(C)[0] = C[0]
      } else {
        V ce, co;
        Vec::deinterleave2(c, Vec::zero(), &ce, &co);
#pragma GCC unroll 8
        for (int kw = 0; kw < K; ++kw) {
          if (kw == 0) x[kw] = e;
          else if (kw == 1) x[kw] = od;
          else if (kw == 2) x[kw] = shift_in<1>(e, ce);
          else if (kw == 3) x[kw] = shift_in<1>(od, co);
          else x[kw] = shift_in<2>(e, ce);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const int kh = j - 2 * r;
        if (kh < 0 || kh >= K) continue;
#pragma GCC unroll 8
        for (int kw = 0; kw < K; ++kw)
          acc[r][v] = Vec::fmadd(HOIST ? wv[kh * K + kw] : Vec::set1(w[kh * K + kw]), x[kw], acc[r][v]);
      }
    }
  }
  store_tile<T, R, NV_T>(acc, o, osh, d.partial, d.tm);
}

template <class T, int NV_T, int K, class Pf>
void direct_s2_chunk(const float* const* rows, const DirectS2Plan& d, const float* w, float bias, T* o, int64_t osh,
                     int64_t nrows, Pf&& pf) {
  constexpr bool HOIST = L == 16 && NV_T <= 2 && K == 3;  // 8 + 6 + 9 (+ 2 permute indices) of 32 registers
  V wv[HOIST ? 9 : 1];
  hoist_weights9<HOIST>(w, wv);
  const V vb = Vec::set1(bias);
  int64_t r = 0;
  for (; r + kRFixed <= nrows; r += kRFixed) {
    pf(r + kRFixed);
    direct_s2_tile<T, kRFixed, NV_T, K, HOIST>(rows + 2 * r, d, wv, w, vb, o + r * osh, osh);
  }
  for (; r < nrows; ++r) {
    pf(r + 1);
    direct_s2_tile<T, 1, NV_T, K, HOIST>(rows + 2 * r, d, wv, w, vb, o + r * osh, osh);
  }
}

template <class T, int K, class Pf>
void direct_s2_chunks(const float* const* rows, const DirectS2Plan& d, const float* w, float bias, T* o, int64_t osh,
                      int64_t nrows, Pf&& pf) {
  switch (d.nv) {
    case 1: direct_s2_chunk<T, 1, K>(rows, d, w, bias, o, osh, nrows, pf); break;
    case 2: direct_s2_chunk<T, 2, K>(rows, d, w, bias, o, osh, nrows, pf); break;
    case 3: direct_s2_chunk<T, 3, K>(rows, d, w, bias, o, osh, nrows, pf); break;
    default: direct_s2_chunk<T, 4, K>(rows, d, w, bias, o, osh, nrows, pf); break;
  }
}

// Output rows [o0, o1) of one plane (see direct_s2_ok); pf as in direct_rows.
template <class T, class Pf>
void direct_s2_rows(const DirectS2Plan& d, const float* plane, const float* zrow, const float* w, float bias, T* out,
                    int64_t osh, int64_t o0, int64_t o1, Pf&& pf) {
  constexpr int64_t kMaxRows = 32;
  const float* rows[2 * kMaxRows + 3];
  const int64_t nrows = imin(o1 - o0, kMaxRows);
  const int64_t pad_t = d.pad_t, H = d.H, in_sh = d.in_sh;
  for (int64_t j = 0; j < 2 * nrows + d.K - 2; ++j) {
    const int64_t ih = 2 * o0 - pad_t + j;
    rows[j] = (ih >= 0 && ih < H) ? plane + ih * in_sh : zrow;
  }
  T* o = out + o0 * osh;
  auto pfr = [&](int64_t e) { pf(o0 + e); };
  if (d.K == 3)
    direct_s2_chunks<T, 3>(rows, d, w, bias, o, osh, nrows, pfr);
  else
    direct_s2_chunks<T, 5>(rows, d, w, bias, o, osh, nrows, pfr);
  if (o1 - o0 > kMaxRows) direct_s2_rows<T>(d, plane, zrow, w, bias, out, osh, o0 + kMaxRows, o1, pf);
}

template <class T>
bool fwd_planes(const DwParams& p, const T* in, const float* w32, const float* b32, T* out) {
  const int64_t sw = p.stride_w, dw = p.dil_w;
  PlaneGeom g;
  g.OH = p.OH;
  g.OW = p.OW;
  g.KH = p.KH;
  g.KW = p.KW;
  g.sh = p.stride_h;
  g.dh = p.dil_h;
  g.NV = cdiv(p.OW, L);
  g.tail = static_cast<int>(p.OW - (g.NV - 1) * L);
  g.kind = plane_kind_for_width(plane_kind(p.KH, p.KW, p.stride_h, sw, p.dil_h, dw), g.NV, p.KH);
  const int64_t maxoff = ((p.KW - 1) * dw) / sw;
  g.PWp = rup(g.NV * L + maxoff + 1, L);
  g.RS = sw * g.PWp;
  Buf koffb(p.KW * 8);
  int64_t* koff = koffb.as<int64_t>();
  for (int64_t kw = 0; kw < p.KW; ++kw) koff[kw] = ((kw * dw) % sw) * g.PWp + (kw * dw) / sw;
  g.koff = koff;

  const int64_t win = (p.KH - 1) * p.dil_h + 1;  // virtual rows one output row needs
  const int64_t B = band_rows(p.OH, g.sh, win, g.RS, 1);
  const int64_t nbands = cdiv(p.OH, B);
  const int64_t rows_max = (B - 1) * g.sh + win;
  const int64_t taps = p.KH * p.KW, C = p.C, M = p.M;
  const int64_t sh = g.sh;
  // Large outputs with contiguous planes: compute a band into a staging buffer, stream it out.
  const bool nt = p.N * p.OC() * p.OH * p.OW * static_cast<int64_t>(sizeof(T)) >= stream_bytes_threshold() &&
                  p.out_sh == p.OW && p.out_sw == 1;
  // Rows are prepared (kPrepLead rows) before the row group that first needs them, so reads
  // interleave with compute; source rows are prefetched about kPrefetchBytes ahead, into the
  // next task at the end of a band. Groups of up to 16 rows (fewer calls for small planes).
  const int64_t RK = g.kind == kPGeneral ? 1 : (g.kind == kPShared ? kRShared : (g.kind == kPShared8 ? 8 : (g.kind == kPShared4 ? 4 : kRFixed)));
  int64_t RG = rup(16, RK);
  const int64_t row_bytes = p.W * p.in_sw * static_cast<int64_t>(sizeof(T));
  struct Ctx {
    const T* plane;
  };
  auto ctx_of = [&](int64_t t, Ctx* ctx, int64_t* Y0, int64_t* Y1) {
    const int64_t band = t % nbands, nc = t / nbands;
    ctx->plane = in + (nc / C) * p.in_sn + (nc % C) * p.in_sc;
    *Y0 = band * B * sh;
    *Y1 = (imin(p.OH, band * B + B) - 1) * sh + win;
  };
  const int64_t PFD = prefetch_rows_ahead(row_bytes, imin(rows_max, (p.OH - 1) * sh + win));
  // float32 stride-1 3/5/7 kernels read the input rows in place (see direct3_tile): no scratch rows,
  // only the prefetches; rows outside the input read this zero row (from column -pad_l).
  // float32 3x3 / 5x5 stride 2 likewise (direct_s2_ok), with the columns' phases split in registers.
  const bool direct_s2 = sizeof(T) == 4 && direct_s2_ok(p, g.NV);
  const bool direct = direct_s2 || (sizeof(T) == 4 && g.kind != kPGeneral && direct_fwd_ok(p, g.NV));
  const int64_t zlen = p.pad_l + (direct_s2 ? 2 * g.NV * L + 2 * L : g.NV * L + p.KW + 2 * L);
  Buf zrowb(direct ? zlen * 4 : 64);
  if (direct) zero_floats(zrowb.as<float>(), zlen);
  const float* zrow = zrowb.as<float>() + p.pad_l;
  const DirectPlan dplan = direct && !direct_s2 ? direct_plan(p, g.NV, g.tail) : DirectPlan{};
  const DirectS2Plan s2plan = direct_s2 ? direct_s2_plan(p, g.NV, g.tail) : DirectS2Plan{};
  if (direct) RG = direct_step_rows(p.OW, RK);
  const bool burst = direct_prefetch_burst(p.W);
  const Phase2Plan p2 = phase2_plan(sw, p.in_sw, p.W, p.pad_l, g.PWp);
  at::parallel_for(0, p.N * C * nbands, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(direct ? 16 : rows_max * g.RS, direct ? 1 : rows_max);
    Buf tmp((sw > 1 ? sw * g.PWp : 1) * 4 + 64);
    Buf stage(nt ? RG * p.OW * static_cast<int64_t>(sizeof(T)) + 64 : 64);
    float* sc = scratch.f();
    float* tmpf = tmp.as<float>();
    // Loop invariants of the per-row preparation as locals: its vector stores may alias anything
    // reached through a reference (vector types are may_alias), so read through `p`, `g` or the
    // lambda's captures they were reloaded on every row.
    const int64_t pad_t = p.pad_t, H = p.H, in_sh = p.in_sh, in_sw = p.in_sw, W = p.W, pad_l = p.pad_l;
    const int64_t PWp = g.PWp, RS = g.RS, pfd = PFD, rowb = row_bytes, lead = kPrepLead, rg = RG;
    const bool dir = direct;
    const Phase2Plan pl2 = p2;
    // Rows of one chunk (inputs up to ~2L wide: 28x28 -> 14x14 layers) are prepared in runs
    // (prep_rows_p2): 32x256x28x28 k3 s2 0.85 -> 0.71 ms, 32x240x28x28 k5 s2 1.01 -> 0.87. Wider
    // rows stay on the per-row loop: there the runs made cold 112-wide layers 5-10% slower
    // (prefetches not far enough ahead of the faster loop; twice as far ahead did not recover it).
    const bool p2rows = sizeof(T) == 4 && !dir && pl2.n == 1;
    // Stride-1 rows of up to 4 vectors (the 5x5 / 7x7 kernels; 3x3 reads rows in place) likewise:
    // 32x240x28x28 k5 1.65 -> 1.49 ms, 32x192x28x28 k7 2.05 -> 1.84, 56-wide 3-5%; 112-wide rows
    // measured 2-5% slower in runs.
    const bool s1rows = sizeof(T) == 4 && !dir && sw == 1 && in_sw == 1 && pad_l >= 0 && pad_l + W <= PWp && W <= 4 * L;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t band = t % nbands, nc = t / nbands, c = nc % C, n = nc / C;
      const int64_t o0 = band * B, o1 = imin(p.OH, o0 + B);
      Ctx ctx;
      int64_t Y0, Y1;
      ctx_of(t, &ctx, &Y0, &Y1);
      const T* ip = ctx.plane;
      const T* nplane = nullptr;
      int64_t nY0 = 0, nY1 = 0;
      if (t + 1 < end) {
        Ctx c2;
        ctx_of(t + 1, &c2, &nY0, &nY1);
        nplane = c2.plane;
      }
      int64_t Yp = Y0;
      for (int64_t o = o0; o < o1; o += rg) {
        // A vector load overlapping a store still in flight can't be forwarded and stalls
        // until the store retires: rows are prepared kPrepLead rows before they are read.
        const int64_t oe = imin(o1, o + rg), need = imin(Y1, (oe - 1) * sh + win + lead);
        // direct: nothing to prepare; the prefetches ahead are issued tile by tile (dpf)
        while (!dir && Yp < need) {
          const int64_t ih = Yp - pad_t;
          if ((p2rows || s1rows) && ih >= 0 && ih < H) {  // a run of rows inside the input, in one loop
            const int64_t run = imin(need, H + pad_t) - Yp;
            const float* s0 = reinterpret_cast<const float*>(ip) + ih * in_sh;
            float* d0 = sc + (Yp - Y0) * RS;
            bool* f0 = scratch.dirty(Yp - Y0);
            const int64_t ypf = Yp + pfd;
            auto pf = [&](int64_t r) { prefetch_src_row(ip, nplane, ypf + r, Y1, nY0, pad_t, H, in_sh, rowb); };
            if (s1rows)
              prep_rows_s1(s0, in_sh, d0 + pad_l, RS, W, run, f0, pf);
            else
              prep_rows_p2<1>(pl2, s0, in_sh, d0, RS, PWp, run, f0, pf);
            Yp += run;
            continue;
          }
          // prefetch ahead, into the next task past this band's end
          prefetch_src_row(ip, nplane, Yp + pfd, Y1, nY0, pad_t, H, in_sh, rowb);
          if (!dir)
            prep_fwd_row<T>(sc + (Yp - Y0) * RS, (ih >= 0 && ih < H) ? ip + ih * in_sh : nullptr, in_sw, W, pad_l,
                            sw, PWp, tmpf, scratch.dirty(Yp - Y0), &pl2);
          ++Yp;
        }
        for (int64_t m = 0; m < M; ++m) {
          const int64_t oc = c * M + m;
          const float* wp = w32 + oc * taps;
          T* op = out + n * p.out_sn + oc * p.out_sc;
          if constexpr (sizeof(T) == 4) {
            if (direct) {
              const float* fp = reinterpret_cast<const float*>(ip);
              const float bias = b32 ? b32[oc] : 0.f;
              T* dst = nt ? stage.as<T>() - o * p.OW : op;
              const int64_t dsh = nt ? p.OW : p.out_sh;
              // before the tile ending at output row e: rows up to its last input row ahead
              // (rows of up to 2 vectors: the whole call's at its first tile, see direct_prefetch_burst)
              auto dpf = [&](int64_t e) {
                const int64_t nd = imin(Y1, (imax(e, burst ? oe : 0) - 1) * sh + win + lead);
                if (Yp < nd) prefetch_src_rows(ip, nplane, Yp + pfd, nd + pfd, Y1, nY0, pad_t, H, in_sh, rowb);
                Yp = imax(Yp, nd);
              };
              if (direct_s2)
                direct_s2_rows<T>(s2plan, fp, zrow, wp, bias, dst, dsh, o, oe, dpf);
              else
                direct_rows<T>(dplan, fp, zrow, wp, bias, dst, dsh, o, oe, dpf);
              if (nt) stream_copy<T>(op + o * p.OW, dst + o * p.OW, (oe - o) * p.OW);
              continue;
            }
          }
          if (nt) {
            T* st = stage.as<T>() - o * p.OW;
            plane_rows<T>(g, sc, Y0, 0, &wp, 1, b32 ? b32[oc] : 0.f, st, p.OW, o, oe);
            stream_copy<T>(op + o * p.OW, st + o * p.OW, (oe - o) * p.OW);
          } else {
            plane_rows<T>(g, sc, Y0, 0, &wp, 1, b32 ? b32[oc] : 0.f, op, p.out_sh, o, oe);
          }
        }
      }
    }
    if (nt) _mm_sfence();
  });
  return true;
}

// ---------------------------------------------------------------------------------------------
// Pixels engine (channels_last-like)

// bfloat16 in the pixels engine (AVX-512): a tile's two channel vectors are the even and the odd
// channels of 2L consecutive ones, loaded as one vector of 2L bfloat16 and split with a shift and a
// mask (Vec::load_eo) instead of widened L at a time with vpmovzxwd, a shuffle that competes with
// the FMAs for port 5 on Intel cores. Each channel's sum is the same sequence of FMAs either way:
// the results are the same bits (tests/test_cpu_simd.py compares them with float32 rounded).
// Measured on the Intel Xeon VM (2026-11-27, one thread, batch 8, in cache, 3 alternating pairs of
// processes): bfloat16 time over float32 time on the same layer went from 0.85-0.94 to 0.80-0.85
// (576x14x14 3x3), 1.03-1.10 to 0.85-1.13 (480x14x14 5x5), 0.98-1.10 to 0.89-1.06 (384x14x14
// 7x7); whole bfloat16 layers at batch 32 measured within that VM's noise (+4% geomean).
template <class T>
constexpr bool pix_eo() {
  return L == 16 && std::is_same<T, uint16_t>::value;
}

// Channel held by lane l of packed channel block cb (CBfull full blocks). Even/odd order (eo) for
// the blocks that pix_band runs as pairs (2i, 2i + 1), both full: block 2i has the even channels of
// [2iL, 2iL + 2L), block 2i + 1 the odd ones; the other blocks in plain order.
inline int64_t pix_channel(int64_t cb, int64_t l, int64_t CBfull, bool eo) {
  if (eo && (cb | 1) < CBfull) return (cb & ~int64_t(1)) * L + 2 * l + (cb & 1);
  return cb * L + l;
}

// Weights packed per channel block: wpk[cb][tap][L] (zero-filled past the last channel), lanes in
// pix_channel order.
template <class T>
void pack_weights_cl(const T* w, int64_t OC, int64_t taps, bool flip, float* wpk, bool eo) {
  const int64_t CB = cdiv(OC, L);
  for (int64_t cb = 0; cb < CB; ++cb)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t l = 0; l < L; ++l) {
        const int64_t oc = pix_channel(cb, l, OC / L, eo);
        const int64_t ts = flip ? taps - 1 - t : t;
        wpk[(cb * taps + t) * L + l] = oc < OC ? to_f32(w[oc * taps + ts]) : 0.f;
      }
}

// Bias packed as the weights: bias[cb * L + l] (zeros past the last channel).
template <class T>
void pack_bias_cl(const T* b, int64_t OC, float* bias, bool eo) {
  for (int64_t cb = 0; cb < cdiv(OC, L); ++cb)
    for (int64_t l = 0; l < L; ++l) {
      const int64_t oc = pix_channel(cb, l, OC / L, eo);
      bias[cb * L + l] = oc < OC ? to_f32(b[oc]) : 0.f;
    }
}

struct PixGeom {
  int64_t KH, KW, sw, dw;  // engine tap geometry along W (virtual stride / dilation)
  int64_t C, CB, taps;
  int64_t ncols;           // column pointers per kernel row of the row table
  int64_t osw;             // output pixel stride (elements)
  int ctail;               // valid lanes of the last channel block (1..L)
  bool nt;                 // non-temporal stores (large, vector-aligned output)
};

// The engine's geometry for C channels under a KH x KW kernel (column stride sw, dilation dw),
// output pixels osw elements apart; non-temporal stores where the output (out_bytes in all,
// at out) is large and every pixel's channel vectors are vector-aligned.
inline PixGeom pix_geom(int64_t KH, int64_t KW, int64_t sw, int64_t dw, int64_t C, int64_t osw, const void* out,
                        int64_t out_bytes) {
  PixGeom g;
  g.KH = KH;
  g.KW = KW;
  g.sw = sw;
  g.dw = dw;
  g.C = C;
  g.CB = cdiv(C, L);
  g.taps = KH * KW;
  g.osw = osw;
  g.ctail = static_cast<int>(C - (g.CB - 1) * L);
  g.ncols = 0;  // set per problem (pix_engine)
  g.nt = C % L == 0 && osw % L == 0 && reinterpret_cast<uintptr_t>(out) % 64 == 0 &&
         out_bytes >= pix_stream_bytes_threshold();
  return g;
}

// Stores a tile's P pixels x VC channel vectors at o (pixels g.osw elements apart).
template <class T, int P, int VC, bool MSK, bool EO>
__attribute__((always_inline)) inline void pix_store(const PixGeom& g, const V (&acc)[P][VC], T* o, Mask cm) {
#pragma GCC unroll 16
  for (int q = 0; q < P; ++q) {
    if constexpr (EO) {
      Vec::store_eo(o + q * g.osw, acc[q][0], acc[q][VC - 1]);
      continue;
    }
#pragma GCC unroll 8
    for (int v = 0; v < VC; ++v) {
      if (MSK)
        Vec::store(o + q * g.osw + v * L, acc[q][v], cm);
      else if (std::is_same<T, float>::value && g.nt)
        Vec::stream(reinterpret_cast<float*>(o + q * g.osw + v * L), acc[q][v]);
      else
        Vec::store(o + q * g.osw + v * L, acc[q][v]);
    }
  }
}

// P pixels x VC channel vectors, any kernel width. ptrs: [nkh][ncols] column pointers of the
// tile (already including nothing of the channel offset), khs: the valid kernel rows.
template <class T, int P, int VC, bool MSK>
__attribute__((always_inline)) inline void pix_tile_gen(const PixGeom& g, const T* const* ptrs, const int* khs, int nkh,
                                                        int64_t col0, const float* w, const float* bias, int64_t c0,
                                                        T* o, Mask cm) {
  constexpr bool EO = pix_eo<T>() && VC == 2 && !MSK;  // channels in even/odd order (pix_channel)
  V acc[P][VC];
#pragma GCC unroll 8
  for (int v = 0; v < VC; ++v) {
    const V b = bias ? Vec::load(bias + c0 + v * L) : Vec::zero();
#pragma GCC unroll 16
    for (int q = 0; q < P; ++q) acc[q][v] = b;
  }
  const int64_t KW = g.KW, sw = g.sw, dw = g.dw, wvs = g.taps * L;
  for (int i = 0; i < nkh; ++i) {
    const T* const* pr = ptrs + i * g.ncols + col0;
    const float* wr = w + khs[i] * KW * L;
    for (int64_t kw = 0; kw < KW; ++kw) {
      V wv[VC];
#pragma GCC unroll 8
      for (int v = 0; v < VC; ++v) wv[v] = Vec::load(wr + kw * L + v * wvs);
      const T* const* pk = pr + kw * dw;
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) {
        const T* x = pk[q * sw] + c0;
        if constexpr (EO) {
          V xe, xo;
          Vec::load_eo(x, &xe, &xo);
          acc[q][0] = Vec::fmadd(wv[0], xe, acc[q][0]);
          acc[q][VC - 1] = Vec::fmadd(wv[VC - 1], xo, acc[q][VC - 1]);
        } else {
#pragma GCC unroll 8
          for (int v = 0; v < VC; ++v) {
            const V xv = MSK ? Vec::load(x + v * L, cm) : Vec::load(x + v * L);
            acc[q][v] = Vec::fmadd(wv[v], xv, acc[q][v]);
          }
        }
      }
    }
  }
  pix_store<T, P, VC, MSK, EO>(g, acc, o, cm);
}

// Fixed kernel width KW_, stride SW_, dilation 1: each column of the tile is loaded once.
template <class T, int P, int VC, bool MSK, int KW_, int SW_>
__attribute__((always_inline)) inline void pix_tile_fix(const PixGeom& g, const T* const* ptrs, const int* khs, int nkh,
                                                        int64_t col0, const float* w, const float* bias, int64_t c0,
                                                        T* o, Mask cm) {
  constexpr bool EO = pix_eo<T>() && VC == 2 && !MSK;  // channels in even/odd order (pix_channel)
  V acc[P][VC];
#pragma GCC unroll 8
  for (int v = 0; v < VC; ++v) {
    const V b = bias ? Vec::load(bias + c0 + v * L) : Vec::zero();
#pragma GCC unroll 16
    for (int q = 0; q < P; ++q) acc[q][v] = b;
  }
  const int64_t wvs = g.taps * L;
  constexpr int NC = (P - 1) * SW_ + KW_;
  for (int i = 0; i < nkh; ++i) {
    const T* const* pr = ptrs + i * g.ncols + col0;
    const float* wr = w + khs[i] * KW_ * L;
    V wv[KW_][VC];
#pragma GCC unroll 8
    for (int kw = 0; kw < KW_; ++kw)
#pragma GCC unroll 8
      for (int v = 0; v < VC; ++v) wv[kw][v] = Vec::load(wr + kw * L + v * wvs);
#pragma GCC unroll 32
    for (int j = 0; j < NC; ++j) {
      const T* x = pr[j] + c0;
      V xv[VC];
      if constexpr (EO) {
        Vec::load_eo(x, &xv[0], &xv[VC - 1]);
      } else {
#pragma GCC unroll 8
        for (int v = 0; v < VC; ++v) xv[v] = MSK ? Vec::load(x + v * L, cm) : Vec::load(x + v * L);
      }
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) {
        const int kw = j - q * SW_;
        if (kw >= 0 && kw < KW_) {
#pragma GCC unroll 8
          for (int v = 0; v < VC; ++v) acc[q][v] = Vec::fmadd(wv[kw][v], xv[v], acc[q][v]);
        }
      }
    }
  }
  pix_store<T, P, VC, MSK, EO>(g, acc, o, cm);
}

template <class T, int P, int VC, bool MSK, int KW_, int SW_>
__attribute__((always_inline)) inline void pix_tile(const PixGeom& g, const T* const* ptrs, const int* khs, int nkh,
                                                    int64_t col0, const float* w, const float* bias, int64_t c0, T* o,
                                                    Mask cm) {
  if constexpr (KW_ > 0)
    pix_tile_fix<T, P, VC, MSK, KW_, SW_>(g, ptrs, khs, nkh, col0, w, bias, c0, o, cm);
  else
    pix_tile_gen<T, P, VC, MSK>(g, ptrs, khs, nkh, col0, w, bias, c0, o, cm);
}

// Channel chunks of the pixels engine: a tile's input window (KH rows x (P-1)*sw+KW columns)
// over the chunk's channels stays within this many bytes, so the columns that the next tile of
// the chunk shares with it are still in L1. 3x3 layers of up to ~160 channels are one chunk (the
// row is then walked as contiguous streams); 7x7 ones are chunks of 2-4 vectors.
constexpr int64_t kPixChunkBytes = 16 << 10;
// Tried 2026-11-26: chunks of 1-4 channel-vector pairs with the chunks outermost in a band (so a
// chunk's input rows stay in L1 from one output row to the next): 3x3 stride-1 56x56 and 28x28
// planes measured the same hot (the kernels run at ~2.7x their FMA bound; L2 bandwidth is not
// what limits them).

// A band of output rows. Per row: channel chunks, in each the row's pixel tiles, in each the
// chunk's channel blocks. rows_tab(r, &ptrs, &khs, &nkh, &orow) describes band row r;
// on_tile(r, k, n) runs before the k-th of the n tiles of row r (it prefetches the share k/n of
// the source rows that row r + 1 needs first: a row's distance ahead, issued a little at a time
// so the misses overlap the FMAs instead of queueing behind a burst).
template <class T, int P, int KW_, int SW_, class RowTab, class OnTile>
void pix_band(const PixGeom& g, int64_t nrows, int64_t OWe, const float* wpk, const float* bias,
              const RowTab& rows_tab, const OnTile& on_tile) {
  const int64_t CBfull = g.C / L;
  const Mask cm = Vec::mask(g.ctail);
  const int64_t wstride = g.taps * L;   // per channel block
  constexpr int VC2 = L == 16 ? 2 : 1;  // two channel vectors per tile where registers allow
  const int64_t win_cols = (P - 1) * g.sw + (g.KW - 1) * g.dw + 1;
  const int64_t vec_bytes = L * static_cast<int64_t>(sizeof(T));
  const int64_t CH = imax(VC2, kPixChunkBytes / imax(1, g.KH * win_cols * vec_bytes) / VC2 * VC2);
  const int64_t CBall = CBfull + (g.ctail < L ? 1 : 0);
  const int64_t ntiles = (OWe >= P ? cdiv(OWe, P) : OWe) * cdiv(CBall, CH);
  for (int64_t r = 0; r < nrows; ++r) {
    const T* const* ptrs;
    const int* khs;
    int nkh;
    T* orow;
    rows_tab(r, &ptrs, &khs, &nkh, &orow);
    int64_t k = 0;
    auto tile = [&](auto pc, int64_t q0, int64_t cb0, int64_t cb1) {
      constexpr int PP = decltype(pc)::value;
      on_tile(r, k++, ntiles);
      const int64_t col0 = q0 * g.sw;
      T* o = orow + q0 * g.osw;
      int64_t cb = cb0;
      const int64_t cbf = imin(cb1, CBfull);
      for (; cb + VC2 <= cbf; cb += VC2)
        pix_tile<T, PP, VC2, false, KW_, SW_>(g, ptrs, khs, nkh, col0, wpk + cb * wstride, bias, cb * L, o + cb * L, cm);
      for (; cb < cbf; ++cb)
        pix_tile<T, PP, 1, false, KW_, SW_>(g, ptrs, khs, nkh, col0, wpk + cb * wstride, bias, cb * L, o + cb * L, cm);
      if (cb < cb1)
        pix_tile<T, PP, 1, true, KW_, SW_>(g, ptrs, khs, nkh, col0, wpk + cb * wstride, bias, cb * L, o + cb * L, cm);
    };
    using PC = std::integral_constant<int, P>;
    using P1 = std::integral_constant<int, 1>;
    for (int64_t cb0 = 0; cb0 < CBall; cb0 += CH) {
      const int64_t cb1 = imin(CBall, cb0 + CH);
      if (OWe >= P) {
        int64_t q0 = 0;
        for (; q0 + P <= OWe; q0 += P) tile(PC{}, q0, cb0, cb1);
        // remainder: one more full tile ending at the last pixel (same operations in the same
        // order: the pixels it recomputes are rewritten with identical values)
        if (q0 < OWe) tile(PC{}, OWe - P, cb0, cb1);
      } else {
        for (int64_t q0 = 0; q0 < OWe; ++q0) tile(P1{}, q0, cb0, cb1);
      }
    }
  }
}

enum PixKind : int { kX3s1, kX3s2, kX5s1, kX5s2, kX7s1, kX7s2, kXGen };

int pix_kind(int64_t KW, int64_t sw, int64_t dw) {
  if (dw != 1 || (sw != 1 && sw != 2)) return kXGen;
  if (KW == 3) return sw == 1 ? kX3s1 : kX3s2;
  if (KW == 5) return sw == 1 ? kX5s1 : kX5s2;
  if (KW == 7) return sw == 1 ? kX7s1 : kX7s2;
  return kXGen;
}

// Pixel tile sizes (accumulators P*VC + KW weights + VC loads must fit the register file).
// Fixed kernels also have a 7-pixel tile, taken when it computes fewer pixels of a row (the
// last tile of a row overlaps the one before it): 7 divides every width of the 224x224
// networks (112, 56, 28, 14, 7).
constexpr int kPFix = L == 16 ? 6 : 4;
constexpr int kPFix7 = 7;
constexpr int kPGen = L == 16 ? 6 : 4;

inline bool use_p7(int64_t OWe) {
  return OWe >= kPFix7 && cdiv(OWe, kPFix7) * kPFix7 <= (OWe >= kPFix ? cdiv(OWe, kPFix) * kPFix : OWe);
}

template <class T, class RowTab, class OnRow>
void pix_band_dispatch(int kind, const PixGeom& g, int64_t nrows, int64_t OWe, const float* wpk, const float* bias,
                       const RowTab& rt, const OnRow& onr) {
  if (kind != kXGen && use_p7(OWe)) {
    switch (kind) {
      case kX3s1: pix_band<T, kPFix7, 3, 1>(g, nrows, OWe, wpk, bias, rt, onr); break;
      case kX3s2: pix_band<T, kPFix7, 3, 2>(g, nrows, OWe, wpk, bias, rt, onr); break;
      case kX5s1: pix_band<T, kPFix7, 5, 1>(g, nrows, OWe, wpk, bias, rt, onr); break;
      case kX5s2: pix_band<T, kPFix7, 5, 2>(g, nrows, OWe, wpk, bias, rt, onr); break;
      case kX7s1: pix_band<T, kPFix7, 7, 1>(g, nrows, OWe, wpk, bias, rt, onr); break;
      default: pix_band<T, kPFix7, 7, 2>(g, nrows, OWe, wpk, bias, rt, onr); break;
    }
    return;
  }
  switch (kind) {
    case kX3s1: pix_band<T, kPFix, 3, 1>(g, nrows, OWe, wpk, bias, rt, onr); break;
    case kX3s2: pix_band<T, kPFix, 3, 2>(g, nrows, OWe, wpk, bias, rt, onr); break;
    case kX5s1: pix_band<T, kPFix, 5, 1>(g, nrows, OWe, wpk, bias, rt, onr); break;
    case kX5s2: pix_band<T, kPFix, 5, 2>(g, nrows, OWe, wpk, bias, rt, onr); break;
    case kX7s1: pix_band<T, kPFix, 7, 1>(g, nrows, OWe, wpk, bias, rt, onr); break;
    case kX7s2: pix_band<T, kPFix, 7, 2>(g, nrows, OWe, wpk, bias, rt, onr); break;
    default: pix_band<T, kPGen, 0, 0>(g, nrows, OWe, wpk, bias, rt, onr); break;
  }
}

// Source row / column maps of the pixels engine, in the engine's virtual coordinates.
// Forward: virtual row Y = o*sh + kh*dh reads input row Y - pad_t (if in [0, H)).
// Grad input: virtual row Y reads grad_output row (Y - P)/s if divisible and in range.
struct AxisMap {
  int64_t off, step, extent;  // source index = (Y - off) / step when (Y - off) % step == 0
  int64_t operator()(int64_t Y) const {
    const int64_t d = Y - off;
    if (d < 0 || d % step != 0) return -1;
    const int64_t i = d / step;
    return i < extent ? i : -1;
  }
};

// The row table of one engine output row whose first virtual source row is Y0: for each kernel
// row kh landing inside the source (rows(Y0 + kh * dh) >= 0) its ncols column pointers (zero
// buffer for padding / inserted zeros) into ptrs and kh into khs; returns how many.
template <class T>
int pix_row_table(const PixGeom& g, const AxisMap& rows, int64_t Y0, int64_t dh, const T* sp, int64_t s_sh,
                  const int64_t* coloff, const T* zero, const T** ptrs, int* khs) {
  int nkh = 0;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    const int64_t si = rows(Y0 + kh * dh);
    if (si < 0) continue;
    const T* rp = sp + si * s_sh;
    const T** pr = ptrs + nkh * g.ncols;
    for (int64_t j = 0; j < g.ncols; ++j) pr[j] = coloff[j] >= 0 ? rp + coloff[j] : zero;
    khs[nkh++] = static_cast<int>(kh);
  }
  return nkh;
}

// out pixels (n, o, q) for o in [0, OHe), q in [0, OWe):
//   out = bias + sum_{kh,kw} w[kh,kw] * src(n, rows(o*sh + kh*dh), cols(q*sw + kw*dw))
// One task = a band of output rows of one image; per row a table of column pointers for every
// kernel row that lands inside the source (zero buffer for padding / inserted zeros).
template <class T>
void pix_engine(PixGeom g, int kind, int64_t N, int64_t OHe, int64_t OWe, int64_t sh, int64_t dh,
                const AxisMap& rows, const AxisMap& cols, const T* src, int64_t s_sn, int64_t s_sh, int64_t s_sw,
                int64_t s_rowlen, const float* wpk, const float* bias, T* out, int64_t o_sn, int64_t o_sh,
                const T* zero) {
  g.ncols = (OWe - 1) * g.sw + (g.KW - 1) * g.dw + 1;
  const int64_t BR = imax(1, imin(8, N * OHe / 16));
  const int64_t nbands = cdiv(OHe, BR);
  Buf colb(g.ncols * 8 + 64);
  int64_t* coloff = colb.as<int64_t>();
  for (int64_t j = 0; j < g.ncols; ++j) {
    const int64_t ci = cols(j);
    coloff[j] = ci >= 0 ? ci * s_sw : -1;
  }
  // whole source rows (s_rowlen elements) are prefetched into L2 one output row ahead
  const int64_t row_bytes = s_rowlen * static_cast<int64_t>(sizeof(T));
  at::parallel_for(0, N * nbands, 1, [&](int64_t begin, int64_t end) {
    Buf ptrb(BR * g.KH * g.ncols * 8 + 64), khb(BR * g.KH * 4 + 64), nkhb(BR * 4 + 64);
    const T** ptrs = ptrb.as<const T*>();
    int* khs = khb.as<int>();
    int* nkhs = nkhb.as<int>();
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / nbands, o0 = (t % nbands) * BR, o1 = imin(OHe, o0 + BR);
      const T* sp = src + n * s_sn;
      for (int64_t o = o0; o < o1; ++o) {
        const int64_t r = o - o0;
        nkhs[r] = pix_row_table(g, rows, o * sh, dh, sp, s_sh, coloff, zero, ptrs + r * g.KH * g.ncols, khs + r * g.KH);
      }
      auto rows_tab = [&](int64_t r, const T* const** pt, const int** kp, int* nk, T** orow) {
        *pt = ptrs + r * g.KH * g.ncols;
        *kp = khs + r * g.KH;
        *nk = nkhs[r];
        *orow = out + n * o_sn + (o0 + r) * o_sh;
      };
      // The source rows first needed by output row o0 + r + 1, looked up at the row's first tile;
      // each tile then prefetches its share (whole cache lines, no divisions per tile).
      const char* pf_rows[4];
      int pf_n = 0;
      int64_t pf_step = 0;
      const int pf_mode = pix_prefetch_mode();
      auto prefetch_next = [&](int64_t r, int64_t k, int64_t nk) {
        if (row_bytes <= 0 || pf_mode == 0) return;
        if (k == 0) {
          pf_n = 0;
          const int64_t o = o0 + r + 1;
          if (o < OHe)
            for (int64_t Y = (o - 1) * sh + (g.KH - 1) * dh + 1; Y <= o * sh + (g.KH - 1) * dh && pf_n < 4; ++Y) {
              const int64_t si = rows(Y);
              if (si >= 0) pf_rows[pf_n++] = reinterpret_cast<const char*>(sp + si * s_sh);
            }
          pf_step = rup(cdiv(row_bytes, nk), 64);
        }
        const int64_t b0 = k * pf_step;
        if (b0 >= row_bytes) return;
        const int64_t nb = imin(pf_step, row_bytes - b0);
        for (int i = 0; i < pf_n; ++i) {
          if (pf_mode == 2)
            prefetch_bytes_l2(pf_rows[i] + b0, nb);
          else
            prefetch_bytes(pf_rows[i] + b0, nb);
        }
      };
      pix_band_dispatch<T>(kind, g, o1 - o0, OWe, wpk, bias, rows_tab, prefetch_next);
    }
    if (g.nt) _mm_sfence();
  });
}

// ---------------------------------------------------------------------------------------------
// Grad input, planes: the forward engine on the zero-inserted, padded grad_output.

// Scratch row of the virtual input: dst[X] = g[(X - pad) / s] where divisible and in range
// (data positions only: the rest of the row stays zero, see Scratch).
template <class T>
void prep_bwd_row(float* dst, const T* g, int64_t gsw, int64_t OW, int64_t pad, int64_t s, int64_t PWp,
                  bool* dirty) {
  if (!g) {
    if (*dirty) zero_floats(dst, PWp);
    *dirty = 0;
    return;
  }
  *dirty = 1;
  if (s == 1) {
    copy_data(dst, PWp, g, gsw, OW, pad);
    return;
  }
  // ow with 0 <= pad + ow*s < PWp
  const int64_t lo = pad >= 0 ? 0 : cdiv(-pad, s);
  const int64_t hi = imin(OW, pad + (OW - 1) * s < PWp ? OW : (PWp - 1 - pad) / s + 1);
  int64_t ow = lo;
  if (s == 2 && gsw == 1)
    for (; ow + L <= hi && pad + 2 * (ow + L) <= PWp; ow += L) {
      V a, b;
      Vec::zero_insert2(Vec::load(g + ow), &a, &b);
      Vec::store(dst + pad + 2 * ow, a);
      Vec::store(dst + pad + 2 * ow + L, b);
    }
  if (sizeof(T) == 4 && s == 2 && gsw == 1) {
    // The rest (a row's last partial vector: 12 of 28 columns scalar was ~15% of a 56x56 stride-2
    // backward): masked load, then stores masked to the row. Positions between and past the data
    // get zeros, which is what the row holds there.
    for (; ow < hi; ow += L) {
      const int n = static_cast<int>(imin(L, hi - ow));
      V a, b;
      Vec::zero_insert2(Vec::load(reinterpret_cast<const float*>(g) + ow, Vec::mask(n)), &a, &b);
      const int64_t d0 = pad + 2 * ow;
      Vec::store(dst + d0, a, Vec::mask(static_cast<int>(clampi(PWp - d0, 0, L))));
      Vec::store(dst + d0 + L, b, Vec::mask(static_cast<int>(clampi(PWp - d0 - L, 0, L))));
    }
    return;
  }
  for (; ow < hi; ++ow) dst[pad + ow * s] = to_f32(g[ow * gsw]);
}

// Runs drive(with_thread, nbands): with_thread(fn) sets up one thread's scratch and calls
// fn(task), task(t, tn) computes task t = (n * C + c) * nbands + band, tn the task the thread
// runs next (its rows are prefetched) or -1. bwd_input_planes drives it with one
// at::parallel_for; bwd_nchw_one_pass interleaves it with the weight gradient.
template <class T, class Drive>
bool bwd_input_planes_run(const DwParams& p, const T* gout, const float* wflip, T* gin, const Drive& drive) {
  PlaneGeom g;
  g.OH = p.H;
  g.OW = p.W;
  g.KH = p.KH;
  g.KW = p.KW;
  g.sh = 1;
  g.dh = p.dil_h;
  g.NV = cdiv(p.W, L);
  g.tail = static_cast<int>(p.W - (g.NV - 1) * L);
  g.kind = plane_kind_for_width(plane_kind(p.KH, p.KW, 1, 1, p.dil_h, p.dil_w), g.NV, p.KH);
  g.PWp = rup(g.NV * L + (p.KW - 1) * p.dil_w + 1, L);
  g.RS = g.PWp;
  Buf koffb(p.KW * 8);
  int64_t* koff = koffb.as<int64_t>();
  for (int64_t kw = 0; kw < p.KW; ++kw) koff[kw] = kw * p.dil_w;
  g.koff = koff;
  const AxisMap rows{(p.KH - 1) * p.dil_h - p.pad_t, p.stride_h, p.OH};
  const int64_t padc = (p.KW - 1) * p.dil_w - p.pad_l;

  const int64_t M = p.M, C = p.C, taps = p.taps();
  const int64_t win = (p.KH - 1) * p.dil_h + 1;
  const int64_t B = band_rows(p.H, 1, win, g.RS, M);
  const int64_t nbands = cdiv(p.H, B);
  const int64_t rows_max = B - 1 + win;
  const int64_t src_stride = rows_max * g.RS;
  const bool nt = p.N * C * p.H * p.W * static_cast<int64_t>(sizeof(T)) >= stream_bytes_threshold() && p.in_sh == p.W &&
                  p.in_sw == 1;
  // float32 3x3 stride 1, multiplier 1: the forward's in-place tiles (direct3_tile) on grad_output,
  // read from row -(KH-1-pad_t) and column -(KW-1-pad_l), with the flipped weights; no scratch.
  DwParams q = p;  // the virtual forward: source = one grad_output plane, output = grad_input
  q.H = p.OH, q.W = p.OW, q.in_sh = p.out_sh, q.in_sw = p.out_sw;
  q.pad_t = (p.KH - 1) * p.dil_h - p.pad_t, q.pad_l = padc;
  const bool direct = sizeof(T) == 4 && M == 1 && nchw_direct_enabled() && p.stride_h == 1 && p.stride_w == 1 &&
                      p.dil_h == 1 && p.dil_w == 1 && p.KH == 3 && p.KW == 3 && p.out_sw == 1 &&
                      direct_geom_ok(q.pad_l, q.W, g.NV, 3);
  // zero row read from column -pad_l (pad_l < 0 when the forward padding exceeds K - 1)
  const int64_t zlen = (q.pad_l < 0 ? -q.pad_l : q.pad_l) + g.NV * L + p.KW + 2 * L;
  Buf zrowb(direct ? zlen * 4 : 64);
  if (direct) zero_floats(zrowb.as<float>(), zlen);
  const float* zrow = zrowb.as<float>() + imax(0, q.pad_l);
  const DirectPlan dplan = direct ? direct_plan(q, g.NV, g.tail) : DirectPlan{};
  const int64_t RG = direct_step_rows(p.W, 1);
  const bool burst = direct_prefetch_burst(p.OW);  // (grad_output rows are the source)
  const int64_t row_bytes = p.OW * static_cast<int64_t>(sizeof(T));
  const int64_t PFD = prefetch_rows_ahead(row_bytes, imin(rows_max, p.H - 1 + win));
  auto with_thread = [&](auto&& fn) {
    Scratch scratch(direct ? 16 : M * src_stride, direct ? 1 : M * rows_max);
    Buf wsb(M * 8 + 64);
    Buf stage(nt ? imax(B, RG) * p.W * static_cast<int64_t>(sizeof(T)) + 64 : 64);
    float* sc = scratch.f();
    const float** ws = wsb.as<const float*>();
    auto task = [&](int64_t t, int64_t tn) {
      const int64_t band = t % nbands, nc = t / nbands, c = nc % C, n = nc / C;
      const int64_t o0 = band * B, o1 = imin(p.H, o0 + B);
      const int64_t Y0 = o0, Y1 = o1 - 1 + win;
      if constexpr (sizeof(T) == 4) {
        if (direct) {
          const float* gp = reinterpret_cast<const float*>(gout + n * p.out_sn + c * p.out_sc);
          const float* wf = wflip + c * taps;
          T* op = gin + n * p.in_sn + c * p.in_sc;
          // Nothing copies the rows ahead of use here: prefetch them PFD virtual rows ahead,
          // into the next task's plane past this band's end (short planes defeat the hardware
          // prefetchers: 28-wide rows ran 1.3-1.5x slower without this).
          const T* nplane = nullptr;
          int64_t nY0 = 0;
          if (tn >= 0) {
            const int64_t nb = tn % nbands, nnc = tn / nbands;
            nplane = gout + (nnc / C) * p.out_sn + (nnc % C) * p.out_sc;
            nY0 = nb * B;
          }
          int64_t Yp = Y0;
          // issued tile by tile, before the tile ending at row e (see direct3_chunk)
          int64_t oe = 0;  // the current call's last row (bursts, see direct_prefetch_burst)
          auto dpf = [&](int64_t e) {
            const int64_t need = imin(Y1, imax(e, burst ? oe : 0) - 1 + win);
            if (Yp < need)
              prefetch_src_rows(gout + n * p.out_sn + c * p.out_sc, nplane, Yp + PFD, need + PFD, Y1, nY0, q.pad_t,
                                p.OH, p.out_sh, row_bytes);
            Yp = imax(Yp, need);
          };
          for (int64_t o = o0; o < o1; o += RG) {
            oe = imin(o1, o + RG);
            if (nt) {
              T* st = stage.as<T>() - o * p.W;
              direct_rows<T>(dplan, gp, zrow, wf, 0.f, st, p.W, o, oe, dpf);
              stream_copy<T>(op + o * p.W, st + o * p.W, (oe - o) * p.W);
            } else {
              direct_rows<T>(dplan, gp, zrow, wf, 0.f, op, p.in_sh, o, oe, dpf);
            }
          }
          return;
        }
      }
      // The next task's rows are prefetched while this band's rows are copied (a task's lead),
      // for grad_output planes of 8 KiB or more: 56x56 planes 1.2x (k7), 1.2-1.5x (112x112 stride
      // 2); on 28x28 planes it cost 7-11% (k5, 56x56 stride 2), so those are left to the hardware.
      const T* ngp = nullptr;
      int64_t nY0 = 0, nY1 = 0;
      if (tn >= 0 && p.OH * p.OW * static_cast<int64_t>(sizeof(T)) >= 8192) {
        const int64_t nb = tn % nbands, nnc = tn / nbands;
        ngp = gout + (nnc / C) * p.out_sn + (nnc % C) * M * p.out_sc;
        nY0 = nb * B;
        nY1 = imin(p.H, nY0 + B) - 1 + win;
      }
      // per-row loop invariants as locals (see fwd_planes)
      const int64_t out_sh = p.out_sh, out_sw = p.out_sw, OW = p.OW, pc = padc, s_w = p.stride_w, pwp = g.PWp;
      const int64_t rs = g.RS, rb = row_bytes;
      const AxisMap rmap = rows;
      for (int64_t m = 0; m < M; ++m) {
        const int64_t oc = c * M + m;
        const T* gp = gout + n * p.out_sn + oc * p.out_sc;
        const T* ngm = ngp ? ngp + m * p.out_sc : nullptr;
        float* scm = sc + m * src_stride;
        bool* dm = scratch.dirty(m * rows_max);
        for (int64_t Y = Y0; Y < Y1; ++Y) {
          const int64_t oh = rmap(Y);
          prep_bwd_row<T>(scm + (Y - Y0) * rs, oh >= 0 ? gp + oh * out_sh : nullptr, out_sw, OW, pc, s_w, pwp,
                          dm + (Y - Y0));
          const int64_t Yn = nY0 + (Y - Y0);
          if (ngm && out_sw == 1 && Yn < nY1) {  // (strided rows: no cheap span to fetch)
            const int64_t ohn = rmap(Yn);
            if (ohn >= 0) prefetch_bytes(ngm + ohn * out_sh, rb);
          }
        }
        ws[m] = wflip + oc * taps;
      }
      T* op = gin + n * p.in_sn + c * p.in_sc;
      if (nt) {
        T* st = stage.as<T>() - o0 * p.W;
        plane_rows<T>(g, sc, Y0, src_stride, ws, static_cast<int>(M), 0.f, st, p.W, o0, o1);
        stream_copy<T>(op + o0 * p.W, st + o0 * p.W, (o1 - o0) * p.W);
      } else {
        plane_rows<T>(g, sc, Y0, src_stride, ws, static_cast<int>(M), 0.f, op, p.in_sh, o0, o1);
      }
    };
    fn(task);
    if (nt) _mm_sfence();
  };
  drive(with_thread, nbands);
  return true;
}

template <class T>
bool bwd_input_planes(const DwParams& p, const T* gout, const float* wflip, T* gin) {
  return bwd_input_planes_run<T>(p, gout, wflip, gin, [&](auto& with_thread, int64_t nbands) {
    at::parallel_for(0, p.N * p.C * nbands, 1, [&](int64_t begin, int64_t end) {
      with_thread([&](auto& task) {
        for (int64_t t = begin; t < end; ++t) task(t, t + 1 < end ? t + 1 : -1);
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Grad weight and bias, planes. One task = (output channel, fixed batch chunk); tap blocks of
// up to kNT vector accumulators stay in registers over a band of rows, then add into per-tap
// vector totals in a fixed order.

constexpr int kNT = L == 16 ? 24 : 12;

template <class T, int NT>
void gw_plane_block(const float* srow0, int64_t rstep, const int64_t* toff, const T* g0, int64_t gsh, int64_t nrows,
                    int64_t NV, int tail, V* tot, V* btot) {
  V acc[NT];
#pragma GCC unroll 32
  for (int t = 0; t < NT; ++t) acc[t] = Vec::zero();
  V bacc = Vec::zero();
  const Mask tm = Vec::mask(tail);
  for (int64_t r = 0; r < nrows; ++r) {
    const float* srow = srow0 + r * rstep;
    const T* grow = g0 + r * gsh;
    for (int64_t v = 0; v < NV; ++v) {
      const bool part = v == NV - 1 && tail < L;
      const V gv = part ? Vec::load(grow + v * L, tm) : Vec::load(grow + v * L);
      if (btot) bacc = Vec::add(bacc, gv);
      const float* sv = srow + v * L;
      if (part) {  // lanes past the row: masked input too, or 0 * Inf there would make the sum NaN
#pragma GCC unroll 32
        for (int t = 0; t < NT; ++t) acc[t] = Vec::fmadd(gv, Vec::load(sv + toff[t], tm), acc[t]);
        continue;
      }
#pragma GCC unroll 32
      for (int t = 0; t < NT; ++t) acc[t] = Vec::fmadd(gv, Vec::load(sv + toff[t]), acc[t]);
    }
  }
#pragma GCC unroll 32
  for (int t = 0; t < NT; ++t) tot[t] = Vec::add(tot[t], acc[t]);
  if (btot) *btot = Vec::add(*btot, bacc);
}

template <class T>
void gw_plane_dispatch(int nt, const float* srow0, int64_t rstep, const int64_t* toff, const T* g0, int64_t gsh,
                       int64_t nrows, int64_t NV, int tail, V* tot, V* btot) {
  switch (nt) {
#define DSCONV_NT(n) \
  case n: if constexpr (n <= kNT) gw_plane_block<T, n>(srow0, rstep, toff, g0, gsh, nrows, NV, tail, tot, btot); break;
    DSCONV_NT(1) DSCONV_NT(2) DSCONV_NT(3) DSCONV_NT(4) DSCONV_NT(5) DSCONV_NT(6) DSCONV_NT(7) DSCONV_NT(8)
    DSCONV_NT(9) DSCONV_NT(10) DSCONV_NT(11) DSCONV_NT(12) DSCONV_NT(13) DSCONV_NT(14) DSCONV_NT(15) DSCONV_NT(16)
    DSCONV_NT(17) DSCONV_NT(18) DSCONV_NT(19) DSCONV_NT(20) DSCONV_NT(21) DSCONV_NT(22) DSCONV_NT(23) DSCONV_NT(24)
#undef DSCONV_NT
    default: break;
  }
}

// Row-shared tap block (row stride and dilation 1): taps [kh0, kh0+KHB) x [kw0, kw0+KWB) in
// registers; scratch row j (virtual row = output row + kh) is loaded once per column offset and
// meets the grad_output rows j - kh of every kernel row of the block: (KHB + KWB) loads per
// KHB*KWB FMAs.
template <class T, int KHB, int KWB>
void gw_plane_shared(const float* sc, int64_t RS, int64_t Y0, const int64_t* koff, int64_t kh0, const T* g0,
                     int64_t gsh, int64_t o0, int64_t o1, int64_t NV, int tail, V* tot, int64_t KW) {
  V acc[KHB][KWB];
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KWB; ++k) acc[b][k] = Vec::zero();
  const Mask tm = Vec::mask(tail);
  const int64_t NVf = tail < L ? NV - 1 : NV;  // full vectors per row
  int64_t xo[KWB];
#pragma GCC unroll 8
  for (int k = 0; k < KWB; ++k) xo[k] = koff[k];
  // Compile-time flags: masked (last, partial vector); every (no runtime row test); block rows
  // [blo, bhi) take part (the others' grad_output row lies outside [o0, o1)).
  auto step = [&](const float* srow, const T* const* grow, const bool* ok, int64_t v, auto masked, auto every,
                  auto blo, auto bhi) __attribute__((always_inline)) {
    constexpr int BLO = decltype(blo)::value, BHI = decltype(bhi)::value;
    V gv[KHB];
#pragma GCC unroll 8
    for (int b = 0; b < KHB; ++b)
      if (b >= BLO && b < BHI)
        gv[b] = decltype(masked)::value ? Vec::load(grow[b] + v * L, tm) : Vec::load(grow[b] + v * L);
#pragma GCC unroll 8
    for (int k = 0; k < KWB; ++k) {
      // masked: lanes past the row read no input either (0 * Inf there would make the sum NaN)
      const V x = decltype(masked)::value ? Vec::load(srow + xo[k] + v * L, tm) : Vec::load(srow + xo[k] + v * L);
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b)
        if (b >= BLO && b < BHI && (decltype(every)::value || ok[b])) acc[b][k] = Vec::fmadd(gv[b], x, acc[b][k]);
    }
  };
  using F = std::false_type;
  using Tr = std::true_type;
  using B0 = std::integral_constant<int, 0>;
  using BK = std::integral_constant<int, KHB>;
  // rows j whose block rows are not all inside [o0, o1): the first and last KHB-1
  const int64_t jb = o0 + kh0, je = o1 + kh0 + KHB - 1;  // j range
  const int64_t fb = imin(je, jb + KHB - 1), fe = imax(fb, o1 + kh0);  // full rows [fb, fe)
  // Vectors outermost, rows innermost: the long loop runs over rows (narrow planes have only a
  // vector or two per row). Per tap the sum runs over vectors, then output rows, in order.
  // Bands of at least KHB rows (all but tiny planes) know which block rows take part in the
  // first and last KHB-1 rows at compile time: head row i pairs with block rows [0, i], tail row i
  // with [i+1, KHB). Runtime tests per FMA there cost a third of the time at 31x31 (perf annotate).
  const bool fixed_edges = o1 - o0 >= KHB;
  auto column = [&](int64_t v, auto masked) __attribute__((always_inline)) {
    const bool ok[KHB] = {};
    auto partial_row = [&](int64_t j) {
      const float* srow = sc + (j - Y0) * RS;
      bool rok[KHB];
      const T* grow[KHB];
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) {
        const int64_t o = j - kh0 - b;
        rok[b] = o >= o0 && o < o1;
        grow[b] = g0 + (clampi(o, o0, o1 - 1) - o0) * gsh;
      }
      step(srow, grow, rok, v, masked, F(), B0(), BK());
    };
    // head row I (j = jb + I): grad_output rows o0 + I - b for b <= I
    auto head_row = [&](auto I) __attribute__((always_inline)) {
      constexpr int i = decltype(I)::value;
      const T* grow[KHB];
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) grow[b] = g0 + (b <= i ? i - b : 0) * gsh;
      step(sc + (jb + i - Y0) * RS, grow, ok, v, masked, Tr(), B0(), std::integral_constant<int, i + 1>());
    };
    // tail row I (j = o1 + kh0 + I): grad_output rows o1 + I - b for b > I
    auto tail_row = [&](auto I) __attribute__((always_inline)) {
      constexpr int i = decltype(I)::value;
      const T* grow[KHB];
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) grow[b] = g0 + (b > i ? o1 - o0 + i - b : 0) * gsh;
      step(sc + (o1 + kh0 + i - Y0) * RS, grow, ok, v, masked, Tr(), std::integral_constant<int, i + 1>(), BK());
    };
    if (fixed_edges) {
      for_each_ic(head_row, std::make_integer_sequence<int, KHB - 1>());
    } else {
      for (int64_t j = jb; j < fb; ++j) partial_row(j);
    }
    const float* srow = sc + (fb - Y0) * RS;
    const T* grow[KHB];
#pragma GCC unroll 8
    for (int b = 0; b < KHB; ++b) grow[b] = g0 + (fb - kh0 - b - o0) * gsh;
    for (int64_t j = fb; j < fe; ++j) {
      step(srow, grow, ok, v, masked, Tr(), B0(), BK());
      srow += RS;
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) grow[b] += gsh;
    }
    if (fixed_edges) {
      for_each_ic(tail_row, std::make_integer_sequence<int, KHB - 1>());
    } else {
      for (int64_t j = fe; j < je; ++j) partial_row(j);
    }
  };
  for (int64_t v = 0; v < NVf; ++v) column(v, F());
  if (NVf < NV) column(NVf, Tr());
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KWB; ++k) tot[b * KW + k] = Vec::add(tot[b * KW + k], acc[b][k]);
}

constexpr int kGwKHB = L == 16 ? 4 : 2;  // row-shared weight-gradient tile (kernel rows x columns)
constexpr int kGwKWB = L == 16 ? 6 : 5;

template <class T, int KHB>
void gw_plane_shared_kw(int kwb, const float* sc, int64_t RS, int64_t Y0, const int64_t* koff, int64_t kh0,
                        const T* g0, int64_t gsh, int64_t o0, int64_t o1, int64_t NV, int tail, V* tot, int64_t KW) {
  switch (kwb) {
#define DSCONV_KWB(n) \
  case n: if constexpr (n <= kGwKWB) gw_plane_shared<T, KHB, n>(sc, RS, Y0, koff, kh0, g0, gsh, o0, o1, NV, tail, tot, KW); break;
    DSCONV_KWB(1) DSCONV_KWB(2) DSCONV_KWB(3) DSCONV_KWB(4) DSCONV_KWB(5) DSCONV_KWB(6)
#undef DSCONV_KWB
    default: break;
  }
}

// Row-shared tap blocks of a KH x KW kernel, balanced (31 columns: 6+5+5+5+5+5, not 6*5+1):
// f(kh0, khb, kw0, kwb) per block, rows outer.
template <class F>
inline void for_gw_tap_blocks(int64_t KH, int64_t KW, const F& f) {
  const int64_t nhb = cdiv(KH, kGwKHB), nwb = cdiv(KW, kGwKWB);
  for (int64_t bh = 0; bh < nhb; ++bh) {
    const int64_t kh0 = bh * KH / nhb;
    const int khb = static_cast<int>((bh + 1) * KH / nhb - kh0);
    for (int64_t bw = 0; bw < nwb; ++bw) {
      const int64_t kw0 = bw * KW / nwb;
      f(kh0, khb, kw0, static_cast<int>((bw + 1) * KW / nwb - kw0));
    }
  }
}

// f(integral_constant<int, khb>()) for a block height 1..kGwKHB.
template <class F>
inline void with_gw_khb(int khb, const F& f) {
  switch (khb) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: if constexpr (kGwKHB >= 3) f(std::integral_constant<int, 3>()); break;
    case 4: if constexpr (kGwKHB >= 4) f(std::integral_constant<int, 4>()); break;
    default: break;
  }
}

// All taps of one band with row-shared tiles, plus the bias sum.
template <class T>
void gw_plane_shared_all(const float* sc, int64_t RS, int64_t Y0, const int64_t* koff, int64_t KH, int64_t KW,
                         const T* g0, int64_t gsh, int64_t o0, int64_t o1, int64_t NV, int tail, V* tot, V* btot) {
  for_gw_tap_blocks(KH, KW, [&](int64_t kh0, int khb, int64_t kw0, int kwb) {
    with_gw_khb(khb, [&](auto B) {
      gw_plane_shared_kw<T, decltype(B)::value>(kwb, sc, RS, Y0, koff + kw0, kh0, g0, gsh, o0, o1, NV, tail,
                                                tot + kh0 * KW + kw0, KW);
    });
  });
  if (btot) {
    const Mask tm = Vec::mask(tail);
    V b = Vec::zero();
    for (int64_t o = o0; o < o1; ++o) {
      const T* grow = g0 + (o - o0) * gsh;
      for (int64_t v = 0; v < NV; ++v)
        b = Vec::add(b, (v == NV - 1 && tail < L) ? Vec::load(grow + v * L, tm) : Vec::load(grow + v * L));
    }
    *btot = Vec::add(*btot, b);
  }
}

// Fixed, shape-derived chunking of a reduction over `n` items for `tasks` independent tasks, so
// that small channel counts still use every thread and the order never depends on threads.
int64_t reduction_chunks(int64_t tasks, int64_t n) { return tasks >= 64 ? 1 : imin(n, cdiv(64, tasks)); }

template <class T>
void store_scalar(T* d, float v) {
  if constexpr (sizeof(T) == 4) {
    *d = v;
  } else {
    // Round to nearest even, NaN -> 0x7FC0 (as c10::BFloat16).
    uint32_t u;
    __builtin_memcpy(&u, &v, 4);
    *d = (v != v) ? uint16_t(0x7FC0) : static_cast<uint16_t>((u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16);
  }
}

// Runs drive(with_thread, nchunk, nper): with_thread(fn) sets up one thread's scratch and
// calls fn(image, begin_task, end_task); a task (output channel oc, batch chunk) is
// begin_task(), image(oc, n, pf) for its images n in order (pf: prefetch image n + 1's rows),
// end_task(task, oc). gw_planes drives it with one at::parallel_for over the tasks;
// bwd_nchw_one_pass adds the grad input of each plane after its weight-gradient image.
template <class T, class Drive>
bool gw_planes_run(const DwParams& p, const T* gout, const T* in, T* gw, T* gb, const Drive& drive) {
  const int64_t sw = p.stride_w, dw = p.dil_w, sh = p.stride_h;
  const int64_t NV = cdiv(p.OW, L);
  const int tail = static_cast<int>(p.OW - (NV - 1) * L);
  const int64_t maxoff = ((p.KW - 1) * dw) / sw;
  const int64_t PWp = rup(NV * L + maxoff + 1, L), RS = sw * PWp;
  const int64_t taps = p.taps(), OC = p.OC();
  Buf toffb(taps * 8);
  int64_t* toff = toffb.as<int64_t>();
  for (int64_t kh = 0; kh < p.KH; ++kh)
    for (int64_t kw = 0; kw < p.KW; ++kw)
      toff[kh * p.KW + kw] = kh * p.dil_h * RS + ((kw * dw) % sw) * PWp + (kw * dw) / sw;
  const int64_t nblocks = cdiv(taps, kNT), ntb = cdiv(taps, nblocks);
  const int64_t win = (p.KH - 1) * p.dil_h + 1;
  const int64_t B = band_rows(p.OH, sh, win, RS, 1);
  const int64_t nbands = cdiv(p.OH, B);
  const int64_t rows_max = (B - 1) * sh + win;
  const int64_t nchunk = reduction_chunks(OC, p.N), nper = cdiv(p.N, nchunk);
  Buf part(nchunk > 1 ? OC * nchunk * (taps + 1) * 4 : 64);
  float* pt = part.as<float>();
  const int64_t in_row_bytes = p.in_sw == 1 ? p.W * static_cast<int64_t>(sizeof(T)) : 0;
  const int64_t out_row_bytes = p.OW * static_cast<int64_t>(sizeof(T));
  // row-shared tiles where rows have stride and dilation 1 and the kernel is at least 3 x 3
  const bool shared = sh == 1 && p.dil_h == 1 && p.KH >= 3 && p.KW >= 3;
  Buf koffb(p.KW * 8);
  int64_t* koff = koffb.as<int64_t>();
  for (int64_t kw = 0; kw < p.KW; ++kw) koff[kw] = ((kw * dw) % sw) * PWp + (kw * dw) / sw;
  const Phase2Plan p2 = phase2_plan(sw, p.in_sw, p.W, p.pad_l, PWp);
  auto with_thread = [&](auto&& fn) {
    Scratch scratch(rows_max * RS, rows_max);
    Buf tmp((sw > 1 ? sw * PWp : 1) * 4 + 64);
    Buf totb((taps + 1) * L * 4 + 64);
    float* sc = scratch.f();
    V* tot = totb.as<V>();
    float* tmpf = tmp.as<float>();
    // per-row loop invariants as locals (see fwd_planes)
    const int64_t pad_t = p.pad_t, H = p.H, in_sn = p.in_sn, in_sh = p.in_sh, in_sw = p.in_sw, W = p.W;
    const int64_t pad_l = p.pad_l, rs = RS, pwp = PWp, irb = in_row_bytes;
    const Phase2Plan pl2 = p2;
    const bool p2rows = sizeof(T) == 4 && pl2.n == 1;  // as in fwd_planes
    auto image = [&](int64_t oc, int64_t n, bool pf) {
      const int64_t c = oc / p.M;
      const T* ip = in + n * p.in_sn + c * p.in_sc;
      const T* gp = gout + n * p.out_sn + oc * p.out_sc;
      for (int64_t band = 0; band < nbands; ++band) {
        const int64_t o0 = band * B, o1 = imin(p.OH, o0 + B);
        const int64_t Y0 = o0 * sh, Y1 = (o1 - 1) * sh + win;
        for (int64_t Y = Y0; Y < Y1;) {
          const int64_t ih = Y - pad_t;
          if (p2rows && ih >= 0 && ih < H) {  // a run of rows inside the input, in one loop (see fwd_planes)
            const int64_t run = imin(Y1, H + pad_t) - Y;
            const float* s0 = reinterpret_cast<const float*>(ip) + ih * in_sh;
            float* d0 = sc + (Y - Y0) * rs;
            bool* f0 = scratch.dirty(Y - Y0);
            const T* nrow = ip + in_sn + ih * in_sh;  // the next image's rows
            auto pfr = [&](int64_t r) {
              if (pf) prefetch_bytes(nrow + r * in_sh, irb);
            };
            prep_rows_p2<1>(pl2, s0, in_sh, d0, rs, pwp, run, f0, pfr);
            Y += run;
            continue;
          }
          if (pf && ih >= 0 && ih < H) prefetch_bytes(ip + in_sn + ih * in_sh, irb);
          prep_fwd_row<T>(sc + (Y - Y0) * rs, (ih >= 0 && ih < H) ? ip + ih * in_sh : nullptr, in_sw, W, pad_l, sw,
                          pwp, tmpf, scratch.dirty(Y - Y0), &pl2);
          ++Y;
        }
        if (pf)
          for (int64_t o = o0; o < o1; ++o) prefetch_bytes(gp + p.out_sn + o * p.out_sh, out_row_bytes);
        if (shared) {
          gw_plane_shared_all<T>(sc, RS, Y0, koff, p.KH, p.KW, gp + o0 * p.out_sh, p.out_sh, o0, o1, NV, tail, tot,
                                 gb ? tot + taps : nullptr);
          continue;
        }
        for (int64_t t0 = 0; t0 < taps; t0 += ntb) {
          const int nt = static_cast<int>(imin(ntb, taps - t0));
          gw_plane_dispatch<T>(nt, sc, sh * RS, toff + t0, gp + o0 * p.out_sh, p.out_sh, o1 - o0, NV, tail,
                               tot + t0, (gb && t0 == 0) ? tot + taps : nullptr);
        }
      }
    };
    auto begin_task = [&] {
      for (int64_t t = 0; t <= taps; ++t) tot[t] = Vec::zero();
    };
    auto end_task = [&](int64_t task, int64_t oc) {
      if (nchunk == 1) {
        if (gw)
          for (int64_t t = 0; t < taps; ++t) store_scalar(gw + oc * taps + t, Vec::hsum(tot[t]));
        if (gb) store_scalar(gb + oc, Vec::hsum(tot[taps]));
      } else {
        float* d = pt + task * (taps + 1);
        for (int64_t t = 0; t <= taps; ++t) d[t] = Vec::hsum(tot[t]);
      }
    };
    fn(image, begin_task, end_task);
  };
  drive(with_thread, nchunk, nper);
  if (nchunk > 1)
    for (int64_t oc = 0; oc < OC; ++oc)
      for (int64_t t = 0; t <= taps; ++t) {
        float s = 0.f;
        for (int64_t ch = 0; ch < nchunk; ++ch) s += pt[(oc * nchunk + ch) * (taps + 1) + t];
        if (t < taps && gw) store_scalar(gw + oc * taps + t, s);
        if (t == taps && gb) store_scalar(gb + oc, s);
      }
  return true;
}

template <class T>
bool gw_planes(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  return gw_planes_run<T>(p, gout, in, gw, gb, [&](auto& with_thread, int64_t nchunk, int64_t nper) {
    at::parallel_for(0, p.OC() * nchunk, 1, [&](int64_t begin, int64_t end) {
      with_thread([&](auto& image, auto& begin_task, auto& end_task) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t oc = task / nchunk, chunk = task % nchunk, n1 = imin(p.N, (chunk + 1) * nper);
          begin_task();
          for (int64_t n = chunk * nper; n < n1; ++n) image(oc, n, n + 1 < n1);
          end_task(task, oc);
        }
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Grad weight and bias, pixels (channels_last). One task = a fixed group of output rows; per
// row a table of column pointers (zero buffer outside the input), per channel block and tap
// block the accumulators are loaded from the task's partial sums, updated over the row, stored.
// Partial sums of the groups are then added in group order.

template <class T, int NT, bool MSK>
void gw_pix_block(const T* const* const* tp, int64_t sw, const T* g, int64_t gsw, int64_t ow0, int64_t ow1,
                  int64_t c0, Mask cm, float* accp, float* bp) {
  V acc[NT];
#pragma GCC unroll 32
  for (int t = 0; t < NT; ++t) acc[t] = Vec::load(accp + t * L);
  V bacc = bp ? Vec::load(bp) : Vec::zero();
  const T* const* tpl[NT];
#pragma GCC unroll 32
  for (int t = 0; t < NT; ++t) tpl[t] = tp[t];
  for (int64_t ow = ow0; ow < ow1; ++ow) {
    const V gv = MSK ? Vec::load(g + ow * gsw + c0, cm) : Vec::load(g + ow * gsw + c0);
    if (bp) bacc = Vec::add(bacc, gv);
#pragma GCC unroll 32
    for (int t = 0; t < NT; ++t) {
      const T* x = tpl[t][ow * sw] + c0;
      acc[t] = Vec::fmadd(gv, MSK ? Vec::load(x, cm) : Vec::load(x), acc[t]);
    }
  }
#pragma GCC unroll 32
  for (int t = 0; t < NT; ++t) Vec::store(accp + t * L, acc[t]);
  if (bp) Vec::store(bp, bacc);
}

template <class T, bool MSK>
void gw_pix_dispatch(int nt, const T* const* const* tp, int64_t sw, const T* g, int64_t gsw, int64_t ow0,
                     int64_t ow1, int64_t c0, Mask cm, float* accp, float* bp) {
  switch (nt) {
#define DSCONV_NT(n) \
  case n: if constexpr (n <= kNT) gw_pix_block<T, n, MSK>(tp, sw, g, gsw, ow0, ow1, c0, cm, accp, bp); break;
    DSCONV_NT(1) DSCONV_NT(2) DSCONV_NT(3) DSCONV_NT(4) DSCONV_NT(5) DSCONV_NT(6) DSCONV_NT(7) DSCONV_NT(8)
    DSCONV_NT(9) DSCONV_NT(10) DSCONV_NT(11) DSCONV_NT(12) DSCONV_NT(13) DSCONV_NT(14) DSCONV_NT(15) DSCONV_NT(16)
    DSCONV_NT(17) DSCONV_NT(18) DSCONV_NT(19) DSCONV_NT(20) DSCONV_NT(21) DSCONV_NT(22) DSCONV_NT(23) DSCONV_NT(24)
#undef DSCONV_NT
    default: break;
  }
}

// Fixed kernel width KW_ and column stride SW_ (dilation 1): interior pixels by direct
// addressing from the rows' base pointers, accumulators of the block in registers; per tap the
// pixels are summed in ascending order, as in gw_pix_block.
constexpr int64_t kGwPixAhead = 8;  // pixels prefetched ahead in gw_pix_fixed

template <class T, int KHB, int KW_, int SW_, bool MSK>
__attribute__((always_inline)) inline void gw_pix_border_px(const T* const* const* tp, int64_t sw, const T* gp,
                                                            int64_t ow, int64_t c0, Mask cm, V (&acc)[KHB][KW_],
                                                            V& bacc, bool bias) {
  const V gv = MSK ? Vec::load(gp, cm) : Vec::load(gp);
  if (bias) bacc = Vec::add(bacc, gv);
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KW_; ++k) {
      const T* x = tp[b * KW_ + k][ow * sw] + c0;
      acc[b][k] = Vec::fmadd(gv, MSK ? Vec::load(x, cm) : Vec::load(x), acc[b][k]);
    }
}

// P consecutive interior pixels of one row (from gp, input rows at xb) into the block's
// accumulators, walking the block's input columns j = 0 .. (P-1)*SW_+KW_-1 once: column j of
// kernel row b is loaded once and multiplied into every tap (b, kw) whose pixel q = (j-kw)/SW_
// falls in the block. Each grad_output pixel is loaded at its first column and dies KW_ columns
// later (at most ~KW_ of them live), so a run loads P + KHB*((P-1)*SW_+KW_) vectors for its
// P*KHB*KW_ products instead of one per product. Per accumulator the pixels still come in
// ascending order, the bias too: the sums are the same bits as the per-pixel loop's.
// Measured (Intel Xeon VM, 2026-11-27, in-process A/B, batch 32, channels_last grad weight):
// 5x5 / 7x7 1.02-1.08x (240x28x28 k5, 96x56x56 k7 1.05-1.07x); 3x3 0.96-1.00x, so 3x3 keeps the
// per-pixel loop. The 5x5 weight gradient still runs at ~25-35% of the FMA peak with everything
// in L2 (batch 1, one thread): loads were not what limits it.
template <class T, int P, int KHB, int KW_, int SW_, bool MSK>
__attribute__((always_inline)) inline void gw_pix_run(const T* (&xb)[KHB], const T*& gp, int64_t in_sw, int64_t gsw,
                                                      Mask cm, V (&acc)[KHB][KW_], V& bacc, bool bias) {
  constexpr int NC = (P - 1) * SW_ + KW_;
  V gv[P];
#pragma GCC unroll 64
  for (int j = 0; j < NC; ++j) {
    if (j % SW_ == 0 && j / SW_ < P) {
      constexpr int64_t ahead = kGwPixAhead;
      const int q = j / SW_;
      // the lines of pixels a few steps ahead (each pixel's channel vector is its own line)
      _mm_prefetch(reinterpret_cast<const char*>(gp + (q + ahead) * gsw), _MM_HINT_T0);
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b)
        _mm_prefetch(reinterpret_cast<const char*>(xb[b] + ((q + ahead) * SW_ + KW_ - 1) * in_sw), _MM_HINT_T0);
      gv[q] = MSK ? Vec::load(gp + q * gsw, cm) : Vec::load(gp + q * gsw);
      if (bias) bacc = Vec::add(bacc, gv[q]);
    }
#pragma GCC unroll 8
    for (int b = 0; b < KHB; ++b) {
      const T* x = xb[b] + j * in_sw;
      const V xv = MSK ? Vec::load(x, cm) : Vec::load(x);
#pragma GCC unroll 8
      for (int kw = 0; kw < KW_; ++kw) {
        const int d = j - kw;
        if (d >= 0 && d % SW_ == 0 && d / SW_ < P) acc[b][kw] = Vec::fmadd(gv[d / SW_], xv, acc[b][kw]);
      }
    }
  }
  gp += P * gsw;
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b) xb[b] += P * SW_ * in_sw;
}

// One row, kernel rows [kh0, kh0 + KHB) all inside the input, into the block's accumulators
// (registers): pixels [0, owlo) and [owhi, OW) through the tap pointer table tp (columns in the
// padding read the zero buffer), the interior [owlo, owhi) by direct addressing (5x5 / 7x7: in
// runs of kGwRun, then 4, then 1 pixels).
constexpr int kGwRun = 8;
template <class T, int KHB, int KW_, int SW_, bool MSK>
__attribute__((always_inline)) inline void gw_pix_fixed_body(V (&acc)[KHB][KW_], V& bacc, bool bias,
                                                             const T* const* rb, const T* const* const* tp,
                                                             int64_t in_sw, int64_t pad_l, const T* g, int64_t gsw,
                                                             int64_t owlo, int64_t owhi, int64_t OW, int64_t c0,
                                                             Mask cm) {
  for (int64_t ow = 0; ow < owlo; ++ow)
    gw_pix_border_px<T, KHB, KW_, SW_, MSK>(tp, SW_, g + ow * gsw + c0, ow, c0, cm, acc, bacc, bias);
  const T* xb[KHB];
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b) xb[b] = rb[b] + (owlo * SW_ - pad_l) * in_sw + c0;
  const T* gp = g + owlo * gsw + c0;
  int64_t ow = owlo;
  if constexpr (KW_ >= 5) {
    for (; ow + kGwRun <= owhi; ow += kGwRun)
      gw_pix_run<T, kGwRun, KHB, KW_, SW_, MSK>(xb, gp, in_sw, gsw, cm, acc, bacc, bias);
    if (ow + 4 <= owhi) {
      gw_pix_run<T, 4, KHB, KW_, SW_, MSK>(xb, gp, in_sw, gsw, cm, acc, bacc, bias);
      ow += 4;
    }
  }
  for (; ow < owhi; ++ow) gw_pix_run<T, 1, KHB, KW_, SW_, MSK>(xb, gp, in_sw, gsw, cm, acc, bacc, bias);
  for (int64_t ow = owhi; ow < OW; ++ow)
    gw_pix_border_px<T, KHB, KW_, SW_, MSK>(tp, SW_, g + ow * gsw + c0, ow, c0, cm, acc, bacc, bias);
}

template <class T, int KHB, int KW_>
__attribute__((always_inline)) inline void gw_acc_load(V (&acc)[KHB][KW_], V& bacc, const float* accp,
                                                       const float* bp) {
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KW_; ++k) acc[b][k] = Vec::load(accp + (b * KW_ + k) * L);
  bacc = bp ? Vec::load(bp) : Vec::zero();
}

template <class T, int KHB, int KW_>
__attribute__((always_inline)) inline void gw_acc_store(const V (&acc)[KHB][KW_], V bacc, float* accp, float* bp) {
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KW_; ++k) Vec::store(accp + (b * KW_ + k) * L, acc[b][k]);
  if (bp) Vec::store(bp, bacc);
}

// One row into the accumulators in memory (accp: the block's taps, bp: the bias or null).
template <class T, int KHB, int KW_, int SW_, bool MSK>
void gw_pix_fixed(const T* const* rb, const T* const* const* tp, int64_t in_sw, int64_t pad_l, const T* g,
                  int64_t gsw, int64_t owlo, int64_t owhi, int64_t OW, int64_t c0, Mask cm, float* accp, float* bp) {
  V acc[KHB][KW_], bacc;
  gw_acc_load<T, KHB, KW_>(acc, bacc, accp, bp);
  gw_pix_fixed_body<T, KHB, KW_, SW_, MSK>(acc, bacc, bp != nullptr, rb, tp, in_sw, pad_l, g, gsw, owlo, owhi, OW, c0,
                                           cm);
  gw_acc_store<T, KHB, KW_>(acc, bacc, accp, bp);
}

// Kernel rows per register block of gw_pix_fixed (accumulators KHB * KW within the register file).
constexpr int gw_fix_khb(int KW) { return L == 16 ? (KW == 5 ? 4 : 3) : (KW == 3 ? 3 : 1); }

template <class T, int KW_, int SW_, bool MSK>
void gw_pix_fixed_dispatch(int khb, const T* const* rb, const T* const* const* tp, int64_t in_sw, int64_t pad_l,
                           const T* g, int64_t gsw, int64_t owlo, int64_t owhi, int64_t OW, int64_t c0, Mask cm,
                           float* accp, float* bp) {
#define DSCONV_GWF(n) gw_pix_fixed<T, n, KW_, SW_, MSK>(rb, tp, in_sw, pad_l, g, gsw, owlo, owhi, OW, c0, cm, accp, bp)
  switch (khb) {
    case 1: DSCONV_GWF(1); break;
    case 2: if constexpr (gw_fix_khb(KW_) >= 2) DSCONV_GWF(2); break;
    case 3: if constexpr (gw_fix_khb(KW_) >= 3) DSCONV_GWF(3); break;
    case 4: if constexpr (gw_fix_khb(KW_) >= 4) DSCONV_GWF(4); break;
    default: break;
  }
#undef DSCONV_GWF
}

// The rows of a chunk (gw_pix_rows): per row its tables and the kernel rows inside the input.
template <class T>
struct GwRowRef {
  const T* const* rb;         // per kernel row: the input row (clamped into the image)
  const T* const* const* tp;  // per tap: the pointer table of its input columns
  const T* g;                 // the grad_output row
  int64_t kh_lo, kh_hi;       // kernel rows [kh_lo, kh_hi) lie inside the input
};

// Bias only: the grad_output pixels of a row added in ascending order (a row none of whose
// kernel rows falls in the block that carries the bias).
template <class T, bool MSK>
void gw_bias_row(const T* g, int64_t gsw, int64_t OW, int64_t c0, Mask cm, float* bp) {
  V bacc = Vec::load(bp);
  for (int64_t ow = 0; ow < OW; ++ow) {
    const T* gp = g + ow * gsw + c0;
    bacc = Vec::add(bacc, MSK ? Vec::load(gp, cm) : Vec::load(gp));
  }
  Vec::store(bp, bacc);
}

// Rows [0, nrows) of a chunk into the kernel-row block [b0, b0 + KHB) of one channel block, its
// accumulators in registers across the rows: loaded and stored once per chunk instead of once
// per row, and each input line is reused from L1 by the next rows. Rows that cover only part of
// the block (the top and bottom rows of an image) go through memory with gw_pix_fixed. Per
// accumulator the rows come in ascending order and the pixels of a row in ascending order, as
// in gw_pix_row: the same bits whatever the chunk size.
template <class T, int KHB, int KW_, int SW_, bool MSK>
void gw_pix_fixed_rows(const GwRowRef<T>* rows, int64_t nrows, int64_t b0, int64_t in_sw, int64_t pad_l, int64_t gsw,
                       int64_t owlo, int64_t owhi, int64_t OW, int64_t c0, Mask cm, float* accp, float* bp) {
  V acc[KHB][KW_], bacc;
  gw_acc_load<T, KHB, KW_>(acc, bacc, accp, bp);
  for (int64_t i = 0; i < nrows; ++i) {
    const GwRowRef<T>& r = rows[i];
    if (r.kh_lo <= b0 && r.kh_hi >= b0 + KHB) {
      gw_pix_fixed_body<T, KHB, KW_, SW_, MSK>(acc, bacc, bp != nullptr, r.rb + b0, r.tp + b0 * KW_, in_sw, pad_l, r.g,
                                               gsw, owlo, owhi, OW, c0, cm);
      continue;
    }
    const int64_t lo = imax(b0, r.kh_lo), hi = imin(b0 + KHB, r.kh_hi);
    gw_acc_store<T, KHB, KW_>(acc, bacc, accp, bp);
    if (lo < hi)
      gw_pix_fixed_dispatch<T, KW_, SW_, MSK>(static_cast<int>(hi - lo), r.rb + lo, r.tp + lo * KW_, in_sw, pad_l,
                                              r.g, gsw, owlo, owhi, OW, c0, cm, accp + (lo - b0) * KW_ * L, bp);
    else if (bp)
      gw_bias_row<T, MSK>(r.g, gsw, OW, c0, cm, bp);
    gw_acc_load<T, KHB, KW_>(acc, bacc, accp, bp);
  }
  gw_acc_store<T, KHB, KW_>(acc, bacc, accp, bp);
}

template <class T, bool MSK>
void gw_pix_rows_kind(int kind, int khb, const GwRowRef<T>* rows, int64_t nrows, int64_t b0, int64_t in_sw,
                      int64_t pad_l, int64_t gsw, int64_t owlo, int64_t owhi, int64_t OW, int64_t c0, Mask cm,
                      float* accp, float* bp) {
#define DSCONV_GWR(n, kw, sw)                                                                                     \
  case n:                                                                                                          \
    if constexpr (gw_fix_khb(kw) >= n)                                                                             \
      gw_pix_fixed_rows<T, n, kw, sw, MSK>(rows, nrows, b0, in_sw, pad_l, gsw, owlo, owhi, OW, c0, cm, accp, bp); \
    break;
#define DSCONV_GWRK(kw, sw)                                                                                   \
  switch (khb) { DSCONV_GWR(1, kw, sw) DSCONV_GWR(2, kw, sw) DSCONV_GWR(3, kw, sw) DSCONV_GWR(4, kw, sw) \
    default: break; }                                                                                        \
  break;
  switch (kind) {
    case kX3s1: DSCONV_GWRK(3, 1)
    case kX3s2: DSCONV_GWRK(3, 2)
    case kX5s1: DSCONV_GWRK(5, 1)
    case kX5s2: DSCONV_GWRK(5, 2)
    case kX7s1: DSCONV_GWRK(7, 1)
    case kX7s2: DSCONV_GWRK(7, 2)
    default: break;
  }
#undef DSCONV_GWRK
#undef DSCONV_GWR
}

template <class T, bool MSK>
void gw_pix_fixed_kind(int kind, int khb, const T* const* rb, const T* const* const* tp, int64_t in_sw, int64_t pad_l,
                       const T* g, int64_t gsw, int64_t owlo, int64_t owhi, int64_t OW, int64_t c0, Mask cm,
                       float* accp, float* bp) {
#define DSCONV_GWK(kw, sw) \
  gw_pix_fixed_dispatch<T, kw, sw, MSK>(khb, rb, tp, in_sw, pad_l, g, gsw, owlo, owhi, OW, c0, cm, accp, bp)
  switch (kind) {
    case kX3s1: DSCONV_GWK(3, 1); break;
    case kX3s2: DSCONV_GWK(3, 2); break;
    case kX5s1: DSCONV_GWK(5, 1); break;
    case kX5s2: DSCONV_GWK(5, 2); break;
    case kX7s1: DSCONV_GWK(7, 1); break;
    case kX7s2: DSCONV_GWK(7, 2); break;
    default: break;
  }
#undef DSCONV_GWK
}

// Shape-derived state of the channels_last grad-weight rows (gw_pixels, bwd_cl_fused).
struct GwPixPlan {
  int64_t C, CB, taps, NR, G, GR, per_group, ncols, khbmax, owlo, owhi, ntb, in_row_bytes, g_row_bytes;
  int ctail, kind;
  Mask cm;
  bool fixed;
  bool pf_next_row;  // software-prefetch what the next output row adds (gw_pix_row)
  int64_t rows;      // output rows per chunk (gw_pix_rows)
};

template <class T>
GwPixPlan gw_pix_plan(const DwParams& p, int64_t max_groups) {
  GwPixPlan q;
  q.C = p.OC();
  q.CB = cdiv(q.C, L);
  q.taps = p.taps();
  q.ctail = static_cast<int>(q.C - (q.CB - 1) * L);
  q.cm = Vec::mask(q.ctail);
  q.NR = p.N * p.OH;
  q.per_group = q.CB * (q.taps + 1) * L;  // floats of partial sums per group
  const int64_t gmax = imax(1, (16ll << 20) / (q.per_group * 4));
  // Groups of at least 16 rows where there are enough rows for 16 groups (fixed by the shape,
  // never by the thread count): on 7x7 / 14x14 maps, 64 groups of 3-7 rows spent more on their
  // partial sums than on the rows (32x1152x7x7 k5: 1.0 ms with 64 groups, 0.66 with 16).
  q.G = imax(1, imin(imin(q.NR, imin(max_groups, imax(16, imin(64, q.NR / 16)))), gmax));
  q.GR = cdiv(q.NR, q.G);
  q.ncols = (p.OW - 1) * p.stride_w + (p.KW - 1) * p.dil_w + 1;
  const int64_t nblocks = cdiv(q.taps, kNT);
  q.ntb = cdiv(q.taps, nblocks);
  // Fixed 3/5/7-wide kernels: interior pixels [owlo, owhi) (every column inside the input) by
  // direct addressing, in blocks of kernel rows sized to the register file.
  q.kind = pix_kind(p.KW, p.stride_w, p.dil_w);
  q.fixed = q.kind != kXGen;
  q.khbmax = q.kind == kX3s1 || q.kind == kX3s2 ? gw_fix_khb(3)
             : (q.kind == kX5s1 || q.kind == kX5s2 ? gw_fix_khb(5) : gw_fix_khb(7));
  q.owlo = imin(p.OW, cdiv(p.pad_l, p.stride_w));
  q.owhi = imax(q.owlo, imin(p.OW, p.W - p.KW + p.pad_l >= 0 ? (p.W - p.KW + p.pad_l) / p.stride_w + 1 : 0));
  // contiguous pixel rows (channels_last with no gaps): what the next-row prefetch may fetch
  q.in_row_bytes = p.in_sw == q.C ? p.W * q.C * static_cast<int64_t>(sizeof(T)) : 0;
  q.g_row_bytes = p.out_sw == q.C ? p.OW * q.C * static_cast<int64_t>(sizeof(T)) : 0;
  // Each thread walks its rows of grad_output and input as forward streams, which the hardware
  // prefetchers follow; the software prefetch of the next row mostly cost issue slots and fill
  // buffers (perf: a third of gw_pix_row's own samples on its prefetcht0 loop). In-process A/B
  // (Intel Xeon VM, 2 threads, batch 32, 2026-11-28, three rounds): without it grad weight
  // 1.01-1.30x and the one-pass backward 0.98-1.17x on 3x3 layers on 7x7..112x112 maps at
  // stride 1 and 14x14-56x56 at stride 2, 5x5 on 7x7 / 28x28; 7x7 kernels 0.91-1.09x (mixed);
  // slower (0.86-0.97x) at stride 2 on 112-wide inputs (64 / 96 channels), which keep it.
  // (On 2026-11-27 a run had measured 28x28 maps 0.78-0.80x without it: on this VM such results
  // move with the host's memory load; DSCONV_GW_PF=1 turns it back on for comparisons.)
  const int pfm = gw_prefetch_mode();
  q.pf_next_row = pfm == 1 || (pfm < 0 && p.stride_h > 1 && p.W > 64);
  // Chunks of 4 rows for 3x3 stride 1 (one block of kernel rows) on maps up to 28 wide: in-process
  // A/B (Intel Xeon VM, 2 threads, batch 32, one-pass backward, 11 rounds, 2026-11-28) against row
  // by row: 1.03x on 1024x7x7, 0.99x 960x7x7, 1.06x 512x14x14, 1.14x 384x14x14, 1.05x 480x14x14,
  // 1.06x 256x28x28, 1.08x 192x28x28. Row by row elsewhere: 56x56 maps 0.88-1.02x, stride 2
  // 0.71-0.96x (no next-row prefetch, and fewer input rows shared), 5x5 / 7x7 (several row
  // blocks, each walking the chunk again) 0.87-1.05x.
  // (at most a group's rows: a chunk never crosses a group, and the per-row tables are sized by it)
  const int64_t rows = gw_rows_override();
  q.rows = imin(q.GR, rows > 0 ? rows : (q.kind == kX3s1 && p.KH <= q.khbmax && p.OW <= 28 ? 4 : 1));
  return q;
}

// Per-thread tables of gw_pix_row.
template <class T>
struct GwPixScratch {
  struct PfRange {
    const char* p;
    int64_t bytes, step;  // step: bytes prefetched per channel block (whole cache lines)
  };
  Buf ptrb, colb, tpb, rbb, kbb, pfb, rowb;  // per-row tables: q.rows slots
  GwPixScratch(const DwParams& p, const GwPixPlan& q)
      : ptrb(q.rows * p.KH * q.ncols * 8 + 64), colb(q.ncols * 8 + 64), tpb(q.rows * q.taps * 8 + 64),
        rbb(q.rows * p.KH * 8 + 64), kbb((p.KH + 1) * 8 + 64), pfb((p.KH + 1) * sizeof(PfRange) + 64),
        rowb(q.rows * sizeof(GwRowRef<T>) + 64) {
    for (int64_t j = 0; j < q.ncols; ++j) {
      const int64_t iw = j - p.pad_l;
      colb.as<int64_t>()[j] = (iw >= 0 && iw < p.W) ? iw * p.in_sw : -1;
    }
  }
};

// Fills slot `slot` of s's tables for flattened output row r (image r / OH, row r % OH).
template <class T>
GwRowRef<T> gw_pix_tables(const DwParams& p, const GwPixPlan& q, GwPixScratch<T>& s, const T* gout, const T* in,
                          const T* zero, int64_t r, int64_t slot) {
  const T** ptrs = s.ptrb.template as<const T*>() + slot * p.KH * q.ncols;
  const T** rb = s.rbb.template as<const T*>() + slot * p.KH;
  const T* const** tp = s.tpb.template as<const T* const*>() + slot * q.taps;
  const int64_t* coloff = s.colb.template as<int64_t>();
  const int64_t n = r / p.OH, o = r % p.OH, ncols = q.ncols;
  for (int64_t kh = 0; kh < p.KH; ++kh) {
    const int64_t ih = o * p.stride_h - p.pad_t + kh * p.dil_h;
    const T** pr = ptrs + kh * ncols;
    if (ih < 0 || ih >= p.H) {
      for (int64_t j = 0; j < ncols; ++j) pr[j] = zero;
    } else {
      const T* rp = in + n * p.in_sn + ih * p.in_sh;
      for (int64_t j = 0; j < ncols; ++j) pr[j] = coloff[j] >= 0 ? rp + coloff[j] : zero;
    }
  }
  for (int64_t t = 0; t < q.taps; ++t) tp[t] = ptrs + (t / p.KW) * ncols + (t % p.KW) * p.dil_w;
  // Kernel rows [kh_lo, kh_hi) of this output row lie inside the input; the others (padding)
  // add nothing, and the fixed kernels skip them. (They took the pointer-table loop of
  // gw_pix_row whenever a kernel row fell outside: the top and bottom output rows, 2 of 7 on a
  // 7x7 map; 32x1024x7x7 3x3 1.19x faster, 32x1152x7x7 5x5 1.13x; the skipped products were zeros.)
  int64_t kh_lo = p.KH, kh_hi = 0;
  for (int64_t kh = 0; kh < p.KH; ++kh) {
    const int64_t ih = o * p.stride_h - p.pad_t + kh * p.dil_h;
    if (ih >= 0 && ih < p.H) {
      kh_lo = imin(kh_lo, kh);
      kh_hi = kh + 1;
    }
    rb[kh] = in + n * p.in_sn + imin(imax(ih, 0), p.H - 1) * p.in_sh;
  }
  return {rb, tp, gout + n * p.out_sn + o * p.out_sh, kh_lo, kh_hi};
}

// Adds flattened output row r to the group's partial sums acc (per channel block: taps + 1
// vectors, the last one the bias), channel block by channel block, prefetching what row r + 1
// needs where q.pf_next_row.
template <class T>
void gw_pix_row(const DwParams& p, const GwPixPlan& q, GwPixScratch<T>& s, const T* gout, const T* in, const T* zero,
                int64_t r, float* acc, bool bias) {
  using PfRange = typename GwPixScratch<T>::PfRange;
  PfRange* pf = s.pfb.template as<PfRange>();
  const GwRowRef<T> row = gw_pix_tables<T>(p, q, s, gout, in, zero, r, 0);
  const T* const* rb = row.rb;
  const T* const* const* tp = row.tp;
  const int64_t n = r / p.OH, o = r % p.OH, taps = q.taps;
  const T* g = row.g;
  // what the next row needs and this one does not (its grad_output row, its new input
  // rows): prefetched a share per channel block, a row's distance ahead
  int npf = 0;
  if (q.pf_next_row && r + 1 < q.NR) {
    const int64_t n1 = (r + 1) / p.OH, o1 = (r + 1) % p.OH;
    if (q.g_row_bytes > 0)
      pf[npf++] = {reinterpret_cast<const char*>(gout + n1 * p.out_sn + o1 * p.out_sh), q.g_row_bytes, 0};
    if (q.in_row_bytes > 0)
      for (int64_t kh = 0; kh < p.KH; ++kh) {
        const int64_t ih1 = o1 * p.stride_h - p.pad_t + kh * p.dil_h;
        if (ih1 < 0 || ih1 >= p.H) continue;
        const int64_t d = ih1 - (o * p.stride_h - p.pad_t);
        if (n1 == n && d >= 0 && d % p.dil_h == 0 && d / p.dil_h < p.KH) continue;  // already a row of o
        pf[npf++] = {reinterpret_cast<const char*>(in + n1 * p.in_sn + ih1 * p.in_sh), q.in_row_bytes, 0};
      }
  }
  // Share k of each range: lines [k * step, (k + 1) * step). Was bytes * k / nk per channel
  // block: two integer divisions per range and block, which on 7x7 maps (1024 channels: 64 blocks
  // of 7 pixels per row) took more cycles than the block's FMAs (perf: ~20% of the weight
  // gradient in the idiv; 32x1024x7x7 3x3 1.21x faster without, 32x384x14x14 1.10x).
  for (int i = 0; i < npf; ++i) pf[i].step = rup(cdiv(pf[i].bytes, q.CB), 64);
  auto prefetch_share = [&](int64_t k) {
    for (int i = 0; i < npf; ++i) {
      const int64_t b0 = k * pf[i].step;
      if (b0 < pf[i].bytes) prefetch_bytes(pf[i].p + b0, imin(pf[i].step, pf[i].bytes - b0));
    }
  };
  const int64_t kh_lo = row.kh_lo, kh_hi = row.kh_hi;
  // kernel-row blocks of at most khbmax rows: block bh is rows [kb[bh], kb[bh + 1])
  const int64_t nkh = imax(0, kh_hi - kh_lo), nkb = cdiv(nkh, q.khbmax);
  int64_t* kb = s.kbb.template as<int64_t>();
  for (int64_t bh = 0; nkb > 0 && bh <= nkb; ++bh) kb[bh] = kh_lo + bh * nkh / nkb;
  for (int64_t cb = 0; cb < q.CB; ++cb) {
    prefetch_share(cb);
    float* a = acc + cb * (taps + 1) * L;
    const bool msk = cb == q.CB - 1 && q.ctail < L;
    if (q.fixed && nkh > 0) {
      // kernel-row blocks: border pixels through the pointer table, interior directly
      for (int64_t bh = 0; bh < nkb; ++bh) {
        const int64_t kh0 = kb[bh], khb = kb[bh + 1] - kh0;
        const int64_t t0 = kh0 * p.KW;
        float* bp = (bias && bh == 0) ? a + taps * L : nullptr;
        if (msk)
          gw_pix_fixed_kind<T, true>(q.kind, static_cast<int>(khb), rb + kh0, tp + t0, p.in_sw, p.pad_l, g, p.out_sw,
                                     q.owlo, q.owhi, p.OW, cb * L, q.cm, a + t0 * L, bp);
        else
          gw_pix_fixed_kind<T, false>(q.kind, static_cast<int>(khb), rb + kh0, tp + t0, p.in_sw, p.pad_l, g,
                                      p.out_sw, q.owlo, q.owhi, p.OW, cb * L, q.cm, a + t0 * L, bp);
      }
      continue;
    }
    for (int64_t t0 = 0; t0 < taps; t0 += q.ntb) {
      const int nt = static_cast<int>(imin(q.ntb, taps - t0));
      float* bp = (bias && t0 == 0) ? a + taps * L : nullptr;
      if (msk)
        gw_pix_dispatch<T, true>(nt, tp + t0, p.stride_w, g, p.out_sw, 0, p.OW, cb * L, q.cm, a + t0 * L, bp);
      else
        gw_pix_dispatch<T, false>(nt, tp + t0, p.stride_w, g, p.out_sw, 0, p.OW, cb * L, q.cm, a + t0 * L, bp);
    }
  }
}

// Output rows [r0, r1) of one group: with the fixed kernels, channel block by channel block,
// each block's accumulators held in registers over all the rows (gw_pix_fixed_rows); otherwise
// (or where a row has no kernel row inside the input) row by row with gw_pix_row. Same sums in
// the same order either way.
template <class T>
void gw_pix_rows(const DwParams& p, const GwPixPlan& q, GwPixScratch<T>& s, const T* gout, const T* in, const T* zero,
                 int64_t r0, int64_t r1, float* acc, bool bias) {
  const int64_t nr = r1 - r0;
  GwRowRef<T>* rr = s.rowb.template as<GwRowRef<T>>();
  bool rows_ok = q.fixed && nr > 1;
  for (int64_t i = 0; rows_ok && i < nr; ++i) {
    rr[i] = gw_pix_tables<T>(p, q, s, gout, in, zero, r0 + i, i);
    rows_ok = rr[i].kh_hi > rr[i].kh_lo;
  }
  if (!rows_ok) {
    for (int64_t r = r0; r < r1; ++r) gw_pix_row<T>(p, q, s, gout, in, zero, r, acc, bias);
    return;
  }
  const int64_t taps = q.taps, nkb = cdiv(p.KH, q.khbmax);
  for (int64_t cb = 0; cb < q.CB; ++cb) {
    float* a = acc + cb * (taps + 1) * L;
    const bool msk = cb == q.CB - 1 && q.ctail < L;
    for (int64_t bh = 0; bh < nkb; ++bh) {
      const int64_t b0 = bh * p.KH / nkb, khb = (bh + 1) * p.KH / nkb - b0;
      float* bp = (bias && bh == 0) ? a + taps * L : nullptr;
      if (msk)
        gw_pix_rows_kind<T, true>(q.kind, static_cast<int>(khb), rr, nr, b0, p.in_sw, p.pad_l, p.out_sw, q.owlo,
                                  q.owhi, p.OW, cb * L, q.cm, a + b0 * p.KW * L, bp);
      else
        gw_pix_rows_kind<T, false>(q.kind, static_cast<int>(khb), rr, nr, b0, p.in_sw, p.pad_l, p.out_sw, q.owlo,
                                   q.owhi, p.OW, cb * L, q.cm, a + b0 * p.KW * L, bp);
    }
  }
}

// Adds the groups' partial sums in group order (parallel over channel blocks: each output has
// one owner) and stores grad weight / grad bias.
template <class T>
void gw_pix_reduce(const GwPixPlan& q, const float* pt, T* gw, T* gb) {
  const int64_t taps = q.taps;
  at::parallel_for(0, q.CB, 1, [&](int64_t begin, int64_t end) {
    for (int64_t cb = begin; cb < end; ++cb) {
      for (int64_t t = 0; t <= taps; ++t) {
        V s = Vec::load(pt + cb * (taps + 1) * L + t * L);
        for (int64_t grp = 1; grp < q.G; ++grp)
          s = Vec::add(s, Vec::load(pt + grp * q.per_group + cb * (taps + 1) * L + t * L));
        alignas(64) float sv[L];
        Vec::store(sv, s);
        for (int64_t l = 0; l < L && cb * L + l < q.C; ++l) {
          const int64_t oc = cb * L + l;
          if (t < taps && gw) store_scalar(gw + oc * taps + t, sv[l]);
          if (t == taps && gb) store_scalar(gb + oc, sv[l]);
        }
      }
    }
  });
}

// A zero channel vector past the last channel (the tables' padding columns point at it).
template <class T>
struct ZeroPixel {
  Buf b;
  explicit ZeroPixel(int64_t C) : b((C + 2 * L) * sizeof(T)) { std::memset(b.p, 0, (C + 2 * L) * sizeof(T)); }
  const T* get() const { return b.as<T>(); }
};

template <class T>
bool gw_pixels(const DwParams& p, const T* gout, const T* in, T* gw, T* gb, int64_t max_groups = 64) {
  const GwPixPlan q = gw_pix_plan<T>(p, max_groups);
  Buf part(q.G * q.per_group * 4 + 64);
  const ZeroPixel<T> zero(q.C);
  float* pt = part.as<float>();
  at::parallel_for(0, q.G, 1, [&](int64_t begin, int64_t end) {
    GwPixScratch<T> s(p, q);
    for (int64_t grp = begin; grp < end; ++grp) {
      float* acc = pt + grp * q.per_group;
      for (int64_t i = 0; i < q.per_group; ++i) acc[i] = 0.f;
      const int64_t rend = imin(q.NR, (grp + 1) * q.GR);
      for (int64_t r0 = grp * q.GR; r0 < rend; r0 += q.rows)
        gw_pix_rows<T>(p, q, s, gout, in, zero.get(), r0, imin(rend, r0 + q.rows), acc, gb != nullptr);
    }
  });
  gw_pix_reduce<T>(q, pt, gw, gb);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Large kernels in channels_last: through the planes kernels. Per task a block of L channels of
// one image (and band of rows) is transposed into L zero-padded scratch planes, computed with
// the planes kernels (which reach ~85% of the FMA peak at 31x31, against ~50% for the pixel
// kernels, whose every FMA needs its own input and weight vector), and transposed back. The
// transposes cost a few scalar moves per element, nothing next to the >= kClPlanesTaps FMAs.
// Small planes stay with the pixel kernels: they skip the kernel rows that fall in the padding
// (most of them when the kernel is as large as the image), and the planes kernels would waste
// vector lanes past a narrow row (13x13 kernels on 14x14 / 7x7 planes: 1.8x / 5x faster as pixels,
// forward and grad input; 31x31 on 32x32: 1.45x slower). Grad weight gains only on the
// smallest planes (13x13 on 7x7: 1.6x; on 14x14 no faster).

constexpr int64_t kClPlanesTaps = 81;          // 9x9 and larger
constexpr int64_t kClPlanesMinPixels = 257;    // forward / grad input planes of more than 16x16
constexpr int64_t kClPlanesMinPixelsGw = 101;  // grad weight: more than 10x10

inline bool cl_use_planes(int64_t taps, int64_t plane_h, int64_t plane_w, int64_t min_pixels = kClPlanesMinPixels) {
  return taps >= kClPlanesTaps && plane_h * plane_w >= min_pixels;
}

// 8 consecutive elements as floats, and back (bfloat16 widened / rounded as Vec does).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const bf16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
inline void store8(bf16_t* p, __m256 v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), round8_bf16(v)); }

// 8x8 block transpose: b[j * ldb + i] = a[i * lda + j] (float or bfloat16 on either side).
template <class S, class D>
inline void transpose8x8(const S* a, int64_t lda, D* b, int64_t ldb) {
  __m256 r0 = load8(a), r1 = load8(a + lda), r2 = load8(a + 2 * lda), r3 = load8(a + 3 * lda), r4 = load8(a + 4 * lda),
         r5 = load8(a + 5 * lda), r6 = load8(a + 6 * lda), r7 = load8(a + 7 * lda);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
         t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
         t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  r0 = _mm256_shuffle_ps(t0, t2, 0x44);
  r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  r2 = _mm256_shuffle_ps(t1, t3, 0x44);
  r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  r4 = _mm256_shuffle_ps(t4, t6, 0x44);
  r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  r6 = _mm256_shuffle_ps(t5, t7, 0x44);
  r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  store8(b, _mm256_permute2f128_ps(r0, r4, 0x20));
  store8(b + ldb, _mm256_permute2f128_ps(r1, r5, 0x20));
  store8(b + 2 * ldb, _mm256_permute2f128_ps(r2, r6, 0x20));
  store8(b + 3 * ldb, _mm256_permute2f128_ps(r3, r7, 0x20));
  store8(b + 4 * ldb, _mm256_permute2f128_ps(r0, r4, 0x31));
  store8(b + 5 * ldb, _mm256_permute2f128_ps(r1, r5, 0x31));
  store8(b + 6 * ldb, _mm256_permute2f128_ps(r2, r6, 0x31));
  store8(b + 7 * ldb, _mm256_permute2f128_ps(r3, r7, 0x31));
}

// Scatters one source pixel's channel vector into L planes at element offset `off`.
template <class T>
inline void scatter_channels(const T* px, bool msk, Mask cm, float* const* rows, int64_t off) {
  alignas(64) float tv[L];
  Vec::store(tv, msk ? Vec::load(px, cm) : Vec::load(px));
#pragma GCC unroll 16
  for (int c = 0; c < L; ++c) rows[c][off] = tv[c];
}

// scatter_channels for n source pixels s_sw apart going to consecutive scratch columns from off:
// with a full channel block, groups of 8 pixels move as 8x8 register transposes (planes rowp[c] =
// rowp[0] + c * pstride); the rest pixel by pixel. The per-pixel copy (a vector store and L scalar
// moves) took ~19% of a channels_last 31x31 grad weight (perf, Intel Xeon VM).
template <class T>
inline void scatter_run(const T* src, int64_t s_sw, int64_t n, bool msk, Mask cm, float* const* rowp,
                        int64_t pstride, int64_t off) {
  int64_t s = 0;
  if (!msk)
    for (; s + 8 <= n; s += 8)
#pragma GCC unroll 2
      for (int j = 0; j < L; j += 8) transpose8x8(src + s * s_sw + j, s_sw, rowp[0] + j * pstride + off + s, pstride);
  for (; s < n; ++s) scatter_channels(src + s * s_sw, msk, cm, rowp, off + s);
}

// The same for the source pixels [0, SW) of a row, pixel s to scratch column coff[s] (-1: none).
template <class T>
inline void scatter_row(const T* srow, int64_t s_sw, const int64_t* coff, int64_t SW, bool msk, Mask cm,
                        float* const* rowp, int64_t pstride) {
  int64_t s = 0;
  while (s < SW) {
    if (coff[s] < 0) {
      ++s;
      continue;
    }
    int64_t e = s + 1;  // [s, e): consecutive destination columns
    while (e < SW && coff[e] == coff[e - 1] + 1) ++e;
    scatter_run(srow + s * s_sw, s_sw, e - s, msk, cm, rowp, pstride, coff[s]);
    s = e;
  }
}

// Forward (GI = false) or grad input (GI = true) of a channels_last problem with M == 1.
template <class T, bool GI>
bool cl_planes(const DwParams& p, const T* src, const float* w32, const float* b32, T* dst) {
  const int64_t C = p.C, taps = p.taps();
  // engine geometry: forward as fwd_planes; grad input as bwd_input_planes (stride 1, phases 1)
  const int64_t OHe = GI ? p.H : p.OH, OWe = GI ? p.W : p.OW;
  const int64_t esh = GI ? 1 : p.stride_h, esw = GI ? 1 : p.stride_w;
  PlaneGeom g;
  g.OH = OHe;
  g.OW = OWe;
  g.KH = p.KH;
  g.KW = p.KW;
  g.sh = esh;
  g.dh = p.dil_h;
  g.NV = cdiv(OWe, L);
  g.tail = static_cast<int>(OWe - (g.NV - 1) * L);
  g.kind = plane_kind_for_width(plane_kind(p.KH, p.KW, esh, esw, p.dil_h, p.dil_w), g.NV, p.KH);
  const int64_t maxoff = ((p.KW - 1) * p.dil_w) / esw;
  g.PWp = rup(g.NV * L + maxoff + 1, L);
  g.RS = esw * g.PWp;
  Buf koffb(p.KW * 8);
  int64_t* koff = koffb.as<int64_t>();
  for (int64_t kw = 0; kw < p.KW; ++kw) koff[kw] = ((kw * p.dil_w) % esw) * g.PWp + (kw * p.dil_w) / esw;
  g.koff = koff;
  // source geometry
  const int64_t SW = GI ? p.OW : p.W;  // source width
  const int64_t s_sn = GI ? p.out_sn : p.in_sn, s_sh = GI ? p.out_sh : p.in_sh, s_sw = GI ? p.out_sw : p.in_sw;
  const int64_t d_sn = GI ? p.in_sn : p.out_sn, d_sh = GI ? p.in_sh : p.out_sh, d_sw = GI ? p.in_sw : p.out_sw;
  // virtual row Y -> source row; source column -> scratch element offset (or -1)
  const AxisMap rows = GI ? AxisMap{(p.KH - 1) * p.dil_h - p.pad_t, p.stride_h, p.OH} : AxisMap{p.pad_t, 1, p.H};
  Buf coffb(SW * 8 + 64);
  int64_t* coff = coffb.as<int64_t>();
  for (int64_t s = 0; s < SW; ++s) {
    const int64_t X = GI ? (p.KW - 1) * p.dil_w - p.pad_l + s * p.stride_w : s + p.pad_l;
    coff[s] = (X >= 0 && X / esw < g.PWp) ? (X % esw) * g.PWp + X / esw : -1;
  }
  const int64_t win = (p.KH - 1) * p.dil_h + 1;
  const int64_t B = band_rows(OHe, esh, win, g.RS, L, kClBandFloats);
  const int64_t nbands = cdiv(OHe, B);
  const int64_t rows_max = (B - 1) * esh + win;
  const int64_t pstride = rows_max * g.RS;  // floats per scratch plane
  const int64_t CB = cdiv(C, L);
  const int ctail = static_cast<int>(C - (CB - 1) * L);
  const Mask cm = Vec::mask(ctail);
  at::parallel_for(0, p.N * CB * nbands, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(L * pstride, L * rows_max);
    Buf stage(L * B * OWe * 4 + 64);
    float* sc = scratch.f();
    float* st = stage.as<float>();
    float* rowp[L];
    for (int64_t t = begin; t < end; ++t) {
      const int64_t band = t % nbands, ncb = t / nbands, cb = ncb % CB, n = ncb / CB;
      const int64_t c0 = cb * L, nc = imin(L, C - c0);
      const bool msk = nc < L;
      const int64_t o0 = band * B, o1 = imin(OHe, o0 + B);
      const int64_t Y0 = o0 * esh, Y1 = (o1 - 1) * esh + win;
      for (int64_t Y = Y0; Y < Y1; ++Y) {
        const int64_t r = Y - Y0, si = rows(Y);
        for (int c = 0; c < L; ++c) rowp[c] = sc + c * pstride + r * g.RS;
        if (si < 0) {
          for (int c = 0; c < L; ++c) {
            bool* d = scratch.dirty(c * rows_max + r);
            if (*d) zero_floats(rowp[c], g.RS);
            *d = 0;
          }
          continue;
        }
        for (int c = 0; c < L; ++c) *scratch.dirty(c * rows_max + r) = 1;
        scatter_row(src + n * s_sn + si * s_sh + c0, s_sw, coff, SW, msk, cm, rowp, pstride);
      }
      for (int64_t c = 0; c < nc; ++c) {
        const float* wp = w32 + (c0 + c) * taps;
        plane_rows<float>(g, sc + c * pstride, Y0, 0, &wp, 1, b32 ? b32[c0 + c] : 0.f, st + c * B * OWe - o0 * OWe,
                          OWe, o0, o1);
      }
      for (int64_t o = o0; o < o1; ++o) {
        T* drow = dst + n * d_sn + o * d_sh + c0;
        const float* srow = st + (o - o0) * OWe;
        int64_t q = 0;
        if (!msk)  // 8 pixels x 8 channels per register transpose
          for (; q + 8 <= OWe; q += 8)
#pragma GCC unroll 2
            for (int j = 0; j < L; j += 8) transpose8x8(srow + j * B * OWe + q, B * OWe, drow + q * d_sw + j, d_sw);
        for (; q < OWe; ++q) {
          alignas(64) float tv[L];
          for (int c = 0; c < L; ++c) tv[c] = srow[c * B * OWe + q];
          if (msk)
            Vec::store(drow + q * d_sw, Vec::load(tv), cm);
          else
            Vec::store(drow + q * d_sw, Vec::load(tv));
        }
      }
    }
  });
  return true;
}

// b[j * ldb + i] = a[i * lda + j] for i < rows, j < cols (float or bfloat16 on either side:
// the NCHW pixels route of bfloat16 tensors widens into and rounds out of float buffers here).
// PF: prefetch the rows of a two 8-row groups ahead (a source in memory: the transposes read 8
// rows at once, short streams the hardware prefetchers pick up late; cold NCHW 14x14 layers spent
// about half their time waiting in these loads).
template <class S, class D, bool PF = false>
void transpose(const S* a, int64_t lda, int64_t rows, int64_t cols, D* b, int64_t ldb) {
  int64_t i = 0;
  for (; i + 8 <= rows; i += 8) {
    if constexpr (PF)
      for (int64_t k = i + 16; k < imin(rows, i + 24); ++k)
        prefetch_bytes(a + k * lda, cols * static_cast<int64_t>(sizeof(S)));
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8) transpose8x8(a + i * lda + j, lda, b + j * ldb + i, ldb);
    for (; j < cols; ++j)
      for (int64_t k = 0; k < 8; ++k) store_scalar(b + j * ldb + i + k, to_f32(a[(i + k) * lda + j]));
  }
  for (; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) store_scalar(b + j * ldb + i, to_f32(a[i * lda + j]));
}

// Channel blocks and fixed batch chunks of a channels_last weight gradient (M == 1), with the
// buffer of per-chunk partials that reduce_cl_partials sums.
struct ClGwPlan {
  int64_t CB, nchunk, nper;
  Mask cm;  // lanes of the last channel block
  Buf part;
  ClGwPlan(const DwParams& p, int64_t taps)
      : CB(cdiv(p.C, L)),
        nchunk(reduction_chunks(CB, p.N)),
        nper(cdiv(p.N, nchunk)),
        cm(Vec::mask(static_cast<int>(p.C - (CB - 1) * L))),
        part(CB * nchunk * L * (taps + 1) * 4 + 64) {}
  float* pt() const { return part.as<float>(); }
};

// gw[oc][t] (t < taps) and gb[oc] (t == taps) = the sum over batch chunks, in chunk order, of the
// channels_last partials pt[((cb * nchunk + chunk) * L + c) * (taps + 1) + t], oc = cb * L + c.
template <class T>
void reduce_cl_partials(const float* pt, int64_t C, int64_t nchunk, int64_t taps, T* gw, T* gb) {
  for (int64_t oc = 0; oc < C; ++oc) {
    const int64_t cb = oc / L, c = oc % L;
    for (int64_t t = 0; t <= taps; ++t) {
      float s = 0.f;
      for (int64_t ch = 0; ch < nchunk; ++ch) s += pt[((cb * nchunk + ch) * L + c) * (taps + 1) + t];
      if (t < taps && gw) store_scalar(gw + oc * taps + t, s);
      if (t == taps && gb) store_scalar(gb + oc, s);
    }
  }
}

// Grad weight / bias with M == 1, row stride and dilation 1, on pixel vectors (channels_last, and
// NCHW through 8x8 row transposes): the row-shared tap tiles of gw_plane_shared, but with each vector the L channels of one
// pixel of a zero-padded pixel-major copy of the image's channel block. Against the transposed
// planes (gw_cl_planes): no transposes, whole-line loads, no horizontal sums (a lane is a
// channel). In-process A/B, Intel Xeon VM, 2 threads: 16x256x32x32 31x31 1.33x (99 -> 132
// GFLOP/s, bfloat16 1.36x), 16x512x14x14 13x13 1.73x, 9x9 / 11x11 on 21-28 wide maps 1.4-2.3x.

// Taps [kh0, kh0 + KHB) x [kw0, kw0 + KWB) over one image. xs: padded input, virtual pixel (Y, X)
// at xs + (Y * PW + X) * L; gs: grad_output, pixel (o, q) at gs + (o * OW + q) * L. Output (o, q)
// meets virtual input (o + kh, q * sw + kw * dw). Needs OH >= KHB (edge rows at compile time, as
// in gw_plane_shared). Per tap the sum runs over columns, then rows, in order.
template <int KHB, int KWB>
void gw_cls_tile(const float* xs, int64_t PW, const float* gs, int64_t OH, int64_t OW, int64_t sw, int64_t dw,
                 int64_t kh0, int64_t kw0, V* tot, int64_t KW) {
  V acc[KHB][KWB];
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KWB; ++k) acc[b][k] = Vec::zero();
  const int64_t xrow = PW * L, grs = OW * L, xstep = dw * L;
  auto step = [&](const float* xr, const float* const* gr, auto blo, auto bhi) __attribute__((always_inline)) {
    constexpr int BLO = decltype(blo)::value, BHI = decltype(bhi)::value;
    V gv[KHB];
#pragma GCC unroll 8
    for (int b = 0; b < KHB; ++b)
      if (b >= BLO && b < BHI) gv[b] = Vec::load(gr[b]);
#pragma GCC unroll 8
    for (int k = 0; k < KWB; ++k) {
      const V x = Vec::load(xr + k * xstep);
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b)
        if (b >= BLO && b < BHI) acc[b][k] = Vec::fmadd(gv[b], x, acc[b][k]);
    }
  };
  using B0 = std::integral_constant<int, 0>;
  using BK = std::integral_constant<int, KHB>;
  for (int64_t q = 0; q < OW; ++q) {
    const float* xq = xs + (q * sw + kw0 * dw) * L;  // virtual row 0 of the tile's first column
    const float* gq = gs + q * L;
    // head row i (Y = kh0 + i): grad_output rows i - b for b <= i
    for_each_ic([&](auto I) __attribute__((always_inline)) {
      constexpr int i = decltype(I)::value;
      const float* gr[KHB];
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) gr[b] = gq + (b <= i ? i - b : 0) * grs;
      step(xq + (kh0 + i) * xrow, gr, B0(), std::integral_constant<int, i + 1>());
    }, std::make_integer_sequence<int, KHB - 1>());
    const float* xr = xq + (kh0 + KHB - 1) * xrow;
    const float* gr[KHB];
#pragma GCC unroll 8
    for (int b = 0; b < KHB; ++b) gr[b] = gq + (KHB - 1 - b) * grs;
    for (int64_t o = KHB - 1; o < OH; ++o) {  // Y = o + kh0: every block row
      step(xr, gr, B0(), BK());
      xr += xrow;
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) gr[b] += grs;
    }
    // tail row i (Y = OH + kh0 + i): grad_output rows OH + i - b for b > i
    for_each_ic([&](auto I) __attribute__((always_inline)) {
      constexpr int i = decltype(I)::value;
      const float* gt[KHB];
#pragma GCC unroll 8
      for (int b = 0; b < KHB; ++b) gt[b] = gq + (b > i ? OH + i - b : 0) * grs;
      step(xq + (OH + kh0 + i) * xrow, gt, std::integral_constant<int, i + 1>(), BK());
    }, std::make_integer_sequence<int, KHB - 1>());
  }
#pragma GCC unroll 8
  for (int b = 0; b < KHB; ++b)
#pragma GCC unroll 8
    for (int k = 0; k < KWB; ++k) tot[(kh0 + b) * KW + kw0 + k] = Vec::add(tot[(kh0 + b) * KW + kw0 + k], acc[b][k]);
}

template <int KHB>
void gw_cls_tile_kw(int kwb, const float* xs, int64_t PW, const float* gs, int64_t OH, int64_t OW, int64_t sw,
                    int64_t dw, int64_t kh0, int64_t kw0, V* tot, int64_t KW) {
  switch (kwb) {
#define DSCONV_KWB(n) \
  case n: if constexpr (n <= kGwKWB) gw_cls_tile<KHB, n>(xs, PW, gs, OH, OW, sw, dw, kh0, kw0, tot, KW); break;
    DSCONV_KWB(1) DSCONV_KWB(2) DSCONV_KWB(3) DSCONV_KWB(4) DSCONV_KWB(5) DSCONV_KWB(6)
#undef DSCONV_KWB
    default: break;
  }
}

// Whether gw_cl_pixels_shared takes a problem (gw_cl_planes otherwise).
// NCHW-like sources need unit column strides (row transposes); channels_last unit channel strides.
inline bool gw_cls_ok(const DwParams& p) {
  if (!(p.in_sc == 1 && p.out_sc == 1) && !(p.in_sw == 1 && p.out_sw == 1)) return false;
  // the padded copy (per thread) up to 1 MiB: the column strips of a tile stay in L2
  const int64_t PH = p.OH + p.KH - 1, PW = (p.OW - 1) * p.stride_w + (p.KW - 1) * p.dil_w + 1;
  return p.M == 1 && p.stride_h == 1 && p.dil_h == 1 && p.KH >= 3 && p.KW >= 3 && p.OH >= kGwKHB &&
         PH * PW * L * 4 <= (int64_t(1) << 20);
}

template <class T>
bool gw_cl_pixels_shared(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  const int64_t C = p.C, taps = p.taps(), KH = p.KH, KW = p.KW, OH = p.OH, OW = p.OW;
  const int64_t sw = p.stride_w, dw = p.dil_w;
  const int64_t PH = OH + KH - 1, PW = (OW - 1) * sw + (KW - 1) * dw + 1;  // virtual input
  // input rows / columns inside the image: virtual Y <-> input row Y - pad_t
  const int64_t y0 = imax(0, p.pad_t), y1 = imin(PH, p.H + p.pad_t);
  const int64_t x0 = imax(0, p.pad_l), x1 = imin(PW, p.W + p.pad_l);
  const ClGwPlan plan(p, taps);
  const int64_t CB = plan.CB, nchunk = plan.nchunk, nper = plan.nper;
  const Mask cm = plan.cm;
  float* pt = plan.pt();
  // NCHW (planes with unit column stride): rows are transposed into pixel vectors; channels_last:
  // pixels copied as vectors
  const bool planar = !(p.in_sc == 1 && p.out_sc == 1);
  at::parallel_for(0, CB * nchunk, 1, [&](int64_t begin, int64_t end) {
    Buf xsb(PH * PW * L * 4 + 64), gsb(OH * OW * L * 4 + 64), totb((taps + 1) * L * 4 + 64);
    float* xs = xsb.as<float>();
    float* gs = gsb.as<float>();
    V* tot = totb.as<V>();
    // The padding stays zero: every task writes the same interior pixels.
    std::memset(xs, 0, static_cast<size_t>(PH * PW * L * 4));
    alignas(64) float lanes[L];
    bool zeroed_tail = false;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t cb = task / nchunk, chunk = task % nchunk;
      const int64_t c0 = cb * L, nc = imin(L, C - c0);
      const bool msk = nc < L;  // channels_last: masked loads, lanes past C read as zeros
      for (int64_t t = 0; t <= taps; ++t) tot[t] = Vec::zero();
      if (planar && msk && !zeroed_tail) {  // lanes past C stay zero from here on (full blocks come first)
        for (int64_t Y = y0; Y < y1; ++Y) zero_floats(xs + (Y * PW + x0) * L, (x1 - x0) * L);
        zero_floats(gs, OH * OW * L);
        zeroed_tail = true;
      }
      for (int64_t n = chunk * nper; n < imin(p.N, (chunk + 1) * nper); ++n) {
        for (int64_t Y = y0; Y < y1; ++Y) {
          const T* srow = in + n * p.in_sn + (Y - p.pad_t) * p.in_sh + c0 * p.in_sc;
          float* drow = xs + Y * PW * L;
          if (planar) {  // NCHW rows: 8x8 register transposes into pixel vectors
            transpose(srow + (x0 - p.pad_l), p.in_sc, nc, x1 - x0, drow + x0 * L, L);
            continue;
          }
          for (int64_t X = x0; X < x1; ++X) {
            const T* px = srow + (X - p.pad_l) * p.in_sw;
            Vec::store(drow + X * L, msk ? Vec::load(px, cm) : Vec::load(px));
          }
        }
        for (int64_t o = 0; o < OH; ++o) {
          const T* grow = gout + n * p.out_sn + o * p.out_sh + c0 * p.out_sc;
          if (planar) {
            transpose(grow, p.out_sc, nc, OW, gs + o * OW * L, L);
            continue;
          }
          for (int64_t q = 0; q < OW; ++q) {
            const T* px = grow + q * p.out_sw;
            Vec::store(gs + (o * OW + q) * L, msk ? Vec::load(px, cm) : Vec::load(px));
          }
        }
        V bsum = Vec::zero();
        for (int64_t i = 0; i < OH * OW; ++i) bsum = Vec::add(bsum, Vec::load(gs + i * L));
        tot[taps] = Vec::add(tot[taps], bsum);
        for_gw_tap_blocks(KH, KW, [&](int64_t kh0, int khb, int64_t kw0, int kwb) {
          with_gw_khb(khb, [&](auto B) {
            gw_cls_tile_kw<decltype(B)::value>(kwb, xs, PW, gs, OH, OW, sw, dw, kh0, kw0, tot, KW);
          });
        });
      }
      float* d = pt + (cb * nchunk + chunk) * L * (taps + 1);
      for (int64_t t = 0; t <= taps; ++t) {
        Vec::store(lanes, tot[t]);
        for (int64_t c = 0; c < nc; ++c) d[c * (taps + 1) + t] = lanes[c];
      }
    }
  });
  reduce_cl_partials(pt, C, nchunk, taps, gw, gb);
  return true;
}

// Grad weight / bias of a channels_last problem with M == 1, through the planes kernels.
// One task = (channel block, fixed batch chunk); per-channel totals as in gw_planes.
template <class T>
bool gw_cl_planes(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  if (gw_cls_ok(p)) return gw_cl_pixels_shared<T>(p, gout, in, gw, gb);
  const int64_t sw = p.stride_w, dw = p.dil_w, sh = p.stride_h, C = p.C;
  const int64_t NV = cdiv(p.OW, L), GS = NV * L;
  const int tail = static_cast<int>(p.OW - (NV - 1) * L);
  const int64_t maxoff = ((p.KW - 1) * dw) / sw;
  const int64_t PWp = rup(NV * L + maxoff + 1, L), RS = sw * PWp;
  const int64_t taps = p.taps();
  Buf toffb(taps * 8), koffb(p.KW * 8), coffb(p.W * 8 + 64);
  int64_t* toff = toffb.as<int64_t>();
  int64_t* koff = koffb.as<int64_t>();
  int64_t* coff = coffb.as<int64_t>();
  for (int64_t kh = 0; kh < p.KH; ++kh)
    for (int64_t kw = 0; kw < p.KW; ++kw)
      toff[kh * p.KW + kw] = kh * p.dil_h * RS + ((kw * dw) % sw) * PWp + (kw * dw) / sw;
  for (int64_t kw = 0; kw < p.KW; ++kw) koff[kw] = ((kw * dw) % sw) * PWp + (kw * dw) / sw;
  for (int64_t s = 0; s < p.W; ++s) {
    const int64_t X = s + p.pad_l;
    coff[s] = X / sw < PWp ? (X % sw) * PWp + X / sw : -1;
  }
  const bool shared = sh == 1 && p.dil_h == 1 && p.KH >= 3 && p.KW >= 3;
  const int64_t nblocks = cdiv(taps, kNT), ntb = cdiv(taps, nblocks);
  const int64_t win = (p.KH - 1) * p.dil_h + 1;
  const int64_t B = band_rows(p.OH, sh, win, RS, L, kClBandFloats);
  const int64_t nbands = cdiv(p.OH, B);
  const int64_t rows_max = (B - 1) * sh + win;
  const int64_t pstride = rows_max * RS;
  const ClGwPlan plan(p, taps);
  const int64_t CB = plan.CB, nchunk = plan.nchunk, nper = plan.nper;
  const Mask cm = plan.cm;
  float* pt = plan.pt();
  const AxisMap rows{p.pad_t, 1, p.H};
  at::parallel_for(0, CB * nchunk, 1, [&](int64_t begin, int64_t end) {
    Scratch scratch(L * pstride, L * rows_max);
    Buf gpb(L * B * GS * 4 + 64), totb(L * (taps + 1) * L * 4 + 64);
    float* sc = scratch.f();
    float* gpl = gpb.as<float>();
    V* tot = totb.as<V>();
    float* rowp[L];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t cb = task / nchunk, chunk = task % nchunk;
      const int64_t c0 = cb * L, nc = imin(L, C - c0);
      const bool msk = nc < L;
      for (int64_t i = 0; i < L * (taps + 1); ++i) tot[i] = Vec::zero();
      for (int64_t n = chunk * nper; n < imin(p.N, (chunk + 1) * nper); ++n) {
        for (int64_t band = 0; band < nbands; ++band) {
          const int64_t o0 = band * B, o1 = imin(p.OH, o0 + B);
          const int64_t Y0 = o0 * sh, Y1 = (o1 - 1) * sh + win;
          for (int64_t Y = Y0; Y < Y1; ++Y) {
            const int64_t r = Y - Y0, si = rows(Y);
            for (int c = 0; c < L; ++c) rowp[c] = sc + c * pstride + r * RS;
            if (si < 0) {
              for (int c = 0; c < L; ++c) {
                bool* d = scratch.dirty(c * rows_max + r);
                if (*d) zero_floats(rowp[c], RS);
                *d = 0;
              }
              continue;
            }
            for (int c = 0; c < L; ++c) *scratch.dirty(c * rows_max + r) = 1;
            scatter_row(in + n * p.in_sn + si * p.in_sh + c0, p.in_sw, coff, p.W, msk, cm, rowp, pstride);
          }
          for (int64_t o = o0; o < o1; ++o) {
            for (int c = 0; c < L; ++c) rowp[c] = gpl + (c * B + (o - o0)) * GS;
            scatter_run(gout + n * p.out_sn + o * p.out_sh + c0, p.out_sw, p.OW, msk, cm, rowp, B * GS, 0);
          }
          for (int64_t c = 0; c < nc; ++c) {
            V* tc = tot + c * (taps + 1);
            const float* scp = sc + c * pstride;
            const float* gp = gpl + c * B * GS;
            if (shared) {
              gw_plane_shared_all<float>(scp, RS, Y0, koff, p.KH, p.KW, gp, GS, o0, o1, NV, tail, tc,
                                         gb ? tc + taps : nullptr);
            } else {
              for (int64_t t0 = 0; t0 < taps; t0 += ntb) {
                const int ntk = static_cast<int>(imin(ntb, taps - t0));
                gw_plane_dispatch<float>(ntk, scp, sh * RS, toff + t0, gp, GS, o1 - o0, NV, tail, tc + t0,
                                         (gb && t0 == 0) ? tc + taps : nullptr);
              }
            }
          }
        }
      }
      for (int64_t c = 0; c < nc; ++c) {
        float* d = pt + ((cb * nchunk + chunk) * L + c) * (taps + 1);
        for (int64_t t = 0; t <= taps; ++t) d[t] = Vec::hsum(tot[c * (taps + 1) + t]);
      }
    }
  });
  reduce_cl_partials(pt, C, nchunk, taps, gw, gb);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Narrow images under wide kernels (stride 1, dilation 1, output as wide as the input, W <= 15
// with AVX-512, 7 with AVX2): RepLKNet's 13x13 and ConvNeXt's 7x7 kernels on 7x7 and 14x14 maps.
// Output pixel q of a row meets input pixel j of a valid kernel row through kernel column
// kw = j - q + pad_l. The pixels engine walks all KW columns for each output pixel, the ones in
// the padding included (13 for 7 real ones on a 7x7 map), each through a column pointer. Here
// the row's W input pixels and a tile of P <= 7 outputs (x VC channel vectors) stay in registers;
// per valid kernel row the inputs are loaded once, and each "diagonal" j - q shares one weight
// vector from a table by column offset; diagonals whose kw falls outside the kernel are skipped.
// 16x512x14x14 k13: 2.4-2.6 -> 1.5 ms forward (both layouts, 2 threads).

// Widest image: its J input pixels + a tile of P outputs (+ weights) in registers.
constexpr int kSmallMax = L == 16 ? 15 : 7;
constexpr int kSmallTile = 7;  // outputs per register row (the last tile of a row overlaps)

// Pixel-major source and destination: pixel (h, w) of channel c at base + h*sh + w*sw + c.
struct SmallGeom {
  int64_t H, OH, KH, pad_t;  // source rows, output rows, kernel rows, top padding
  int64_t W;                 // source width = output width
  int64_t d_lo, d_hi;        // table indices whose kernel column lies inside the kernel
  int64_t TWF;               // table width per kernel row: 2W - 1 (index j - q + W - 1)
};

template <int J, int P>
constexpr int small_vc() {
  return 2 * (J + P) + 2 <= (L == 16 ? 32 : 16) ? 2 : 1;  // inputs + accumulators + weights
}

// Outputs [q0, q0 + P) of row oh for VC channel vectors. wz: this channel block's table,
// wz[(kh * TWF + j - q + W - 1) * L] for input column j and output column q.
template <class T, int J, int P, int VC, bool MSK>
__attribute__((always_inline)) inline void small_tile(const SmallGeom& s, const T* src, int64_t s_sh, int64_t s_sw,
                                                       const float* wz, int64_t wvs, const float* bias, int64_t oh,
                                                       int64_t q0, T* o, int64_t o_sw, Mask cm) {
  V acc[P][VC];
#pragma GCC unroll 4
  for (int v = 0; v < VC; ++v) {
    const V b = bias ? Vec::load(bias + v * L) : Vec::zero();
#pragma GCC unroll 8
    for (int q = 0; q < P; ++q) acc[q][v] = b;
  }
  // diagonal t (= j - q + P - 1) reads table index t + off
  const int64_t off = s.W - P - q0;
  const int64_t t_lo = s.d_lo - off, t_hi = s.d_hi - off;
  const int64_t kh0 = imax(0, s.pad_t - oh), kh1 = imin(s.KH, s.H + s.pad_t - oh);
  for (int64_t kh = kh0; kh < kh1; ++kh) {
    const T* xr = src + (oh + kh - s.pad_t) * s_sh;
    V x[J][VC];
#pragma GCC unroll 16
    for (int j = 0; j < J; ++j)
#pragma GCC unroll 4
      for (int v = 0; v < VC; ++v) x[j][v] = MSK ? Vec::load(xr + j * s_sw + v * L, cm) : Vec::load(xr + j * s_sw + v * L);
    const float* wr = wz + (kh * s.TWF + off) * L;
#pragma GCC unroll 32
    for (int t = 0; t < J + P - 1; ++t) {
      if (t < t_lo || t >= t_hi) continue;
      V wv[VC];
#pragma GCC unroll 4
      for (int v = 0; v < VC; ++v) wv[v] = Vec::load(wr + t * L + v * wvs);
      // pairs (j, q) with j - q = t - (P - 1)
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q) {
        const int j = t - (P - 1) + q;
        if (j >= 0 && j < J) {
#pragma GCC unroll 4
          for (int v = 0; v < VC; ++v) acc[q][v] = Vec::fmadd(wv[v], x[j][v], acc[q][v]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < P; ++q)
#pragma GCC unroll 4
    for (int v = 0; v < VC; ++v) {
      if (MSK)
        Vec::store(o + q * o_sw + v * L, acc[q][v], cm);
      else
        Vec::store(o + q * o_sw + v * L, acc[q][v]);
    }
}

// All output rows of one image for channels [0, nc) (src, out, wz, bias already at the first
// channel; wz / bias blocks of L channels).
template <class T, int J>
void small_image_j(const SmallGeom& s, const T* src, int64_t s_sh, int64_t s_sw, const float* wz, const float* bias,
                   T* out, int64_t o_sh, int64_t o_sw, int64_t nc) {
  constexpr int P = J < kSmallTile ? J : kSmallTile;
  constexpr int VC = small_vc<J, P>();
  const int64_t nfull = nc / L;
  const int ctail = static_cast<int>(nc - nfull * L);
  const Mask cm = Vec::mask(ctail > 0 ? ctail : L);
  const int64_t bstride = s.KH * s.TWF * L;  // floats per channel block in wz
  for (int64_t oh = 0; oh < s.OH; ++oh)
    for (int64_t q0 = 0; q0 < J; q0 += P) {
      const int64_t q = q0 + P <= J ? q0 : J - P;  // the last tile overlaps the one before
      T* o = out + oh * o_sh + q * o_sw;
      int64_t cb = 0;
      for (; cb + VC <= nfull; cb += VC)
        small_tile<T, J, P, VC, false>(s, src + cb * L, s_sh, s_sw, wz + cb * bstride, bstride,
                                       bias ? bias + cb * L : nullptr, oh, q, o + cb * L, o_sw, cm);
      for (; cb < nfull; ++cb)
        small_tile<T, J, P, 1, false>(s, src + cb * L, s_sh, s_sw, wz + cb * bstride, bstride,
                                      bias ? bias + cb * L : nullptr, oh, q, o + cb * L, o_sw, cm);
      if (ctail > 0)
        small_tile<T, J, P, 1, true>(s, src + cb * L, s_sh, s_sw, wz + cb * bstride, bstride,
                                     bias ? bias + cb * L : nullptr, oh, q, o + cb * L, o_sw, cm);
    }
}

template <class T>
void small_image(const SmallGeom& s, const T* src, int64_t s_sh, int64_t s_sw, const float* wz, const float* bias,
                 T* out, int64_t o_sh, int64_t o_sw, int64_t nc) {
  switch (s.W) {
#define DSCONV_SMALL(n) \
  case n: if constexpr (n <= kSmallMax) small_image_j<T, n>(s, src, s_sh, s_sw, wz, bias, out, o_sh, o_sw, nc); break;
    DSCONV_SMALL(1) DSCONV_SMALL(2) DSCONV_SMALL(3) DSCONV_SMALL(4) DSCONV_SMALL(5) DSCONV_SMALL(6) DSCONV_SMALL(7)
    DSCONV_SMALL(8) DSCONV_SMALL(9) DSCONV_SMALL(10) DSCONV_SMALL(11) DSCONV_SMALL(12) DSCONV_SMALL(13)
    DSCONV_SMALL(14) DSCONV_SMALL(15)
#undef DSCONV_SMALL
    default: break;
  }
}

// Whether the forward (gi = false) or, at stride 1, the grad input (gi = true) takes this route:
// kernels at least 7 wide, or as wide as the image (on 3x3 / 5x5 the pixels engine computes few
// taps in the padding and its column loads are shared as well).
inline bool small_ok(const DwParams& p, bool gi) {
  (void)gi;
  if (p.M != 1 || p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return false;
  if (p.OW != p.W || p.W > kSmallMax) return false;
  return p.KW >= 7 || p.KW >= p.W;
}

// Weights by column offset: wz[cb][kh][d][l] = w[c][kh][kw] with kw = d - (W - 1) + pad_l (the
// flipped kernel for the grad input), 0 outside the kernel or past the last channel.
template <class T>
SmallGeom small_prepare(const DwParams& p, bool gi, const T* w, float* wz) {
  const int64_t W = p.W, TWF = 2 * W - 1, C = p.C, CB = cdiv(C, L), KH = p.KH, KW = p.KW;
  const int64_t pad_l = gi ? KW - 1 - p.pad_l : p.pad_l;
  SmallGeom s;
  s.H = gi ? p.OH : p.H;
  s.OH = gi ? p.H : p.OH;
  s.KH = KH;
  s.pad_t = gi ? KH - 1 - p.pad_t : p.pad_t;
  s.W = W;
  s.TWF = TWF;
  s.d_lo = imax(0, W - 1 - pad_l);
  s.d_hi = imin(TWF, KW + W - 1 - pad_l);
  // Zeros, then each tap written once, blocks of channels in parallel: the table is a few 100k
  // floats for 13x13 kernels (1024 channels on 7x7 maps: 173k), and building it element by
  // element on one thread took 0.1-0.3 ms, a sizeable share of those 1-2 ms layers.
  const int64_t bfl = KH * TWF * L;  // floats per channel block
  at::parallel_for(0, CB, 4, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0 * bfl; i < b1 * bfl; ++i) wz[i] = 0.f;
    for (int64_t c = b0 * L; c < imin(C, b1 * L); ++c) {
      float* zc = wz + (c / L) * bfl + c % L;
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t d = kw + (W - 1) - pad_l;
          if (d < 0 || d >= TWF) continue;
          zc[(kh * TWF + d) * L] =
              to_f32(gi ? w[(c * KH + (KH - 1 - kh)) * KW + (KW - 1 - kw)] : w[(c * KH + kh) * KW + kw]);
        }
    }
  });
  return s;
}

inline int64_t small_wz_floats(const DwParams& p) { return cdiv(p.C, L) * p.KH * (2 * p.W - 1) * L; }

// Grad weight + bias of narrow images under wide kernels (small_ok): one task per (channel block,
// kernel row) walks every image's output rows; per row the P grad_output pixels and the matching
// input row's P pixels are in registers and each product lands on its diagonal j - q (kernel
// column kw = j - q + pad_l), summed in registers over all images in a fixed order. Taps whose
// column never meets the image get 0. Pixel-major operands (channel stride 1).
template <class T, int P>
void small_gw_task(const DwParams& p, const T* go, const T* x, int64_t cb, int64_t kh, T* gw) {
  constexpr int TW = 2 * P - 1;
  const int64_t C = p.C, c0 = cb * L, nc = imin(L, C - c0);
  const Mask cm = Vec::mask(static_cast<int>(nc));
  const bool msk = nc < L;
  V acc[TW];
#pragma GCC unroll 32
  for (int t = 0; t < TW; ++t) acc[t] = Vec::zero();
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t oh = 0; oh < p.OH; ++oh) {
      const int64_t ih = oh + kh - p.pad_t;
      if (ih < 0 || ih >= p.H) continue;
      const T* gr = go + n * p.out_sn + oh * p.out_sh + c0;
      const T* xr = x + n * p.in_sn + ih * p.in_sh + c0;
      V g[P], xv[P];
#pragma GCC unroll 16
      for (int q = 0; q < P; ++q) {
        g[q] = msk ? Vec::load(gr + q * p.out_sw, cm) : Vec::load(gr + q * p.out_sw);
        xv[q] = msk ? Vec::load(xr + q * p.in_sw, cm) : Vec::load(xr + q * p.in_sw);
      }
#pragma GCC unroll 32
      for (int t = 0; t < TW; ++t)
#pragma GCC unroll 16
        for (int q = 0; q < P; ++q) {
          const int j = t - (P - 1) + q;
          if (j >= 0 && j < P) acc[t] = Vec::fmadd(g[q], xv[j], acc[t]);
        }
    }
  alignas(64) float tv[TW][L];
#pragma GCC unroll 32
  for (int t = 0; t < TW; ++t) Vec::store(tv[t], acc[t]);
  const int64_t taps = p.taps();
  for (int64_t l = 0; l < nc; ++l)
    for (int64_t kw = 0; kw < p.KW; ++kw) {
      const int64_t t = kw - p.pad_l + P - 1;
      store_scalar(gw + (c0 + l) * taps + kh * p.KW + kw, (t >= 0 && t < TW) ? tv[t][l] : 0.f);
    }
}

// Registers: P grad_output + P input pixels + 2P - 1 diagonal sums (AVX-512: P <= 8; AVX2: 4).
constexpr int kSmallGwMax = L == 16 ? 8 : 4;
inline bool small_gw_ok(const DwParams& p) { return small_ok(p, false) && p.W <= kSmallGwMax; }

template <class T>
void small_gw(const DwParams& p, const T* go, const T* x, T* gw, T* gb) {
  const int64_t CB = cdiv(p.C, L);
  at::parallel_for(0, gw ? CB * p.KH : 0, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t cb = t / p.KH, kh = t % p.KH;
      switch (p.W) {
#define DSCONV_SGW(n) \
  case n: if constexpr (n <= kSmallGwMax) small_gw_task<T, n>(p, go, x, cb, kh, gw); break;
        DSCONV_SGW(1) DSCONV_SGW(2) DSCONV_SGW(3) DSCONV_SGW(4) DSCONV_SGW(5) DSCONV_SGW(6) DSCONV_SGW(7)
        DSCONV_SGW(8)
#undef DSCONV_SGW
        default: break;
      }
    }
  });
  if (!gb) return;
  // bias: every grad_output pixel of each channel, images and rows in order
  at::parallel_for(0, CB, 1, [&](int64_t begin, int64_t end) {
    for (int64_t cb = begin; cb < end; ++cb) {
      const int64_t c0 = cb * L, nc = imin(L, p.C - c0);
      const Mask cm = Vec::mask(static_cast<int>(nc));
      V s = Vec::zero();
      for (int64_t n = 0; n < p.N; ++n)
        for (int64_t oh = 0; oh < p.OH; ++oh)
          for (int64_t q = 0; q < p.OW; ++q)
            s = Vec::add(s, Vec::load(go + n * p.out_sn + oh * p.out_sh + q * p.out_sw + c0, cm));
      alignas(64) float sv[L];
      Vec::store(sv, s);
      for (int64_t l = 0; l < nc; ++l) store_scalar(gb + c0 + l, sv[l]);
    }
  });
}

// channels_last forward / grad input: tasks of (image, group of channel blocks).
template <class T>
bool small_cl(const DwParams& p, bool gi, const T* src, const T* w, const T* b, T* dst) {
  const int64_t C = p.C, CB = cdiv(C, L);
  Buf wzb(small_wz_floats(p) * 4), bb(CB * L * 4);
  const SmallGeom s = small_prepare(p, gi, w, wzb.as<float>());
  float* bias = nullptr;
  if (b) {
    bias = bb.as<float>();
    for (int64_t i = 0; i < CB * L; ++i) bias[i] = i < C ? to_f32(b[i]) : 0.f;
  }
  const int64_t s_sn = gi ? p.out_sn : p.in_sn, s_sh = gi ? p.out_sh : p.in_sh, s_sw = gi ? p.out_sw : p.in_sw;
  const int64_t d_sn = gi ? p.in_sn : p.out_sn, d_sh = gi ? p.in_sh : p.out_sh, d_sw = gi ? p.in_sw : p.out_sw;
  constexpr int64_t G = 4;  // channel blocks per task
  const int64_t ng = cdiv(CB, G);
  at::parallel_for(0, p.N * ng, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / ng, cb0 = (t % ng) * G, c0 = cb0 * L, nc = imin(G * L, C - c0);
      small_image<T>(s, src + n * s_sn + c0, s_sh, s_sw, wzb.as<float>() + cb0 * p.KH * s.TWF * L,
                     bias ? bias + c0 : nullptr, dst + n * d_sn + c0, d_sh, d_sw, nc);
    }
  });
  return true;
}

// ---------------------------------------------------------------------------------------------
// NCHW forward on narrow planes: through the pixels engine. A plane row of 7 or 14 outputs fills
// a fraction of one vector in the planes kernels, and each (image, channel) task is a few dozen
// FMAs next to its setup; oneDNN reorders the whole tensor to a channel-blocked layout instead.
// Here a task is (image, chunk of channels): the chunk's planes are transposed into a
// pixel-major buffer that stays in L2, computed there by the pixels engine (channel vectors, all
// lanes busy), and transposed back into the output planes.

constexpr int64_t kNchwPixBytes = 128 << 10;  // input + output buffer of one task

// float32 only: the transposes convert bfloat16 element by element, which costs more than the
// route saves (14x14 bf16 layers 2-3.5x slower than the planes kernels).
// Output widths up to this take the pixels route (DSCONV_NCHW_PIX_MAXW overrides, for tuning).
inline int64_t nchw_pix_max_width() {
  static const int64_t w = [] {
    const char* e = std::getenv("DSCONV_NCHW_PIX_MAXW");
    return e && *e ? static_cast<int64_t>(std::atoll(e)) : static_cast<int64_t>(L);
  }();
  return w;
}

// Forward: stride-2 layers take the pixels route only up to half that output width (the input
// row then fits one vector): since the planes kernels plan their stride-2 row deinterleave once
// per problem, 28 -> 14 rows run faster there (32x256x28x28 k3 s2 1.29 -> 0.97 ms, 32x240x28x28
// k5 s2 1.34 -> 1.15 ms); 14 -> 7 rows measured the same either way.
inline bool nchw_pix_fwd_width(int64_t OW, int64_t sw) {
  return OW <= nchw_pix_max_width() && (sw == 1 || 2 * OW <= nchw_pix_max_width());
}

// Grad weight gains on fewer widths (measured, 32-image batches): 7-wide rows 2-3x, 14-wide rows
// of stride-2 layers 1.1-3x, 14-wide stride-1 rows 5-15% slower (the pixels kernels' per-row
// partial sums cost more than they save there).
inline bool nchw_pix_gw_width(int64_t OW, int64_t sw) {
  return OW <= nchw_pix_max_width() && (sw >= 2 || 2 * OW <= nchw_pix_max_width());
}

// Channels per task: a multiple of L whose source and result buffers fit kNchwPixBytes.
inline int64_t nchw_pix_chunk(int64_t C, int64_t src_pixels, int64_t dst_pixels) {
  return imin(rup(C, L), imax(L, kNchwPixBytes / ((src_pixels + dst_pixels) * 4) / L * L));
}

// x[(h * W + w) * cc + c] = float(src[c * sc + h * sh + w * sw]) for c < nc (a chunk's planes ->
// pixel-major buffer).
template <class T>
void load_chunk(const T* src, int64_t sc, int64_t sh, int64_t sw, int64_t H, int64_t W, int64_t nc, float* x,
                int64_t cc) {
  if (sw == 1 && sh == W) {
    transpose<T, float, true>(src, sc, nc, H * W, x, cc);
    return;
  }
  for (int64_t h = 0; h < H; ++h)
    if (sw == 1)
      transpose(src + h * sh, sc, nc, W, x + h * W * cc, cc);
    else
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t w = 0; w < W; ++w) x[(h * W + w) * cc + c] = to_f32(src[c * sc + h * sh + w * sw]);
}

// dst[c * sc + h * sh + w] = y[(h * W + w) * cc + c] for c < nc (pixel-major buffer -> planes with
// unit-stride rows).
template <class T>
void store_chunk(const float* y, int64_t cc, int64_t H, int64_t W, int64_t nc, T* dst, int64_t sc, int64_t sh) {
  if (sh == W) {
    transpose(y, cc, H * W, nc, dst, sc);
    return;
  }
  for (int64_t h = 0; h < H; ++h) transpose(y + h * W * cc, cc, W, nc, dst + h * sh, sc);
}

// The pixels-engine geometry of a chunk of nc channels in a buffer of cc-channel pixels.
inline PixGeom chunk_geom(const DwParams& p, int64_t sw, int64_t nc, int64_t cc) {
  PixGeom g;
  g.KH = p.KH;
  g.KW = p.KW;
  g.sw = sw;
  g.dw = p.dil_w;
  g.taps = p.taps();
  g.osw = cc;
  g.nt = false;
  g.C = nc;
  g.CB = cdiv(nc, L);
  g.ctail = static_cast<int>(nc - (g.CB - 1) * L);
  return g;
}

// One at::parallel_for item per (image, chunk of cc channels): the chunk's source planes
// (SH x SW) are transposed into the pixel-major buffer x, compute(x, y, c0, nc) fills y (DH x DW
// pixels of cc channels), and y is transposed into the destination planes (unit-stride rows).
template <class T, class Compute>
void nchw_chunk_tasks(int64_t N, int64_t C, int64_t cc, const T* src, int64_t s_sn, int64_t s_sc, int64_t s_sh,
                      int64_t s_sw, int64_t SH, int64_t SW, T* dst, int64_t d_sn, int64_t d_sc, int64_t d_sh,
                      int64_t DH, int64_t DW, const Compute& compute) {
  const int64_t nchunks = cdiv(C, cc);
  // Large float outputs with whole contiguous planes: a chunk's planes are one contiguous range of
  // the output, so the result is transposed into a cache-resident buffer in plane order and
  // streamed out with non-temporal stores (no read-for-ownership of output lines the 8x8
  // transposes wrote 32 bytes at a time). Together with the prefetch below: cold 32x672x14x14 5x5
  // forward 2.06 -> 1.87 ms (3 alternating pairs, 2 threads, 2026-11-26).
  const bool nt = std::is_same<T, float>::value && d_sh == DW && d_sc == DH * DW &&
                  N * C * DH * DW * static_cast<int64_t>(sizeof(T)) >= stream_bytes_threshold();
  at::parallel_for(0, N * nchunks, 1, [&](int64_t begin, int64_t end) {
    Buf xb(SH * SW * cc * 4), yb(DH * DW * cc * 4), zb(nt ? DH * DW * cc * 4 : 64);
    float* x = xb.as<float>();
    float* y = yb.as<float>();
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / nchunks, c0 = (t % nchunks) * cc, nc = imin(cc, C - c0);
      load_chunk(src + n * s_sn + c0 * s_sc, s_sc, s_sh, s_sw, SH, SW, nc, x, cc);
      // The next chunk's planes (one contiguous range) fetched while this one computes: otherwise
      // no load is in flight between two load_chunk phases.
      if (t + 1 < end && s_sh == SW && s_sc == SH * SW) {
        const int64_t n1 = (t + 1) / nchunks, c1 = ((t + 1) % nchunks) * cc, nc1 = imin(cc, C - c1);
        prefetch_bytes(src + n1 * s_sn + c1 * s_sc, nc1 * SH * SW * static_cast<int64_t>(sizeof(T)));
      }
      compute(x, y, c0, nc);
      if constexpr (std::is_same<T, float>::value) {
        if (nt) {
          transpose(y, cc, DH * DW, nc, zb.as<float>(), DH * DW);
          stream_copy(dst + n * d_sn + c0 * d_sc, zb.as<float>(), nc * DH * DW);
          continue;
        }
      }
      store_chunk(y, cc, DH, DW, nc, dst + n * d_sn + c0 * d_sc, d_sc, d_sh);
    }
    if (nt) _mm_sfence();
  });
}

template <class T>
bool fwd_nchw_pixels(const DwParams& p, const T* in, const T* w, const T* b, T* out) {
  const int64_t C = p.C, taps = p.taps();
  const int64_t cc = nchw_pix_chunk(C, p.H * p.W, p.OH * p.OW), CBall = cdiv(C, L);
  const int kind = pix_kind(p.KW, p.stride_w, p.dil_w);
  Buf wpk(CBall * taps * L * 4), bb(CBall * L * 4), zb((cc + 2 * L) * 4);
  pack_weights_cl(w, C, taps, false, wpk.as<float>(), false);  // engine on float chunks
  float* bias = nullptr;
  if (b) {
    bias = bb.as<float>();
    for (int64_t i = 0; i < CBall * L; ++i) bias[i] = i < C ? to_f32(b[i]) : 0.f;
  }
  std::memset(zb.p, 0, (cc + 2 * L) * 4);
  const AxisMap rows{p.pad_t, 1, p.H}, cols{p.pad_l, 1, p.W};
  const bool small = small_ok(p, false);
  Buf wzb(small ? small_wz_floats(p) * 4 : 64);
  const SmallGeom sg = small ? small_prepare(p, false, w, wzb.as<float>()) : SmallGeom{};
  nchw_chunk_tasks(p.N, C, cc, in, p.in_sn, p.in_sc, p.in_sh, p.in_sw, p.H, p.W, out, p.out_sn, p.out_sc, p.out_sh,
                   p.OH, p.OW, [&](float* x, float* y, int64_t c0, int64_t nc) {
                     const float* bc = bias ? bias + c0 : nullptr;
                     if (small)
                       small_image<float>(sg, x, p.W * cc, cc, wzb.as<float>() + (c0 / L) * p.KH * sg.TWF * L, bc, y,
                                          p.OW * cc, cc, nc);
                     else  // one image, serially (a nested at::parallel_for runs inline)
                       pix_engine<float>(chunk_geom(p, p.stride_w, nc, cc), kind, 1, p.OH, p.OW, p.stride_h, p.dil_h,
                                         rows, cols, x, 0, p.W * cc, cc, p.W * cc, wpk.as<float>() + (c0 / L) * taps * L,
                                         bc, y, 0, p.OW * cc, zb.as<float>());
                   });
  return true;
}

// Grad input (NCHW, M == 1): grad_output chunks through the pixels engine's grad-input mapping.
template <class T>
bool gi_nchw_pixels(const DwParams& p, const T* gout, const T* w, T* gin) {
  const int64_t C = p.C, taps = p.taps();
  const int64_t cc = nchw_pix_chunk(C, p.OH * p.OW, p.H * p.W), CBall = cdiv(C, L);
  const int kind = pix_kind(p.KW, 1, p.dil_w);
  Buf wpk(CBall * taps * L * 4), zb((cc + 2 * L) * 4);
  pack_weights_cl(w, C, taps, true, wpk.as<float>(), false);  // engine on float chunks
  std::memset(zb.p, 0, (cc + 2 * L) * 4);
  const AxisMap rows{(p.KH - 1) * p.dil_h - p.pad_t, p.stride_h, p.OH};
  const AxisMap cols{(p.KW - 1) * p.dil_w - p.pad_l, p.stride_w, p.OW};
  const bool small = small_ok(p, true);
  Buf wzb(small ? small_wz_floats(p) * 4 : 64);
  const SmallGeom sg = small ? small_prepare(p, true, w, wzb.as<float>()) : SmallGeom{};
  nchw_chunk_tasks(p.N, C, cc, gout, p.out_sn, p.out_sc, p.out_sh, p.out_sw, p.OH, p.OW, gin, p.in_sn, p.in_sc,
                   p.in_sh, p.H, p.W, [&](float* x, float* y, int64_t c0, int64_t nc) {
                     if (small)
                       small_image<float>(sg, x, p.OW * cc, cc, wzb.as<float>() + (c0 / L) * p.KH * sg.TWF * L,
                                          nullptr, y, p.W * cc, cc, nc);
                     else
                       pix_engine<float>(chunk_geom(p, 1, nc, cc), kind, 1, p.H, p.W, 1, p.dil_h, rows, cols, x, 0,
                                         p.OW * cc, cc, p.OW * cc, wpk.as<float>() + (c0 / L) * taps * L, nullptr, y, 0,
                                         p.W * cc, zb.as<float>());
                   });
  return true;
}

// Grad weight + bias (NCHW, M == 1, float): per (image, chunk) the pixels kernels' sums over the
// chunk's transposed input and grad_output, then the images' partial sums added in image order
// (a fixed order: the same bits for any thread count).
template <class T>
bool gw_nchw_pixels(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  const int64_t C = p.C, taps = p.taps();
  const int64_t cc = nchw_pix_chunk(C, p.H * p.W, p.OH * p.OW), nchunks = cdiv(C, cc);
  Buf partw(p.N * C * taps * 4 + 64), partb(p.N * C * 4 + 64);
  float* pw = partw.as<float>();
  float* pb = partb.as<float>();
  at::parallel_for(0, p.N * nchunks, 1, [&](int64_t begin, int64_t end) {
    Buf xb(p.H * p.W * cc * 4), yb(p.OH * p.OW * cc * 4);
    float* x = xb.as<float>();
    float* y = yb.as<float>();
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t / nchunks, c0 = (t % nchunks) * cc, nc = imin(cc, C - c0);
      load_chunk(in + n * p.in_sn + c0 * p.in_sc, p.in_sc, p.in_sh, p.in_sw, p.H, p.W, nc, x, cc);
      load_chunk(gout + n * p.out_sn + c0 * p.out_sc, p.out_sc, p.out_sh, p.out_sw, p.OH, p.OW, nc, y, cc);
      DwParams q = p;
      q.N = 1;
      q.C = nc;
      q.in_sn = q.out_sn = 0;
      q.in_sc = q.out_sc = 1;
      q.in_sh = p.W * cc;
      q.in_sw = cc;
      q.out_sh = p.OW * cc;
      q.out_sw = cc;
      if (small_gw_ok(q))
        small_gw<float>(q, y, x, pw + (n * C + c0) * taps, gb ? pb + n * C + c0 : nullptr);
      else
        gw_pixels<float>(q, y, x, pw + (n * C + c0) * taps, gb ? pb + n * C + c0 : nullptr, /*max_groups=*/1);
    }
  });
  at::parallel_for(0, C, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      if (gw)
        for (int64_t t = 0; t < taps; ++t) {
          float s = 0.f;
          for (int64_t n = 0; n < p.N; ++n) s += pw[(n * C + c) * taps + t];
          store_scalar(gw + c * taps + t, s);
        }
      if (gb) {
        float s = 0.f;
        for (int64_t n = 0; n < p.N; ++n) s += pb[n * C + c];
        store_scalar(gb + c, s);
      }
    }
  });
  return true;
}

// Grad input through the pixels engine: grad_output correlated with the flipped weights at
// virtual column stride 1, written to gin (channels_last).
template <class T>
PixGeom gi_pix_geom(const DwParams& p, const T* gin) {
  return pix_geom(p.KH, p.KW, 1, p.dil_w, p.C, p.in_sw, gin, p.N * p.C * p.H * p.W * static_cast<int64_t>(sizeof(T)));
}

// wf[oc][t] = w[oc][taps - 1 - t] in float: the kernels correlating grad_output for grad input
template <class T>
void flip_weights(const T* w, int64_t OC, int64_t taps, float* wf) {
  for (int64_t oc = 0; oc < OC; ++oc)
    for (int64_t t = 0; t < taps; ++t) wf[oc * taps + t] = to_f32(w[oc * taps + taps - 1 - t]);
}

// NCHW routes (backward_input_t, backward_weight_bias_t, the one-pass backward): whether grad
// input / grad weight of this problem go through the pixels kernels on transposed channel
// chunks (narrow planes) rather than the planes kernels.
template <class T>
inline bool gi_nchw_takes_pixels(const DwParams& p) {
  // 3x3 stride 1 on 14-wide rows: the direct tiles of bwd_input_planes, as in the forward (cold
  // 32x512x14x14 0.60-0.65 ms against 0.80-0.96 through the pixels route, 32x480x14x14 0.68-0.71
  // against 0.89-0.94).
  const bool direct14 = sizeof(T) == 4 && L == 16 && p.W > L / 2 && p.KH == 3 && p.KW == 3 && p.stride_h == 1 &&
                        p.stride_w == 1 && p.dil_h == 1 && p.dil_w == 1 && p.out_sw == 1 && nchw_direct_enabled() &&
                        direct_geom_ok(p.KW - 1 - p.pad_l, p.OW, 1, 3);
  return p.M == 1 && p.C > 1 && p.W <= nchw_pix_max_width() && !cl_use_planes(p.taps(), p.H, p.W) && !direct14;
}
template <class T>
inline bool gw_nchw_takes_pixels(const DwParams& p) {
  // (per-image partial sums: N * C * taps floats, bounded here)
  return p.M == 1 && p.C > 1 && nchw_pix_gw_width(p.OW, p.stride_w) && p.N * p.C * p.taps() <= (16ll << 20) &&
         !cl_use_planes(p.taps(), p.OH, p.OW, kClPlanesMinPixelsGw);
}

#include "dw_simd_bwd_one_pass.h"

#if defined(DSCONV_VEC512)
#include "dw_simd_flat.h"
#else
inline bool flat_ok(const DwParams&, bool) { return false; }
template <class T>
bool flat_planes(const DwParams&, bool, const T*, const float*, const float*, T*) { return false; }
inline bool flat_gw_ok(const DwParams&) { return false; }
template <class T>
bool flat_gw(const DwParams&, const T*, const T*, T*, T*) { return false; }
#endif

#if defined(DSCONV_VEC512)
#include "dw_simd_packed.h"
#else
template <class T>
inline bool packed_fwd_ok(const DwParams&) { return false; }
template <class T>
bool packed_fwd(const DwParams&, const T*, const float*, const float*, T*) { return false; }
#endif

// ---------------------------------------------------------------------------------------------
// Entry points

// The forward's weights (OC x taps) and bias (OC, or none) as float, for the kernels that take
// float32 weights whatever the tensors' dtype.
struct WeightsF32 {
  Buf wb, bb;
  bool has_b;
  template <class T>
  WeightsF32(const T* w, const T* b, int64_t OC, int64_t taps) : wb(OC * taps * 4), bb(OC * 4), has_b(b != nullptr) {
    for (int64_t i = 0; i < OC * taps; ++i) wb.as<float>()[i] = to_f32(w[i]);
    if (b)
      for (int64_t i = 0; i < OC; ++i) bb.as<float>()[i] = to_f32(b[i]);
  }
  const float* w() const { return wb.as<float>(); }
  const float* b() const { return has_b ? bb.as<float>() : nullptr; }
};

template <class T>
bool forward_t(const DwParams& p, const T* in, const T* w, const T* b, T* out) {
  const int64_t OC = p.OC(), taps = p.taps();
  const bool pixel_order = p.out_sc == 1 && OC > 1;
  if (pixel_order) {
    if (p.in_sc != 1 || p.M != 1) return false;
    if (small_ok(p, false)) return small_cl<T>(p, false, in, w, b, out);
    if (cl_use_planes(taps, p.OH, p.OW)) {
      const WeightsF32 wf(w, b, OC, taps);
      return cl_planes<T, false>(p, in, wf.w(), wf.b(), out);
    }
    const PixGeom g = pix_geom(p.KH, p.KW, p.stride_w, p.dil_w, OC, p.out_sw, out,
                               p.N * OC * p.OH * p.OW * static_cast<int64_t>(sizeof(T)));
    const int kind = pix_kind(p.KW, p.stride_w, p.dil_w);
    Buf wpk(g.CB * taps * L * 4), bb(g.CB * L * 4), zb((OC + 2 * L) * sizeof(T));
    pack_weights_cl(w, OC, taps, false, wpk.as<float>(), pix_eo<T>());
    float* bias = nullptr;
    if (b) {
      bias = bb.as<float>();
      pack_bias_cl(b, OC, bias, pix_eo<T>());
    }
    std::memset(zb.p, 0, (OC + 2 * L) * sizeof(T));
    const AxisMap rows{p.pad_t, 1, p.H}, cols{p.pad_l, 1, p.W};
    pix_engine<T>(g, kind, p.N, p.OH, p.OW, p.stride_h, p.dil_h, rows, cols, in, p.in_sn, p.in_sh, p.in_sw,
                  p.in_sw == OC ? p.W * OC : 0, wpk.as<float>(), bias, out, p.out_sn, p.out_sh, zb.as<T>());
    return true;
  }
  if (p.out_sw != 1) return false;
  if (packed_fwd_ok<T>(p)) {  // stride 2 on narrow planes (AVX-512): 14x14 -> 7x7, 28x28 -> 14x14
    const WeightsF32 wf(w, b, OC, taps);
    return packed_fwd<T>(p, in, wf.w(), wf.b(), out);
  }
  if (flat_ok(p, false)) {  // 7x7 / 14x14 maps, "same" 3x3 / 5x5 / 7x7 at stride 1 (AVX-512)
    const WeightsF32 wf(w, b, OC, taps);
    return flat_planes<T>(p, false, in, wf.w(), wf.b(), out);
  }
  // Tried 2026-11-26 for 5x5 / 7x7 "same" stride 1 on planes 14-64 wide: each plane as one flat
  // vector stream (output pixel q reads q + (kh - pad_t) * W + kw - pad_l, column wrap masked per
  // tap, planes copied between zero rows, same-phase vectors sharing masks): every lane used, but
  // every tap is an unaligned load that splits a cache line 15 times in 16, and those ran at about
  // one per 2 cycles: 32x672x14x14 k5 2.06 -> 2.95 ms, 32x240x28x28 k5 1.62 -> 2.33, 32x192x28x28
  // k7 1.99 -> 3.02, 32x96x56x56 k7 3.24 -> 6.18 (cold, 2 threads). Doing it with aligned loads
  // and lane shifts needs the shift per (kh, kw) at compile time, i.e. kernels per plane width.
  // 3x3 stride 1 on rows of more than half a vector (14x14 maps) stays on the direct planes tiles:
  // cold 32x512x14x14 0.72-0.76 ms there against 0.85-0.90 through the pixels route, 32x480x14x14
  // 0.64-0.75 against 0.76-0.81 (7x7 maps: the pixels route is 2x faster).
  // (the direct tiles are float32 only; bfloat16 takes the pixels route on 14-wide rows as well,
  // and at stride 2 on outputs as wide as at stride 1: its planes path has no in-place stride-2
  // tiles either; 32x192x28x28 3x3 stride 2, 2 threads: 0.91 ms on planes, 0.59-0.77 here)
  const bool direct14 = sizeof(T) == 4 && L == 16 && p.OW > L / 2 && direct_fwd_ok(p, 1);
  const int64_t width_sw = sizeof(T) == 4 ? p.stride_w : 1;
  if (p.M == 1 && OC > 1 && nchw_pix_fwd_width(p.OW, width_sw) && !cl_use_planes(taps, p.OH, p.OW) && !direct14)
    return fwd_nchw_pixels<T>(p, in, w, b, out);
  const WeightsF32 wf(w, b, OC, taps);
  return fwd_planes<T>(p, in, wf.w(), wf.b(), out);
}

template <class T>
bool backward_input_t(const DwParams& p, const T* gout, const T* w, T* gin) {
  const int64_t OC = p.OC(), taps = p.taps();
  const bool pixel_order = p.in_sc == 1 && p.C > 1;
  if (pixel_order) {
    if (p.out_sc != 1 || p.M != 1) return false;
    if (small_ok(p, true)) return small_cl<T>(p, true, gout, w, nullptr, gin);
    if (cl_use_planes(taps, p.H, p.W)) {
      Buf wf(OC * taps * 4);
      flip_weights(w, OC, taps, wf.as<float>());
      return cl_planes<T, true>(p, gout, wf.as<float>(), nullptr, gin);
    }
    const PixGeom g = gi_pix_geom<T>(p, gin);
    const int kind = pix_kind(p.KW, 1, p.dil_w);
    Buf wpk(g.CB * taps * L * 4), zb((OC + 2 * L) * sizeof(T));
    pack_weights_cl(w, OC, taps, true, wpk.as<float>(), pix_eo<T>());
    std::memset(zb.p, 0, (OC + 2 * L) * sizeof(T));
    const AxisMap rows{(p.KH - 1) * p.dil_h - p.pad_t, p.stride_h, p.OH};
    const AxisMap cols{(p.KW - 1) * p.dil_w - p.pad_l, p.stride_w, p.OW};
    pix_engine<T>(g, kind, p.N, p.H, p.W, 1, p.dil_h, rows, cols, gout, p.out_sn, p.out_sh, p.out_sw,
                  p.out_sw == OC ? p.OW * OC : 0, wpk.as<float>(), nullptr, gin, p.in_sn, p.in_sh, zb.as<T>());
    return true;
  }
  if (p.in_sw != 1) return false;
  if (flat_ok(p, true)) {
    Buf wf(OC * taps * 4);
    flip_weights(w, OC, taps, wf.as<float>());
    return flat_planes<T>(p, true, gout, wf.as<float>(), nullptr, gin);
  }
  if (gi_nchw_takes_pixels<T>(p)) return gi_nchw_pixels<T>(p, gout, w, gin);
  Buf wf(OC * taps * 4);
  flip_weights(w, OC, taps, wf.as<float>());
  return bwd_input_planes<T>(p, gout, wf.as<float>(), gin);
}

template <class T>
bool backward_weight_bias_t(const DwParams& p, const T* gout, const T* in, T* gw, T* gb) {
  const bool pixel_order = p.out_sc == 1 && p.OC() > 1;
  if (pixel_order) {
    if (p.in_sc != 1 || p.M != 1) return false;
    if (small_gw_ok(p)) {
      small_gw<T>(p, gout, in, gw, gb);
      return true;
    }
    if (cl_use_planes(p.taps(), p.OH, p.OW, kClPlanesMinPixelsGw)) return gw_cl_planes<T>(p, gout, in, gw, gb);
    return gw_pixels<T>(p, gout, in, gw, gb);
  }
  if (p.out_sw != 1) return false;
  if (flat_gw_ok(p)) return flat_gw<T>(p, gout, in, gw, gb);  // 7x7 / 14x14 maps, "same" 3x3 / 5x5
  if (gw_nchw_takes_pixels<T>(p)) return gw_nchw_pixels<T>(p, gout, in, gw, gb);
  // large kernels: the pixel-vector tiles on transposed rows (31x31 1.37x, 13x13 on 14x14 1.21x,
  // 9x9 / 11x11 on 21-28 wide maps 1.04-1.11x against gw_planes; in-process A/B, Intel Xeon VM)
  if (cl_use_planes(p.taps(), p.OH, p.OW, kClPlanesMinPixelsGw) && gw_cls_ok(p))
    return gw_cl_pixels_shared<T>(p, gout, in, gw, gb);
  return gw_planes<T>(p, gout, in, gw, gb);
}

template <class T>
bool backward_all_t(const DwParams& pi, const DwParams& pw, const T* gout, const T* in, const T* w, T* gin, T* gw,
                    T* gb) {
  if (!gin || (!gw && !gb)) return false;
  if (bwd_cl_fused_ok(pi, pw)) return bwd_cl_fused<T>(pi, pw, gout, in, w, gin, gw, gb);
  if (bwd_nchw_one_pass_ok<T>(pi, pw)) return bwd_nchw_one_pass<T>(pi, pw, gout, in, w, gin, gw, gb);
  return false;
}

}  // namespace

bool forward(const DwParams& p, Dt dt, const void* in, const void* w, const void* b, void* out) {
  if (dt == Dt::f32)
    return forward_t<float>(p, static_cast<const float*>(in), static_cast<const float*>(w),
                            static_cast<const float*>(b), static_cast<float*>(out));
  return forward_t<bf16_t>(p, static_cast<const bf16_t*>(in), static_cast<const bf16_t*>(w),
                           static_cast<const bf16_t*>(b), static_cast<bf16_t*>(out));
}

bool backward_input(const DwParams& p, Dt dt, const void* gout, const void* w, void* gin) {
  if (dt == Dt::f32)
    return backward_input_t<float>(p, static_cast<const float*>(gout), static_cast<const float*>(w),
                                   static_cast<float*>(gin));
  return backward_input_t<bf16_t>(p, static_cast<const bf16_t*>(gout), static_cast<const bf16_t*>(w),
                                  static_cast<bf16_t*>(gin));
}

bool backward_weight_bias(const DwParams& p, Dt dt, const void* gout, const void* in, void* gw, void* gb) {
  if (dt == Dt::f32)
    return backward_weight_bias_t<float>(p, static_cast<const float*>(gout), static_cast<const float*>(in),
                                         static_cast<float*>(gw), static_cast<float*>(gb));
  return backward_weight_bias_t<bf16_t>(p, static_cast<const bf16_t*>(gout), static_cast<const bf16_t*>(in),
                                        static_cast<bf16_t*>(gw), static_cast<bf16_t*>(gb));
}

bool backward_all(const DwParams& pi, const DwParams& pw, Dt dt, const void* gout, const void* in, const void* w,
                  void* gin, void* gw, void* gb) {
  if (dt == Dt::f32)
    return backward_all_t<float>(pi, pw, static_cast<const float*>(gout), static_cast<const float*>(in),
                                 static_cast<const float*>(w), static_cast<float*>(gin), static_cast<float*>(gw),
                                 static_cast<float*>(gb));
  return backward_all_t<bf16_t>(pi, pw, static_cast<const bf16_t*>(gout), static_cast<const bf16_t*>(in),
                                static_cast<const bf16_t*>(w), static_cast<bf16_t*>(gin), static_cast<bf16_t*>(gw),
                                static_cast<bf16_t*>(gb));
}

}  // namespace DSCONV_SIMD_NS
}  // namespace simd
}  // namespace cpu
}  // namespace dsconv
