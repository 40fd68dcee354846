// Grad input and grad weight (+ bias) in one pass over grad_output: channels_last (bwd_cl_fused)
// and NCHW planes (bwd_nchw_one_pass). Part of dw_simd_impl.h (included inside its ISA namespace, before the entry points); uses the
// pixels engine (pix_band) for grad input and gw_pix_row for grad weight.
//
// Why: run separately, the two gradients each stream grad_output from memory, and a core of
// this VM reads only ~17-19 GB/s, so grad weight (input + grad_output) ran at half its in-cache
// speed (32x144x56x56 3x3: grad input 1.55 ms, grad weight 3.3-4.2 ms, 2 threads). Here each
// grad_output row is read from memory once: the weight-gradient rows of gw_pixels' groups run
// in their usual order, and right after grad_output row o the grad-input rows whose last
// needed grad_output row is o are computed while the rows they read are still in L1/L2.
//
// Same results as the separate passes, bit for bit: grad weight keeps gw_pixels' groups, rows
// and per-row order, and every grad-input pixel is one pix_band tile sum as in pix_engine.
#pragma once

// Whether backward_all takes this pass: pixel-order tensors (grad input written pixel-major too)
// on the pixels engine's paths for both gradients (not the narrow-image or planes routes).
inline bool bwd_cl_fused_ok(const DwParams& pi, const DwParams& pw) {
  const int64_t taps = pw.taps();
  return pw.M == 1 && pw.C > 1 && pw.in_sc == 1 && pw.out_sc == 1 && pi.in_sc == 1 && pi.out_sc == 1 &&
         !small_ok(pi, true) && !small_gw_ok(pw) && !cl_use_planes(taps, pi.H, pi.W) &&
         !cl_use_planes(taps, pw.OH, pw.OW, kClPlanesMinPixelsGw);
}

// Grad input rows owned by grad_output row o: [gi_row_start(o), gi_row_start(o + 1)). Input row
// i reads grad_output rows up to floor((i + pad_t) / stride_h), so it is owned by that row (the
// last one for the rows below the output's reach).
inline int64_t gi_row_start(const DwParams& p, int64_t o) {
  if (o <= 0) return 0;
  if (o >= p.OH) return p.H;
  return imin(p.H, imax(0, o * p.stride_h - p.pad_t));
}

// pi: strides of grad input (in_*) and grad_output (out_*); pw: of input and grad_output.
template <class T>
bool bwd_cl_fused(const DwParams& pi, const DwParams& pw, const T* gout, const T* in, const T* w, T* gin, T* gw,
                  T* gb) {
  const GwPixPlan q = gw_pix_plan<T>(pw, 64);
  const int64_t C = pi.C, taps = pi.taps();
  // grad input: the forward engine on grad_output with the flipped weights (as backward_input_t)
  PixGeom g = gi_pix_geom<T>(pi, gin);
  g.ncols = (pi.W - 1) + (pi.KW - 1) * pi.dil_w + 1;
  const int kind = pix_kind(pi.KW, 1, pi.dil_w);
  const AxisMap rows{(pi.KH - 1) * pi.dil_h - pi.pad_t, pi.stride_h, pi.OH};
  const AxisMap cols{(pi.KW - 1) * pi.dil_w - pi.pad_l, pi.stride_w, pi.OW};
  Buf wpk(g.CB * taps * L * 4), colb(g.ncols * 8 + 64);
  pack_weights_cl(w, C, taps, true, wpk.as<float>(), pix_eo<T>());
  int64_t* coloff = colb.as<int64_t>();
  for (int64_t j = 0; j < g.ncols; ++j) {
    const int64_t ci = cols(j);
    coloff[j] = ci >= 0 ? ci * pi.out_sw : -1;
  }
  const ZeroPixel<T> zero(C);
  // most grad-input rows one grad_output row owns (the last one takes the rows below the output)
  int64_t maxrows = 0;
  for (int64_t o = 0; o < pi.OH; ++o) maxrows = imax(maxrows, gi_row_start(pi, o + 1) - gi_row_start(pi, o));
  Buf part(q.G * q.per_group * 4 + 64);
  float* pt = part.as<float>();
  at::parallel_for(0, q.G, 1, [&](int64_t begin, int64_t end) {
    GwPixScratch<T> s(pw, q);
    Buf ptrb(imax(1, maxrows) * g.KH * g.ncols * 8 + 64), khb(imax(1, maxrows) * g.KH * 4 + 64),
        nkhb(imax(1, maxrows) * 4 + 64);
    const T** ptrs = ptrb.as<const T*>();
    int* khs = khb.as<int>();
    int* nkhs = nkhb.as<int>();
    for (int64_t grp = begin; grp < end; ++grp) {
      float* acc = pt + grp * q.per_group;
      for (int64_t i = 0; i < q.per_group; ++i) acc[i] = 0.f;
      const int64_t rend = imin(q.NR, (grp + 1) * q.GR);
      for (int64_t r0 = grp * q.GR; r0 < rend; r0 += q.rows) {
        const int64_t r1 = imin(rend, r0 + q.rows);
        gw_pix_rows<T>(pw, q, s, gout, in, zero.get(), r0, r1, acc, gb != nullptr);
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t n = r / pi.OH, o = r % pi.OH;
          const int64_t i0 = gi_row_start(pi, o), i1 = gi_row_start(pi, o + 1);
          if (i1 <= i0) continue;
          const T* sp = gout + n * pi.out_sn;
          for (int64_t i = i0; i < i1; ++i)
            nkhs[i - i0] = pix_row_table(g, rows, i, pi.dil_h, sp, pi.out_sh, coloff, zero.get(),
                                         ptrs + (i - i0) * g.KH * g.ncols, khs + (i - i0) * g.KH);
          auto rows_tab = [&](int64_t k, const T* const** ptab, const int** kp, int* nk, T** orow) {
            *ptab = ptrs + k * g.KH * g.ncols;
            *kp = khs + k * g.KH;
            *nk = nkhs[k];
            *orow = gin + n * pi.in_sn + (i0 + k) * pi.in_sh;
          };
          // no prefetch: the grad_output rows these read were just read by the weight rows. Tried
          // 2026-11-26: prefetching grad_output / input rows 2-3 rows ahead from these tiles, so
          // that loads stay in flight while grad input computes: within this VM's noise (+-10%)
          // over 3-5 alternating runs on 144x56x56, 128x56x56, 96x56x56 k7 and 240x28x28 k5.
          pix_band_dispatch<T>(kind, g, i1 - i0, pi.W, wpk.as<float>(), nullptr, rows_tab,
                               [](int64_t, int64_t, int64_t) {});
        }
      }
    }
    if (g.nt) _mm_sfence();
  });
  gw_pix_reduce<T>(q, pt, gw, gb);
  return true;
}

