// Direct grad input for depthwise and grouped convolutions with few channels
// per group: one thread per grad_input element, gathering every
// (k, r, s) whose tap reached it (csrc/cpu/gather.h, gather_grad_output_rows):
//   dx[n][c][h][w] = sum_{k,r,s} dy[n][g*K/G + k][p][q] * wt[g*K/G + k][c'][r][s]
// where g = c / (C/G), c' = c % (C/G), and p*stride == h + pad - r*dil (q
// likewise) with p in [0, P). Threads walk grad_input in its memory order.
// Layouts: grad_output and grad_input any strides, weight contiguous.
#pragma once

#include <ATen/OpMathType.h>

#include "conv_params.cuh"
#include "direct_forward.cuh"
#include "implicit_gemm_backward_input.cuh"

namespace conv_ext::cuda {

template <typename scalar_t, typename index_t>
struct DirectBackwardInputParams {
  const scalar_t* grad_output;
  Strides4 ys;
  const scalar_t* weight;
  scalar_t* grad_input;
  Strides4 xs;
  ConvDims d;
  int64_t total;       // N*C*H*W
  bool channels_last;  // grad_input order N H W C rather than N C H W
  Divmod<index_t> c_div, h_div, w_div, cg_div;
};

template <typename scalar_t, typename index_t>
DirectBackwardInputParams<scalar_t, index_t> make_direct_backward_input_params(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input) {
  DirectBackwardInputParams<scalar_t, index_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.ys = strides_of(grad_output);
  p.weight = weight.const_data_ptr<scalar_t>();
  p.grad_input = grad_input.mutable_data_ptr<scalar_t>();
  p.xs = strides_of(grad_input);
  p.d = dims_of(s);
  p.total = s.N * s.C * s.H * s.W;
  p.channels_last =
      grad_input.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  p.c_div = Divmod<index_t>(s.C);
  p.h_div = Divmod<index_t>(s.H);
  p.w_div = Divmod<index_t>(s.W);
  p.cg_div = Divmod<index_t>(s.Cg());
  return p;
}

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kDirectThreads) direct_backward_input_kernel(
    const DirectBackwardInputParams<scalar_t, index_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvDims& d = p.d;
  const int64_t RS = d.R * d.S;
  const int64_t step = int64_t{gridDim.x} * kDirectThreads;
  for (int64_t i = int64_t{blockIdx.x} * kDirectThreads + threadIdx.x;
       i < p.total; i += step) {
    index_t n, c, hh, ww;
    split_nkpq<index_t>(
        static_cast<index_t>(i), p.channels_last, p.c_div, p.h_div, p.w_div,
        n, c, hh, ww);
    const index_t g = p.cg_div.div(c);
    const int64_t cc = int64_t(c) - int64_t(g) * d.Cg;
    const scalar_t* dy =
        p.grad_output + int64_t(n) * p.ys.d0 + int64_t(g) * d.Kg * p.ys.d1;
    // weight[g*Kg + k][cc][r][s]
    const scalar_t* w = p.weight + (int64_t(g) * d.Kg * d.Cg + cc) * RS;
    const int64_t h_padded = int64_t(hh) + d.pad_h;
    const int64_t w_padded = int64_t(ww) + d.pad_w;
    acc_t acc = acc_t(0);
    for (int64_t r = 0; r < d.R; ++r) {
      const int64_t pp =
          tap_source<true>(h_padded, r * d.dil_h, d.stride_h, d.P);
      if (pp < 0) {
        continue;
      }
      for (int64_t s = 0; s < d.S; ++s) {
        const int64_t qq =
            tap_source<true>(w_padded, s * d.dil_w, d.stride_w, d.Q);
        if (qq < 0) {
          continue;
        }
        const scalar_t* dyt = dy + pp * p.ys.d2 + qq * p.ys.d3;
        const scalar_t* wt = w + r * d.S + s;
        for (int64_t k = 0; k < d.Kg; ++k) {
          acc += static_cast<acc_t>(dyt[k * p.ys.d1]) *
              static_cast<acc_t>(wt[k * d.Cg * RS]);
        }
      }
    }
    p.grad_input
        [int64_t(n) * p.xs.d0 + int64_t(c) * p.xs.d1 + int64_t(hh) * p.xs.d2 +
         int64_t(ww) * p.xs.d3] = static_cast<scalar_t>(acc);
  }
}

}  // namespace conv_ext::cuda
