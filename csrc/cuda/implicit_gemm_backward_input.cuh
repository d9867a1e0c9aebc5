// Grad input as an implicit GEMM per group, the transposed convolution
// written as a gather so that every grad_input element is produced by one
// thread and no atomics are needed:
//   dx[M x C/G] = rows(grad_output)[M x K/G*R*S] * W'[K/G*R*S x C/G]
// with M = N*H*W input pixels and W'[(k, r, s)][c] = weight[k][c][r][s].
// Row m of the left operand holds, for each (k, r, s), the grad_output
// element that tap (r, s) of pixel m fed, or 0 where the stride skips it or
// it falls outside the output (csrc/cpu/gather.h, gather_grad_output_rows).
// Layouts: grad_output N x K x P x Q and grad_input N x C x H x W with any
// strides, weight K x C/G x R x S contiguous.
#pragma once

#include <ATen/OpMathType.h>

#include "conv_params.cuh"
#include "gemm_tile.cuh"

namespace conv_ext::cuda {

template <typename scalar_t>
struct BackwardInputGemmParams {
  const scalar_t* grad_output;
  Strides4 ys;
  const scalar_t* weight;  // contiguous K x C/G x R x S
  scalar_t* grad_input;
  Strides4 xs;
  ConvDims d;
  int64_t M;        // N*H*W
  int64_t tiles_m;  // tiles along M
  int64_t tiles_n;  // tiles along C/G
  uint32_t krs;     // K/G*R*S, < 2^30 (checked by the op entry)
  uint32_t rs;      // R*S
  FastDivmod rs_div, s_div;
};

template <class T, typename scalar_t>
BackwardInputGemmParams<scalar_t> make_backward_input_gemm_params(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input) {
  BackwardInputGemmParams<scalar_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.ys = strides_of(grad_output);
  p.weight = weight.const_data_ptr<scalar_t>();
  p.grad_input = grad_input.mutable_data_ptr<scalar_t>();
  p.xs = strides_of(grad_input);
  p.d = dims_of(s);
  p.M = s.N * s.H * s.W;
  p.tiles_m = (p.M + T::BM - 1) / T::BM;
  p.tiles_n = (s.Cg() + T::BN - 1) / T::BN;
  p.krs = static_cast<uint32_t>(s.Kg() * s.R * s.S);
  p.rs = static_cast<uint32_t>(s.R * s.S);
  p.rs_div = FastDivmod(p.rs);
  p.s_div = FastDivmod(static_cast<uint32_t>(s.S));
  return p;
}

template <class T, typename scalar_t>
int64_t backward_input_gemm_blocks(const BackwardInputGemmParams<scalar_t>& p) {
  return p.tiles_m * p.tiles_n * p.d.G;
}

// The output coordinate that input coordinate `x` (plus padding) reaches
// through a tap at offset `tap` (= r*dil): o with o*stride == x + pad - tap,
// or -1 when there is none in [0, extent). kNoCall divides without the
// 64-bit division subroutine (div_nonnegative): the direct kernel needs it
// to stay off the stack in float64; the GEMM's unrolled fetch is better off
// with the call (the inline loop, unrolled 8 times, spills there).
template <bool kNoCall = false>
__device__ __forceinline__ int64_t
tap_source(int64_t x_padded, int64_t tap, int64_t stride, int64_t extent) {
  const int64_t v = x_padded - tap;
  if (v < 0) {
    return -1;
  }
  int64_t o = v;
  if (stride != 1) {
    o = kNoCall ? div_nonnegative(v, stride) : v / stride;
    if (o * stride != v) {
      return -1;
    }
  }
  return o < extent ? o : -1;
}

template <typename scalar_t, class T>
__global__ void __launch_bounds__(T::kThreads)
    implicit_gemm_backward_input_kernel(
        const BackwardInputGemmParams<scalar_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ GemmSmem<acc_t, T> sm;
  const ConvDims& d = p.d;
  const int tid = threadIdx.x;

  const int64_t b = blockIdx.x;
  const int64_t m0 = (b % p.tiles_m) * T::BM;
  const int64_t c0 = (b / p.tiles_m) % p.tiles_n * T::BN;
  const int64_t g = b / (p.tiles_m * p.tiles_n);

  // A (grad_output rows), row-fastest: one input pixel per thread.
  const int a_row = tid % T::BM;
  const int a_k = tid / T::BM;
  const int64_t m = m0 + a_row;
  const bool m_ok = m < p.M;
  int64_t y_base = 0, h_padded = 0, w_padded = 0;
  if (m_ok) {
    const int64_t n = m / (d.H * d.W);
    const int64_t hw = m - n * (d.H * d.W);
    const int64_t hh = hw / d.W;
    const int64_t ww = hw - hh * d.W;
    y_base = n * p.ys.d0 + g * d.Kg * p.ys.d1;
    h_padded = hh + d.pad_h;
    w_padded = ww + d.pad_w;
  }
  // B (W'), k-fastest: this thread's reduction index is fixed per slice.
  const int b_k = tid % T::BK;
  const int b_col = tid / T::BK;
  const int64_t crs = d.Cg * int64_t{p.rs};
  const scalar_t* w_group = p.weight + g * d.Kg * crs;

  acc_t a_reg[T::kRowFastLoads];
  acc_t b_reg[T::kBKFastLoads];

  auto fetch = [&](int64_t t) {
    const uint32_t kbase = static_cast<uint32_t>(t) * T::BK;
#pragma unroll
    for (int j = 0; j < T::kRowFastLoads; ++j) {
      const uint32_t kidx = kbase + a_k + j * T::kRowFastStride;
      acc_t v = acc_t(0);
      if (m_ok && kidx < p.krs) {
        const uint32_t k = p.rs_div.div(kidx);
        const uint32_t rs = kidx - k * p.rs;
        const uint32_t r = p.s_div.div(rs);
        const uint32_t s = rs - r * static_cast<uint32_t>(d.S);
        const int64_t pp =
            tap_source(h_padded, r * d.dil_h, d.stride_h, d.P);
        const int64_t qq =
            tap_source(w_padded, s * d.dil_w, d.stride_w, d.Q);
        if (pp >= 0 && qq >= 0) {
          v = static_cast<acc_t>(p.grad_output
                                     [y_base + k * p.ys.d1 + pp * p.ys.d2 +
                                      qq * p.ys.d3]);
        }
      }
      a_reg[j] = v;
    }
    const uint32_t kidx = kbase + b_k;
    const bool k_ok = kidx < p.krs;
    int64_t w_off = 0;
    if (k_ok) {
      const uint32_t k = p.rs_div.div(kidx);
      const uint32_t rs = kidx - k * p.rs;
      w_off = k * crs + rs;  // weight[k][c][r][s] is w_off + c*R*S
    }
#pragma unroll
    for (int j = 0; j < T::kBKFastLoads; ++j) {
      const int64_t c = c0 + b_col + j * T::kKFastStride;
      b_reg[j] = (k_ok && c < d.Cg)
          ? static_cast<acc_t>(w_group[w_off + c * p.rs])
          : acc_t(0);
    }
  };
  auto stash = [&](int buf) {
#pragma unroll
    for (int j = 0; j < T::kRowFastLoads; ++j) {
      sm.a[buf][a_k + j * T::kRowFastStride][a_row] = a_reg[j];
    }
#pragma unroll
    for (int j = 0; j < T::kBKFastLoads; ++j) {
      sm.b[buf][b_k][b_col + j * T::kKFastStride] = b_reg[j];
    }
  };

  acc_t acc[T::TM][T::TN];
  const int64_t steps = (p.krs + T::BK - 1) / T::BK;
  gemm_mainloop<T>(steps, sm, acc, fetch, stash);

  const int tm = tid % T::kRowThreads;
  const int tn = tid / T::kRowThreads;
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int64_t mi = m0 + tm + i * T::kRowThreads;
    if (mi >= p.M) {
      continue;
    }
    const int64_t n = mi / (d.H * d.W);
    const int64_t hw = mi - n * (d.H * d.W);
    const int64_t hh = hw / d.W;
    const int64_t ww = hw - hh * d.W;
    scalar_t* dx = p.grad_input + n * p.xs.d0 + hh * p.xs.d2 + ww * p.xs.d3;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int64_t c = c0 + tn + j * T::kColThreads;
      if (c < d.Cg) {
        dx[(g * d.Cg + c) * p.xs.d1] = static_cast<scalar_t>(acc[i][j]);
      }
    }
  }
}

}  // namespace conv_ext::cuda