// ---------------------------------------------------------------------------------------------
// NCHW planes: where both gradients take the planes kernels (bwd_input_planes, gw_planes), the
// weight-gradient tasks (channel, batch chunk) drive: after each image's weight-gradient bands
// for channel c, the grad-input bands of plane (n, c) run while that grad_output plane is still
// in L1/L2 (32x144x56x56 3x3: grad input 1.9 ms and grad weight 4.9 ms separately, 2 threads).
// Same bits as the two passes: each is the same code on the same planes, in the same order
// where order matters (the weight-gradient sums).
//
// Only for kernels of at most 9 taps on planes wider than 16, where it measured faster (A/B, 2
// threads, batch 32, ms two passes -> one pass: 256x28x28 3x3 2.58-2.73 -> 2.26-2.35, 128x56x56
// stride 2 4.03-4.07 -> 3.30-3.66, 32x112x112 5.93-6.00 -> 5.72-5.86). Slower elsewhere: 14x14
// 3x3 planes (512 channels 2.28-2.36 -> 2.44-2.60: the separate passes find grad_output in the
// L3), 28x28 5x5 / 7x7 (240 channels k5 4.21-4.44 -> 4.44-4.59, 192 channels k7 5.20-5.45 ->
// 5.68-5.83).

template <class T>
inline bool bwd_nchw_one_pass_ok(const DwParams& pi, const DwParams& pw) {
  const bool gi_planes = !(pi.in_sc == 1 && pi.C > 1) && pi.in_sw == 1 && !gi_nchw_takes_pixels<T>(pi);
  const bool gw_planes = !(pw.out_sc == 1 && pw.OC() > 1) && pw.out_sw == 1 && !gw_nchw_takes_pixels<T>(pw);
  return pw.M == 1 && pw.taps() <= 9 && pi.W > 16 && gi_planes && gw_planes;
}

template <class T>
bool bwd_nchw_one_pass(const DwParams& pi, const DwParams& pw, const T* gout, const T* in, const T* w, T* gin, T* gw,
                       T* gb) {
  const int64_t C = pi.C, taps = pi.taps();
  Buf wf(C * taps * 4);
  flip_weights(w, C, taps, wf.as<float>());
  return bwd_input_planes_run<T>(pi, gout, wf.as<float>(), gin, [&](auto& gi_thread, int64_t nbands) {
    gw_planes_run<T>(pw, gout, in, gw, gb, [&](auto& gw_thread, int64_t nchunk, int64_t nper) {
      at::parallel_for(0, C * nchunk, 1, [&](int64_t begin, int64_t end) {
        gi_thread([&](auto& gi_task) {
          gw_thread([&](auto& image, auto& begin_task, auto& end_task) {
            for (int64_t task = begin; task < end; ++task) {
              const int64_t c = task / nchunk, chunk = task % nchunk, n1 = imin(pi.N, (chunk + 1) * nper);
              begin_task();
              for (int64_t n = chunk * nper; n < n1; ++n) {
                image(c, n, n + 1 < n1);
                for (int64_t band = 0; band < nbands; ++band) gi_task((n * C + c) * nbands + band, -1);
              }
              end_task(task, c);
            }
          });
        });
      });
    });
  });
}
