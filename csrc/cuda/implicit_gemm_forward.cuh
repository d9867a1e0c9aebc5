// Forward as an implicit GEMM, one per group (no im2col buffer):
//   out[M x K/G] = im2col(input)[M x C/G*R*S] * weight^T[C/G*R*S x K/G]
// with M = N*P*Q output pixels. The im2col element (m, (c, r, s)) is read
// straight from the input when the tile is fetched; out-of-image taps read 0.
// Layouts: input N x C x H x W and output N x K x P x Q with any strides,
// weight K x C/G x R x S contiguous (the op entry makes it so; it is small).
#pragma once

#include <ATen/OpMathType.h>

#include "../activation.h"
#include "conv_params.cuh"
#include "gemm_tile.cuh"

namespace conv_ext::cuda {

template <typename scalar_t>
struct ForwardGemmParams {
  const scalar_t* input;
  Strides4 xs;
  const scalar_t* weight;  // contiguous, rows of crs elements
  const scalar_t* bias;    // nullptr when there is none
  int64_t bias_stride;
  scalar_t* output;
  Strides4 ys;
  ConvDims d;
  int64_t M;        // N*P*Q
  int64_t tiles_m;  // tiles along M
  int64_t tiles_n;  // tiles along K/G
  uint32_t crs;     // C/G*R*S, < 2^30 (checked by the op entry)
  uint32_t rs;      // R*S
  FastDivmod rs_div, s_div;
  Epilogue epilogue;  // activation applied before the store
};

template <class T, typename scalar_t>
ForwardGemmParams<scalar_t> make_forward_gemm_params(
    const at::Tensor& input,
    const at::Tensor& weight,
    const at::Tensor& bias,
    const ConvShape& s,
    at::Tensor& output,
    const Epilogue& epilogue) {
  ForwardGemmParams<scalar_t> p{};
  p.epilogue = epilogue;
  p.input = input.const_data_ptr<scalar_t>();
  p.xs = strides_of(input);
  p.weight = weight.const_data_ptr<scalar_t>();
  p.bias = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  p.bias_stride = bias.defined() ? bias.stride(0) : 0;
  p.output = output.mutable_data_ptr<scalar_t>();
  p.ys = strides_of(output);
  p.d = dims_of(s);
  p.M = s.N * s.P * s.Q;
  p.tiles_m = (p.M + T::BM - 1) / T::BM;
  p.tiles_n = (s.Kg() + T::BN - 1) / T::BN;
  p.crs = static_cast<uint32_t>(s.Cg() * s.R * s.S);
  p.rs = static_cast<uint32_t>(s.R * s.S);
  p.rs_div = FastDivmod(p.rs);
  p.s_div = FastDivmod(static_cast<uint32_t>(s.S));
  return p;
}

template <class T, typename scalar_t>
int64_t forward_gemm_blocks(const ForwardGemmParams<scalar_t>& p) {
  return p.tiles_m * p.tiles_n * p.d.G;
}

template <typename scalar_t, class T>
__global__ void __launch_bounds__(T::kThreads)
    implicit_gemm_forward_kernel(const ForwardGemmParams<scalar_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ GemmSmem<acc_t, T> sm;
  const ConvDims& d = p.d;
  const int tid = threadIdx.x;

  // Block order: M fastest, so consecutive blocks share one weight tile.
  const int64_t b = blockIdx.x;
  const int64_t m0 = (b % p.tiles_m) * T::BM;
  const int64_t k0 = (b / p.tiles_m) % p.tiles_n * T::BN;
  const int64_t g = b / (p.tiles_m * p.tiles_n);

  // A (im2col rows), row-fastest: this thread always fetches output pixel
  // m0 + a_row, so consecutive threads read consecutive pixels.
  const int a_row = tid % T::BM;
  const int a_k = tid / T::BM;
  const int64_t m = m0 + a_row;
  const bool m_ok = m < p.M;
  int64_t x_base = 0, h0 = 0, w0 = 0;
  if (m_ok) {
    const int64_t n = m / (d.P * d.Q);
    const int64_t pq = m - n * (d.P * d.Q);
    const int64_t pp = pq / d.Q;
    const int64_t qq = pq - pp * d.Q;
    x_base = n * p.xs.d0 + g * d.Cg * p.xs.d1;
    h0 = pp * d.stride_h - d.pad_h;
    w0 = qq * d.stride_w - d.pad_w;
  }
  // B (weight^T), k-fastest: consecutive threads read consecutive taps of
  // one filter, which are contiguous in memory.
  const int b_k = tid % T::BK;
  const int b_col = tid / T::BK;
  const scalar_t* w_group = p.weight + g * d.Kg * int64_t{p.crs};

  acc_t a_reg[T::kRowFastLoads];
  acc_t b_reg[T::kBKFastLoads];

  auto fetch = [&](int64_t t) {
    const uint32_t kbase = static_cast<uint32_t>(t) * T::BK;
#pragma unroll
    for (int j = 0; j < T::kRowFastLoads; ++j) {
      const uint32_t kidx = kbase + a_k + j * T::kRowFastStride;
      acc_t v = acc_t(0);
      if (m_ok && kidx < p.crs) {
        const uint32_t c = p.rs_div.div(kidx);
        const uint32_t rs = kidx - c * p.rs;
        const uint32_t r = p.s_div.div(rs);
        const uint32_t s = rs - r * static_cast<uint32_t>(d.S);
        const int64_t h = h0 + r * d.dil_h;
        const int64_t w = w0 + s * d.dil_w;
        if (h >= 0 && h < d.H && w >= 0 && w < d.W) {
          v = static_cast<acc_t>(
              p.input[x_base + c * p.xs.d1 + h * p.xs.d2 + w * p.xs.d3]);
        }
      }
      a_reg[j] = v;
    }
    const uint32_t kidx = kbase + b_k;
#pragma unroll
    for (int j = 0; j < T::kBKFastLoads; ++j) {
      const int64_t k = k0 + b_col + j * T::kKFastStride;
      b_reg[j] = (kidx < p.crs && k < d.Kg)
          ? static_cast<acc_t>(w_group[k * p.crs + kidx])
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
  const int64_t steps = (p.crs + T::BK - 1) / T::BK;
  gemm_mainloop<T>(steps, sm, acc, fetch, stash);

  // Epilogue: add the bias, activate, convert, store through the output's
  // strides.
  const int tm = tid % T::kRowThreads;
  const int tn = tid / T::kRowThreads;
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int64_t mi = m0 + tm + i * T::kRowThreads;
    if (mi >= p.M) {
      continue;
    }
    const int64_t n = mi / (d.P * d.Q);
    const int64_t pq = mi - n * (d.P * d.Q);
    const int64_t pp = pq / d.Q;
    const int64_t qq = pq - pp * d.Q;
    scalar_t* y = p.output + n * p.ys.d0 + pp * p.ys.d2 + qq * p.ys.d3;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int64_t k = k0 + tn + j * T::kColThreads;
      if (k >= d.Kg) {
        continue;
      }
      const int64_t kf = g * d.Kg + k;
      acc_t v = acc[i][j];
      if (p.bias != nullptr) {
        v += static_cast<acc_t>(p.bias[kf * p.bias_stride]);
      }
      y[kf * p.ys.d1] = static_cast<scalar_t>(activate(v, p.epilogue));
    }
  }
}

}  // namespace conv_ext::cuda
