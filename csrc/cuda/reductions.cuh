// Deterministic reductions: a fixed-shape block sum, the bias-grad partial
// sums, and the pass that adds per-chunk partial buffers in chunk order and
// writes the result through the destination's strides. Every sum is taken in
// an order fixed by the shape alone, so results are bitwise reproducible.
#pragma once

#include <ATen/OpMathType.h>

#include "conv_params.cuh"

namespace conv_ext::cuda {

constexpr int kReduceThreads = 256;

// Sum of `v` over the block, valid in thread 0. Every thread of the block
// must call it (it holds two barriers). A warp tree by shuffles, then the
// warps' sums added in warp order: the same association every run.
template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v, acc_t* warp_sums) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) {
    warp_sums[warp] = v;
  }
  __syncthreads();
  acc_t total = acc_t(0);
  if (threadIdx.x == 0) {
    for (int w = 0; w < kReduceThreads / 32; ++w) {
      total += warp_sums[w];
    }
  }
  __syncthreads();  // warp_sums is free for the next call
  return total;
}

// ---------------------------------------------------------------- grad bias
// Pass 1: block (k, chunk) sums grad_output[:, k, :, :] over pixels
// [chunk*chunk_len, ...) of the N*P*Q flattened in (n, p, q) order into
// partial[chunk][k].
template <typename scalar_t, typename index_t>
struct BiasPartialParams {
  const scalar_t* grad_output;
  Strides4 ys;
  at::opmath_type<scalar_t>* partial;
  int64_t K;
  int64_t L;  // N*P*Q
  int64_t chunk_len;
  int64_t chunks;
  Divmod<index_t> pq_div, q_div;
};

template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kReduceThreads)
    bias_partial_kernel(const BiasPartialParams<scalar_t, index_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t warp_sums[kReduceThreads / 32];
  const int64_t b = blockIdx.x;
  const int64_t chunk = b % p.chunks;
  const int64_t k = b / p.chunks;
  const int64_t l_begin = chunk * p.chunk_len;
  const int64_t l_end =
      l_begin + p.chunk_len < p.L ? l_begin + p.chunk_len : p.L;
  const scalar_t* dy = p.grad_output + k * p.ys.d1;
  acc_t sum = acc_t(0);
  for (int64_t l = l_begin + threadIdx.x; l < l_end; l += kReduceThreads) {
    const index_t li = static_cast<index_t>(l);
    const index_t n = p.pq_div.div(li);
    const index_t pq = p.pq_div.mod(li, n);
    const index_t pp = p.q_div.div(pq);
    const index_t qq = p.q_div.mod(pq, pp);
    sum += static_cast<acc_t>(
        dy[int64_t(n) * p.ys.d0 + int64_t(pp) * p.ys.d2 +
           int64_t(qq) * p.ys.d3]);
  }
  const acc_t total = block_sum(sum, warp_sums);
  if (threadIdx.x == 0) {
    p.partial[chunk * p.K + k] = total;
  }
}

// ---------------------------------------------------------- partial buffers
// Pass 2 of grad weight and grad bias: out[e] = sum over chunks, in chunk
// order, of partial[chunk][e], for the `count` = K*C/G*R*S elements of a
// K x C/G x R x S destination (K x 1 x 1 x 1 for the bias), written through
// its strides with the conversion to scalar_t.
template <typename scalar_t>
struct ReducePartialsParams {
  const at::opmath_type<scalar_t>* partial;
  int64_t chunks;
  int64_t count;
  scalar_t* out;
  Strides4 os;
  int64_t crs, rs, S;  // per-filter extents to split an element index
};

template <typename scalar_t>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_partials_kernel(const ReducePartialsParams<scalar_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t step = int64_t{gridDim.x} * kReduceThreads;
  for (int64_t e = int64_t{blockIdx.x} * kReduceThreads + threadIdx.x;
       e < p.count; e += step) {
    acc_t sum = p.partial[e];
    for (int64_t c = 1; c < p.chunks; ++c) {
      sum += p.partial[c * p.count + e];
    }
    const int64_t k = e / p.crs;
    const int64_t crs = e - k * p.crs;
    const int64_t c = crs / p.rs;
    const int64_t rs = crs - c * p.rs;
    const int64_t r = rs / p.S;
    const int64_t s = rs - r * p.S;
    p.out[k * p.os.d0 + c * p.os.d1 + r * p.os.d2 + s * p.os.d3] =
        static_cast<scalar_t>(sum);
  }
}

}  // namespace conv_ext::cuda
