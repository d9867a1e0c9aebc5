// Direct forward for depthwise and grouped convolutions with few channels per
// group, where a GEMM tile would be mostly padding: one thread per output
// element, summing its C/G*R*S taps.
//   out[n][k][p][q] = bias[k] + sum_{c,r,s} in[n][g*C/G + c][h][w] * wt[k][c][r][s]
// with g = k / (K/G), h = p*stride - pad + r*dil, w likewise.
// Threads walk the output in its memory order (N K P Q, or N P Q K for
// channels_last) so that neighbouring threads touch neighbouring addresses.
// Layouts: input and output any strides, weight K x C/G x R x S contiguous.
#pragma once

#include <ATen/OpMathType.h>

#include "../activation.h"
#include "conv_params.cuh"

namespace conv_ext::cuda {

constexpr int kDirectThreads = 256;

template <typename scalar_t, typename index_t>
struct DirectForwardParams {
  const scalar_t* input;
  Strides4 xs;
  const scalar_t* weight;
  const scalar_t* bias;  // nullptr when there is none
  int64_t bias_stride;
  scalar_t* output;
  Strides4 ys;
  ConvDims d;
  int64_t total;      // N*K*P*Q
  bool channels_last;  // output order N P Q K rather than N K P Q
  Divmod<index_t> k_div, p_div, q_div, kg_div;
  Epilogue epilogue;  // activation applied before the store
};

template <typename scalar_t, typename index_t>
DirectForwardParams<scalar_t, index_t> make_direct_forward_params(
    const at::Tensor& input,
    const at::Tensor& weight,
    const at::Tensor& bias,
    const ConvShape& s,
    at::Tensor& output,
    const Epilogue& epilogue) {
  DirectForwardParams<scalar_t, index_t> p{};
  p.epilogue = epilogue;
  p.input = input.const_data_ptr<scalar_t>();
  p.xs = strides_of(input);
  p.weight = weight.const_data_ptr<scalar_t>();
  p.bias = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  p.bias_stride = bias.defined() ? bias.stride(0) : 0;
  p.output = output.mutable_data_ptr<scalar_t>();
  p.ys = strides_of(output);
  p.d = dims_of(s);
  p.total = s.N * s.K * s.P * s.Q;
  p.channels_last =
      output.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  p.k_div = Divmod<index_t>(s.K);
  p.p_div = Divmod<index_t>(s.P);
  p.q_div = Divmod<index_t>(s.Q);
  p.kg_div = Divmod<index_t>(s.Kg());
  return p;
}

// Splits flat index i of an N x K x P x Q tensor walked in memory order.
template <typename index_t>
__device__ __forceinline__ void split_nkpq(
    index_t i,
    bool channels_last,
    const Divmod<index_t>& k_div,
    const Divmod<index_t>& p_div,
    const Divmod<index_t>& q_div,
    index_t& n,
    index_t& k,
    index_t& pp,
    index_t& qq) {
  if (channels_last) {
    const index_t t = k_div.div(i);
    k = k_div.mod(i, t);
    const index_t u = q_div.div(t);
    qq = q_div.mod(t, u);
    n = p_div.div(u);
    pp = p_div.mod(u, n);
  } else {
    const index_t t = q_div.div(i);
    qq = q_div.mod(i, t);
    const index_t u = p_div.div(t);
    pp = p_div.mod(t, u);
    n = k_div.div(u);
    k = k_div.mod(u, n);
  }
}

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kDirectThreads)
    direct_forward_kernel(const DirectForwardParams<scalar_t, index_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvDims& d = p.d;
  const int64_t step = int64_t{gridDim.x} * kDirectThreads;
  for (int64_t i = int64_t{blockIdx.x} * kDirectThreads + threadIdx.x;
       i < p.total; i += step) {
    index_t n, k, pp, qq;
    split_nkpq<index_t>(
        static_cast<index_t>(i), p.channels_last, p.k_div, p.p_div, p.q_div,
        n, k, pp, qq);
    const int64_t g = p.kg_div.div(k);
    acc_t acc = p.bias != nullptr
        ? static_cast<acc_t>(p.bias[int64_t(k) * p.bias_stride])
        : acc_t(0);
    const scalar_t* x = p.input + int64_t(n) * p.xs.d0 + g * d.Cg * p.xs.d1;
    const scalar_t* w = p.weight + int64_t(k) * d.Cg * d.R * d.S;
    const int64_t h0 = int64_t(pp) * d.stride_h - d.pad_h;
    const int64_t w0 = int64_t(qq) * d.stride_w - d.pad_w;
    for (int64_t r = 0; r < d.R; ++r) {
      const int64_t h = h0 + r * d.dil_h;
      if (h < 0 || h >= d.H) {
        continue;
      }
      for (int64_t s = 0; s < d.S; ++s) {
        const int64_t ww = w0 + s * d.dil_w;
        if (ww < 0 || ww >= d.W) {
          continue;
        }
        const scalar_t* xt = x + h * p.xs.d2 + ww * p.xs.d3;
        const scalar_t* wt = w + r * d.S + s;
        for (int64_t c = 0; c < d.Cg; ++c) {
          acc += static_cast<acc_t>(xt[c * p.xs.d1]) *
              static_cast<acc_t>(wt[c * d.R * d.S]);
        }
      }
    }
    p.output
        [int64_t(n) * p.ys.d0 + int64_t(k) * p.ys.d1 + int64_t(pp) * p.ys.d2 +
         int64_t(qq) * p.ys.d3] = static_cast<scalar_t>(activate(acc, p.epilogue));
  }
}

}  // namespace conv_ext::cuda
