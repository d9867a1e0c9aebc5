// Grad weight as an implicit GEMM per group, a reduction over every output
// pixel of every image:
//   dw[K/G x C/G*R*S] = grad_output[K/G x L] * im2col(input)[L x C/G*R*S]
// with L = N*P*Q. The L reduction is cut into fixed chunks: each block sums
// one chunk of one tile into its own slice of a partial buffer, and a second
// pass (reduce_partials.cuh) adds the slices in chunk order. No atomics, the
// same bits on every run.
// Layouts: grad_output N x K x P x Q and input N x C x H x W with any
// strides; partial [chunks][K][C/G*R*S] contiguous, in the accumulation type.
#pragma once

#include <ATen/OpMathType.h>

#include "conv_params.cuh"
#include "gemm_tile.cuh"

namespace conv_ext::cuda {

template <typename scalar_t>
struct BackwardWeightGemmParams {
  const scalar_t* grad_output;
  Strides4 ys;
  const scalar_t* input;
  Strides4 xs;
  at::opmath_type<scalar_t>* partial;
  ConvDims d;
  int64_t L;          // N*P*Q
  int64_t chunk_len;  // pixels per chunk, a multiple of BK
  int64_t chunks;
  int64_t tiles_m;    // tiles along K/G
  int64_t tiles_n;    // tiles along C/G*R*S
  uint32_t crs;       // C/G*R*S, < 2^30 (checked by the op entry)
  uint32_t rs;        // R*S
  FastDivmod rs_div, s_div;
};

// `chunks` is the heuristic's (heuristics.h); the chunk length is rounded up
// to whole slices, which may leave fewer chunks than asked for.
template <class T, typename scalar_t>
BackwardWeightGemmParams<scalar_t> make_backward_weight_gemm_params(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    int64_t chunks) {
  BackwardWeightGemmParams<scalar_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.ys = strides_of(grad_output);
  p.input = input.const_data_ptr<scalar_t>();
  p.xs = strides_of(input);
  p.partial = nullptr;  // set by the launcher once allocated
  p.d = dims_of(s);
  p.L = s.N * s.P * s.Q;
  const int64_t per_chunk = (p.L + chunks - 1) / chunks;
  p.chunk_len = (per_chunk + T::BK - 1) / T::BK * T::BK;
  p.chunks = (p.L + p.chunk_len - 1) / p.chunk_len;
  p.tiles_m = (s.Kg() + T::BM - 1) / T::BM;
  p.crs = static_cast<uint32_t>(s.Cg() * s.R * s.S);
  p.tiles_n = (int64_t{p.crs} + T::BN - 1) / T::BN;
  p.rs = static_cast<uint32_t>(s.R * s.S);
  p.rs_div = FastDivmod(p.rs);
  p.s_div = FastDivmod(static_cast<uint32_t>(s.S));
  return p;
}

template <class T, typename scalar_t>
int64_t backward_weight_gemm_blocks(
    const BackwardWeightGemmParams<scalar_t>& p) {
  return p.tiles_n * p.tiles_m * p.d.G * p.chunks;
}

template <typename scalar_t, class T>
__global__ void __launch_bounds__(T::kThreads)
    implicit_gemm_backward_weight_kernel(
        const BackwardWeightGemmParams<scalar_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ GemmSmem<acc_t, T> sm;
  const ConvDims& d = p.d;
  const int tid = threadIdx.x;

  // Block order: taps fastest, then output channels, groups, chunks.
  const int64_t b = blockIdx.x;
  const int64_t n0 = (b % p.tiles_n) * T::BN;  // first tap (column)
  const int64_t k0 = (b / p.tiles_n) % p.tiles_m * T::BM;
  const int64_t g = (b / (p.tiles_n * p.tiles_m)) % d.G;
  const int64_t chunk = b / (p.tiles_n * p.tiles_m * d.G);
  const int64_t l_begin = chunk * p.chunk_len;
  const int64_t l_end =
      l_begin + p.chunk_len < p.L ? l_begin + p.chunk_len : p.L;

  // Both operands k-fastest: this thread always fetches pixel l_begin +
  // t*BK + ll of slice t, so consecutive threads read consecutive pixels.
  // Its (n, p, q) is advanced slice by slice without division.
  const int ll = tid % T::BK;
  const int row0 = tid / T::BK;
  int64_t l = l_begin + ll;
  int64_t n = div_nonnegative(l, d.P * d.Q);
  int64_t pp = div_nonnegative(l - n * (d.P * d.Q), d.Q);
  int64_t qq = l - n * (d.P * d.Q) - pp * d.Q;
  int64_t at_slice = 0;

  const scalar_t* dy_group = p.grad_output + g * d.Kg * p.ys.d1;
  const scalar_t* x_group = p.input + g * d.Cg * p.xs.d1;

  acc_t a_reg[T::kAKFastLoads];
  acc_t b_reg[T::kBKFastLoads];

  auto fetch = [&](int64_t t) {
    while (at_slice < t) {  // runs once per call: t grows by one
      ++at_slice;
      l += T::BK;
      qq += T::BK;
      while (qq >= d.Q) {
        qq -= d.Q;
        ++pp;
      }
      while (pp >= d.P) {
        pp -= d.P;
        ++n;
      }
    }
    const bool l_ok = l < l_end;
#pragma unroll
    for (int j = 0; j < T::kAKFastLoads; ++j) {
      const int64_t k = k0 + row0 + j * T::kKFastStride;
      a_reg[j] = (l_ok && k < d.Kg)
          ? static_cast<acc_t>(dy_group
                                   [n * p.ys.d0 + k * p.ys.d1 + pp * p.ys.d2 +
                                    qq * p.ys.d3])
          : acc_t(0);
    }
    const int64_t h0 = pp * d.stride_h - d.pad_h;
    const int64_t w0 = qq * d.stride_w - d.pad_w;
#pragma unroll
    for (int j = 0; j < T::kBKFastLoads; ++j) {
      const int64_t col = n0 + row0 + j * T::kKFastStride;
      acc_t v = acc_t(0);
      if (l_ok && col < p.crs) {
        const uint32_t kidx = static_cast<uint32_t>(col);
        const uint32_t c = p.rs_div.div(kidx);
        const uint32_t rs = kidx - c * p.rs;
        const uint32_t r = p.s_div.div(rs);
        const uint32_t s = rs - r * static_cast<uint32_t>(d.S);
        const int64_t h = h0 + r * d.dil_h;
        const int64_t w = w0 + s * d.dil_w;
        if (h >= 0 && h < d.H && w >= 0 && w < d.W) {
          v = static_cast<acc_t>(x_group
                                     [n * p.xs.d0 + c * p.xs.d1 +
                                      h * p.xs.d2 + w * p.xs.d3]);
        }
      }
      b_reg[j] = v;
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int j = 0; j < T::kAKFastLoads; ++j) {
      sm.a[buf][ll][row0 + j * T::kKFastStride] = a_reg[j];
    }
#pragma unroll
    for (int j = 0; j < T::kBKFastLoads; ++j) {
      sm.b[buf][ll][row0 + j * T::kKFastStride] = b_reg[j];
    }
  };

  acc_t acc[T::TM][T::TN];
  const int64_t steps = (l_end - l_begin + T::BK - 1) / T::BK;
  gemm_mainloop<T>(steps, sm, acc, fetch, stash);

  const int tm = tid % T::kRowThreads;
  const int tn = tid / T::kRowThreads;
  acc_t* out = p.partial + (chunk * d.K + g * d.Kg) * int64_t{p.crs};
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int64_t k = k0 + tm + i * T::kRowThreads;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int64_t col = n0 + tn + j * T::kColThreads;
      if (k < d.Kg && col < p.crs) {
        out[k * p.crs + col] = acc[i][j];
      }
    }
  }
}

}  // namespace conv_ext::cuda
