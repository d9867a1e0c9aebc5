// Direct grad weight for depthwise and grouped convolutions with few output
// channels per group:
//   dw[k][c][r][s] = sum_{n,p,q} dy[n][k][p][q] * in[n][g*C/G + c][h][w]
// Block (k, chunk) owns output channel k and a fixed range of the N*P*Q
// pixels; it walks that range in sub-chunks of kThreads*kPixelsPerThread
// pixels, each thread holding its pixels' grad_output values in registers,
// and for every tap (c, r, s) sums the products over the block (block_sum,
// a fixed tree) into partial[chunk][k][(c, r, s)]. reduce_partials then adds
// the chunks in order: deterministic, no atomics.
// Layouts: grad_output and input any strides; partial contiguous.
#pragma once

#include <ATen/OpMathType.h>

#include "conv_params.cuh"
#include "reductions.cuh"

namespace conv_ext::cuda {

constexpr int kWgradPixelsPerThread = 4;
constexpr int64_t kWgradSubChunk = int64_t{kReduceThreads} * kWgradPixelsPerThread;

template <typename scalar_t, typename index_t>
struct DirectBackwardWeightParams {
  const scalar_t* grad_output;
  Strides4 ys;
  const scalar_t* input;
  Strides4 xs;
  at::opmath_type<scalar_t>* partial;
  ConvDims d;
  int64_t L;               // N*P*Q
  int64_t subs_per_chunk;  // sub-chunks per chunk
  int64_t chunks;
  int64_t crs;  // C/G*R*S
  Divmod<index_t> pq_div, q_div;
};

// `chunks` is the heuristic's (heuristics.h), adjusted so none is empty.
template <typename scalar_t, typename index_t>
DirectBackwardWeightParams<scalar_t, index_t> make_direct_backward_weight_params(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    int64_t chunks) {
  DirectBackwardWeightParams<scalar_t, index_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.ys = strides_of(grad_output);
  p.input = input.const_data_ptr<scalar_t>();
  p.xs = strides_of(input);
  p.partial = nullptr;  // set by the launcher once allocated
  p.d = dims_of(s);
  p.L = s.N * s.P * s.Q;
  const int64_t subs = (p.L + kWgradSubChunk - 1) / kWgradSubChunk;
  p.subs_per_chunk = (subs + chunks - 1) / chunks;
  p.chunks = (subs + p.subs_per_chunk - 1) / p.subs_per_chunk;
  p.crs = s.Cg() * s.R * s.S;
  p.pq_div = Divmod<index_t>(s.P * s.Q);
  p.q_div = Divmod<index_t>(s.Q);
  return p;
}

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kReduceThreads) direct_backward_weight_kernel(
    const DirectBackwardWeightParams<scalar_t, index_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t warp_sums[kReduceThreads / 32];
  const ConvDims& d = p.d;
  const int64_t b = blockIdx.x;
  const int64_t chunk = b % p.chunks;
  const int64_t k = b / p.chunks;
  const int64_t g = k / d.Kg;
  const scalar_t* dy = p.grad_output + k * p.ys.d1;
  const scalar_t* x = p.input + g * d.Cg * p.xs.d1;
  acc_t* out = p.partial + (chunk * d.K + k) * p.crs;

  const int64_t sub_begin = chunk * p.subs_per_chunk;
  const int64_t subs_total = (p.L + kWgradSubChunk - 1) / kWgradSubChunk;
  const int64_t sub_end = sub_begin + p.subs_per_chunk < subs_total
      ? sub_begin + p.subs_per_chunk
      : subs_total;

  for (int64_t sub = sub_begin; sub < sub_end; ++sub) {
    // This thread's pixels of the sub-chunk: grad_output value, the image
    // offset and the top-left input coordinate of the window.
    acc_t dy_v[kWgradPixelsPerThread];
    int64_t x_off[kWgradPixelsPerThread], h0[kWgradPixelsPerThread],
        w0[kWgradPixelsPerThread];
    bool valid[kWgradPixelsPerThread];
#pragma unroll
    for (int j = 0; j < kWgradPixelsPerThread; ++j) {
      const int64_t l =
          sub * kWgradSubChunk + j * kReduceThreads + threadIdx.x;
      valid[j] = l < p.L;
      dy_v[j] = acc_t(0);
      x_off[j] = 0;
      h0[j] = 0;
      w0[j] = 0;
      if (valid[j]) {
        const index_t li = static_cast<index_t>(l);
        const index_t n = p.pq_div.div(li);
        const index_t pq = p.pq_div.mod(li, n);
        const index_t pp = p.q_div.div(pq);
        const index_t qq = p.q_div.mod(pq, pp);
        dy_v[j] = static_cast<acc_t>(
            dy[int64_t(n) * p.ys.d0 + int64_t(pp) * p.ys.d2 +
               int64_t(qq) * p.ys.d3]);
        x_off[j] = int64_t(n) * p.xs.d0;
        h0[j] = int64_t(pp) * d.stride_h - d.pad_h;
        w0[j] = int64_t(qq) * d.stride_w - d.pad_w;
      }
    }
    // Every thread runs every tap: block_sum's barriers are reached by all.
    int64_t tap = 0;
    for (int64_t c = 0; c < d.Cg; ++c) {
      for (int64_t r = 0; r < d.R; ++r) {
        for (int64_t s = 0; s < d.S; ++s, ++tap) {
          acc_t sum = acc_t(0);
#pragma unroll
          for (int j = 0; j < kWgradPixelsPerThread; ++j) {
            const int64_t h = h0[j] + r * d.dil_h;
            const int64_t w = w0[j] + s * d.dil_w;
            if (valid[j] && h >= 0 && h < d.H && w >= 0 && w < d.W) {
              sum += dy_v[j] *
                  static_cast<acc_t>(x[x_off[j] + c * p.xs.d1 +
                                       h * p.xs.d2 + w * p.xs.d3]);
            }
          }
          const acc_t total = block_sum(sum, warp_sums);
          if (threadIdx.x == 0) {
            out[tap] = sub == sub_begin ? total : out[tap] + total;
          }
        }
      }
    }
  }
}

}  // namespace conv_ext::cuda
