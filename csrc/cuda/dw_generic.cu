// Generic kernels: one thread per written element (grid-stride loop), reading every tensor
// through its DwParams strides. Correct for every case (any kernel size, stride, dilation,
// padding, multiplier, layout, float64), with 32-bit index math when every tensor's offsets fit
// and 64-bit otherwise. The element order follows the written tensor's layout (channels fastest
// when channels are innermost) so that writes coalesce.
#include "dw_cuda_device.cuh"

namespace dsconv {
namespace cuda {
namespace {

template <typename T, typename I>
__global__ void __launch_bounds__(256) generic_forward_kernel(const DwParams p, const T* __restrict__ in,
                                                              const T* __restrict__ w,
                                                              const T* __restrict__ bias, T* __restrict__ out,
                                                              I total, int chan_inner) {
  using A = typename AccType<T>::type;
  const I OC = static_cast<I>(p.C * p.M), OH = static_cast<I>(p.OH), OW = static_cast<I>(p.OW);
  const I M = static_cast<I>(p.M), KH = static_cast<I>(p.KH), KW = static_cast<I>(p.KW);
  const I H = static_cast<I>(p.H), W = static_cast<I>(p.W);
  const I sh = static_cast<I>(p.stride_h), sw = static_cast<I>(p.stride_w);
  const I dh = static_cast<I>(p.dil_h), dw = static_cast<I>(p.dil_w);
  const I pt = static_cast<I>(p.pad_t), pl = static_cast<I>(p.pad_l);
  for (I idx = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<I>(gridDim.x) * blockDim.x) {
    I r = idx, n, oc, oh, ow;
    if (chan_inner) {
      oc = r % OC, r /= OC;
      ow = r % OW, r /= OW;
      oh = r % OH, n = r / OH;
    } else {
      ow = r % OW, r /= OW;
      oh = r % OH, r /= OH;
      oc = r % OC, n = r / OC;
    }
    const I c = oc / M;
    A acc = bias != nullptr ? static_cast<A>(ldf(bias + oc)) : A(0);
    const T* ip = in + n * static_cast<I>(p.in_sn) + c * static_cast<I>(p.in_sc);
    const T* wp = w + oc * KH * KW;
    for (I kh = 0; kh < KH; ++kh) {
      const I ih = oh * sh - pt + kh * dh;
      if (ih < 0 || ih >= H) continue;
      const T* irow = ip + ih * static_cast<I>(p.in_sh);
      for (I kw = 0; kw < KW; ++kw) {
        const I iw = ow * sw - pl + kw * dw;
        if (iw < 0 || iw >= W) continue;
        acc += static_cast<A>(ldf(wp + kh * KW + kw)) * static_cast<A>(ldf(irow + iw * static_cast<I>(p.in_sw)));
      }
    }
    stf(out + n * static_cast<I>(p.out_sn) + oc * static_cast<I>(p.out_sc) + oh * static_cast<I>(p.out_sh) +
            ow * static_cast<I>(p.out_sw),
        acc);
  }
}

// Gather form: grad_input[n, c, ih, iw] = sum over m, kh, kw with (ih + pad - kh*dil) divisible by
// the stride of w[c*M+m, kh, kw] * grad_output[n, c*M+m, oh, ow].
template <typename T, typename I>
__global__ void __launch_bounds__(256) generic_backward_input_kernel(const DwParams p, const T* __restrict__ go,
                                                                     const T* __restrict__ w,
                                                                     T* __restrict__ gi, I total, int chan_inner) {
  using A = typename AccType<T>::type;
  const I C = static_cast<I>(p.C), H = static_cast<I>(p.H), W = static_cast<I>(p.W);
  const I OH = static_cast<I>(p.OH), OW = static_cast<I>(p.OW);
  const I M = static_cast<I>(p.M), KH = static_cast<I>(p.KH), KW = static_cast<I>(p.KW);
  const I sh = static_cast<I>(p.stride_h), sw = static_cast<I>(p.stride_w);
  const I dh = static_cast<I>(p.dil_h), dw = static_cast<I>(p.dil_w);
  const I pt = static_cast<I>(p.pad_t), pl = static_cast<I>(p.pad_l);
  for (I idx = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<I>(gridDim.x) * blockDim.x) {
    I r = idx, n, c, ih, iw;
    if (chan_inner) {
      c = r % C, r /= C;
      iw = r % W, r /= W;
      ih = r % H, n = r / H;
    } else {
      iw = r % W, r /= W;
      ih = r % H, r /= H;
      c = r % C, n = r / C;
    }
    A acc = A(0);
    for (I m = 0; m < M; ++m) {
      const I oc = c * M + m;
      const T* gp = go + n * static_cast<I>(p.out_sn) + oc * static_cast<I>(p.out_sc);
      const T* wp = w + oc * KH * KW;
      for (I kh = 0; kh < KH; ++kh) {
        const I nh = ih + pt - kh * dh;
        if (nh < 0) break;  // decreases with kh
        if (nh % sh != 0) continue;
        const I oh = nh / sh;
        if (oh >= OH) continue;
        const T* grow = gp + oh * static_cast<I>(p.out_sh);
        for (I kw = 0; kw < KW; ++kw) {
          const I nw = iw + pl - kw * dw;
          if (nw < 0) break;
          if (nw % sw != 0) continue;
          const I ow = nw / sw;
          if (ow >= OW) continue;
          acc += static_cast<A>(ldf(wp + kh * KW + kw)) * static_cast<A>(ldf(grow + ow * static_cast<I>(p.out_sw)));
        }
      }
    }
    stf(gi + n * static_cast<I>(p.in_sn) + c * static_cast<I>(p.in_sc) + ih * static_cast<I>(p.in_sh) +
            iw * static_cast<I>(p.in_sw),
        acc);
  }
}

// 32-bit indices are safe when the element count and every tensor's largest offset fit, and the
// coordinate arithmetic (o*stride - pad + k*dil) stays well inside int.
bool fits_int32(const DwParams& p, int64_t total) {
  const int64_t lim = int64_t(1) << 30;
  if (total >= lim) return false;
  if (max_offset(p.N, p.C, p.H, p.W, p.in_sn, p.in_sc, p.in_sh, p.in_sw) >= lim) return false;
  if (max_offset(p.N, p.OC(), p.OH, p.OW, p.out_sn, p.out_sc, p.out_sh, p.out_sw) >= lim) return false;
  if (p.OC() * p.taps() >= lim) return false;
  if (p.OH * p.stride_h + p.KH * p.dil_h + p.pad_t >= lim) return false;
  if (p.OW * p.stride_w + p.KW * p.dil_w + p.pad_l >= lim) return false;
  if (p.H + p.pad_t + p.KH * p.dil_h >= lim || p.W + p.pad_l + p.KW * p.dil_w >= lim) return false;
  return true;
}

unsigned generic_grid(int64_t total) {
  const int64_t blocks = ceil_div(total, 256);
  return static_cast<unsigned>(std::min<int64_t>(blocks, int64_t(1) << 20));  // grid-stride covers the rest
}

}  // namespace

template <typename T>
cudaError_t launch_generic_forward(const DwParams& p, const T* in, const T* w, const T* bias, T* out,
                                   cudaStream_t stream) {
  const int64_t total = p.N * p.OC() * p.OH * p.OW;
  if (total == 0) return cudaSuccess;
  const int chan_inner = (p.out_sc == 1 && p.OC() > 1) ? 1 : 0;
  if (fits_int32(p, total))
    generic_forward_kernel<T, int32_t><<<generic_grid(total), 256, 0, stream>>>(p, in, w, bias, out,
                                                                               static_cast<int32_t>(total), chan_inner);
  else
    generic_forward_kernel<T, int64_t><<<generic_grid(total), 256, 0, stream>>>(p, in, w, bias, out, total, chan_inner);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_generic_backward_input(const DwParams& p, const T* go, const T* w, T* gi, cudaStream_t stream) {
  const int64_t total = p.N * p.C * p.H * p.W;
  if (total == 0) return cudaSuccess;
  const int chan_inner = (p.in_sc == 1 && p.C > 1) ? 1 : 0;
  if (fits_int32(p, total))
    generic_backward_input_kernel<T, int32_t><<<generic_grid(total), 256, 0, stream>>>(
        p, go, w, gi, static_cast<int32_t>(total), chan_inner);
  else
    generic_backward_input_kernel<T, int64_t><<<generic_grid(total), 256, 0, stream>>>(p, go, w, gi, total,
                                                                                      chan_inner);
  return cudaGetLastError();
}

#define DSCONV_INSTANTIATE(T)                                                                                    \
  template cudaError_t launch_generic_forward<T>(const DwParams&, const T*, const T*, const T*, T*, cudaStream_t); \
  template cudaError_t launch_generic_backward_input<T>(const DwParams&, const T*, const T*, T*, cudaStream_t);
DSCONV_INSTANTIATE(float)
DSCONV_INSTANTIATE(double)
DSCONV_INSTANTIATE(__half)
DSCONV_INSTANTIATE(__nv_bfloat16)
#undef DSCONV_INSTANTIATE

}  // namespace cuda
}  // namespace dsconv
