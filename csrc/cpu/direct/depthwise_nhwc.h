// Depthwise convolution (one input and one output channel per group) on
// channels_last data, vectorized along the contiguous channels: every tap
// of a pixel is one multiply-add over a run of C channels. The plane-wise
// direct kernels (depthwise_direct.h) would read such data with a stride of
// C per element (measured 7 GFLOP/s on mbv2_dw_3x3 in NHWC).
//
// Float with unit-stride taps (forward, grad input at stride 1) runs a
// vectorized row kernel (depthwise_nhwc_vec.cpp).
// Threads: forward and grad input own output pixels (rows of an image);
// grad weight owns blocks of channels and sums every pixel of every image
// in a fixed order (float: chunks of rows with their own partial sums,
// added in chunk order): deterministic, no shared writes.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../../conv_shape.h"
#include "../gemm/conv_gemm.h"
#include "depthwise_nhwc_vec.h"
#include "../isa.h"

namespace conv_ext::cpu {

// Weights as [r][s][c] in the accumulation type.
template <typename acc_t, typename scalar_t>
std::vector<acc_t> taps_by_channel(const at::Tensor& weight, const ConvShape& s) {
  std::vector<acc_t> wt(s.R * s.S * s.C);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const WeightView ws(weight);
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t r = 0; r < s.R; ++r)
      for (int64_t t = 0; t < s.S; ++t)
        wt[(r * s.S + t) * s.C + c] = static_cast<acc_t>(w[c * ws.s0 + r * ws.s2 + t * ws.s3]);
  return wt;
}

// out[n][p][q][:] = init + sum_{r,s} wt[r][s][:] * src[n][p*st_h + off_h + r*dil_h]
// [q*st_w + off_w + s*dil_w][:], taps landing off the source skipped, and
// (stride > 1 grad input) only taps whose offset the divisor divides.
template <typename scalar_t, typename acc_t>
void depthwise_nhwc_pass(
    const scalar_t* src, const Strides4& ss, int64_t Hs, int64_t Ws,
    scalar_t* dst, const Strides4& ds, int64_t N, int64_t C, int64_t P, int64_t Q,
    int64_t R, int64_t S, int64_t st_h, int64_t off_h, int64_t dil_h,
    int64_t st_w, int64_t off_w, int64_t dil_w, int64_t div_h, int64_t div_w,
    const acc_t* wt, const acc_t* init) {
  const int64_t grain = grain_for(Q * C * R * S);
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (div_h == 1 && div_w == 1 && ss.d1 == 1 && ds.d1 == 1) {
      const Isa isa = cpu_isa();
      at::parallel_for(0, N * P, grain, [&](int64_t begin, int64_t end) {
        std::vector<const float*> rows(R);
        for (int64_t row = begin; row < end; ++row) {
          const int64_t n = row / P, p = row % P;
          for (int64_t r = 0; r < R; ++r) {
            const int64_t h = p * st_h + off_h + r * dil_h;
            rows[r] = h >= 0 && h < Hs ? src + n * ss.d0 + h * ss.d2 : nullptr;
          }
          const NhwcRow a{rows.data(), wt, init, C, Q, R, S, Ws,
                          st_w, off_w, dil_w, ss.d3, ds.d3};
          depthwise_nhwc_row(isa, a, dst + n * ds.d0 + p * ds.d2);
        }
      });
      return;
    }
  }
  at::parallel_for(0, N * P, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / P, p = row % P;
      for (int64_t q = 0; q < Q; ++q) {
        for (int64_t c = 0; c < C; ++c) acc[c] = init ? init[c] : acc_t(0);
        for (int64_t r = 0; r < R; ++r) {
          const int64_t hh = p * st_h + off_h + r * dil_h;
          if (hh < 0 || hh % div_h != 0 || hh / div_h >= Hs) continue;
          const int64_t h = hh / div_h;
          for (int64_t t = 0; t < S; ++t) {
            const int64_t ww = q * st_w + off_w + t * dil_w;
            if (ww < 0 || ww % div_w != 0 || ww / div_w >= Ws) continue;
            const scalar_t* x = src + n * ss.d0 + h * ss.d2 + (ww / div_w) * ss.d3;
            const acc_t* w = wt + (r * S + t) * C;
            for (int64_t c = 0; c < C; ++c) acc[c] += w[c] * static_cast<acc_t>(x[c]);
          }
        }
        scalar_t* y = dst + n * ds.d0 + p * ds.d2 + q * ds.d3;
        for (int64_t c = 0; c < C; ++c) y[c] = static_cast<scalar_t>(acc[c]);
      }
    }
  });
}

template <typename scalar_t>
void depthwise_nhwc_forward(
    const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const ConvShape& s, at::Tensor& output) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> wt = taps_by_channel<acc_t, scalar_t>(weight, s);
  const std::vector<acc_t> b = bias_values<acc_t, scalar_t>(bias, s.K);
  depthwise_nhwc_pass<scalar_t, acc_t>(
      input.const_data_ptr<scalar_t>(), Strides4(input), s.H, s.W,
      output.mutable_data_ptr<scalar_t>(), Strides4(output), s.N, s.C, s.P, s.Q,
      s.R, s.S, s.stride_h, -s.pad_h, s.dil_h, s.stride_w, -s.pad_w, s.dil_w, 1, 1,
      wt.data(), b.data());
}

// Grad input pixel (h, w) takes grad_output (p, q) = ((h + pad - r*dil) /
// stride, ...) where the stride divides: the forward pass with offset +pad,
// dilation -dil and the stride as a divisor.
template <typename scalar_t>
void depthwise_nhwc_backward_input(
    const at::Tensor& grad_output, const at::Tensor& weight, const ConvShape& s,
    at::Tensor& grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const std::vector<acc_t> wt = taps_by_channel<acc_t, scalar_t>(weight, s);
  depthwise_nhwc_pass<scalar_t, acc_t>(
      grad_output.const_data_ptr<scalar_t>(), Strides4(grad_output), s.P, s.Q,
      grad_input.mutable_data_ptr<scalar_t>(), Strides4(grad_input), s.N, s.C, s.H, s.W,
      s.R, s.S, 1, s.pad_h, -s.dil_h, 1, s.pad_w, -s.dil_w, s.stride_h, s.stride_w,
      wt.data(), static_cast<const acc_t*>(nullptr));
}

template <typename scalar_t>
void depthwise_nhwc_backward_weight(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t kBlock = 64;  // channels per task
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dw = grad_weight.mutable_data_ptr<scalar_t>();
  const WeightView ws(grad_weight);
  const int64_t RS = s.R * s.S, blocks = (s.C + kBlock - 1) / kBlock;
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (xs.d1 == 1 && ys.d1 == 1) {
      // Chunks of kRows output rows, each reading all its pixels' channels in
      // memory order into its own partial sums, then the partials added in
      // chunk order: deterministic for any thread count. Blocks of channels
      // per task instead read every pixel with a stride of C (1.94 ms for
      // mbv2_dw_3x3 in NHWC against torch's 0.54).
      constexpr int64_t kRows = 8;
      const int64_t rows_total = s.N * s.P, chunks = (rows_total + kRows - 1) / kRows;
      const int64_t CRS = s.C * RS;
      std::vector<float> part(chunks * CRS, 0.f);
      const Isa isa = cpu_isa();
      at::parallel_for(0, chunks, grain_for(kRows * s.Q * CRS), [&](int64_t begin, int64_t end) {
        std::vector<const float*> rows(s.R);
        for (int64_t ch = begin; ch < end; ++ch) {
          float* acc = part.data() + ch * CRS;
          const int64_t last = std::min(rows_total, (ch + 1) * kRows);
          for (int64_t row = ch * kRows; row < last; ++row) {
            const int64_t n = row / s.P, p = row % s.P;
            for (int64_t r = 0; r < s.R; ++r) {
              const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
              rows[r] = h >= 0 && h < s.H ? x + n * xs.d0 + h * xs.d2 : nullptr;
            }
            const NhwcRow a{rows.data(), nullptr, nullptr, s.C, s.Q, s.R, s.S, s.W,
                            s.stride_w, -s.pad_w, s.dil_w, xs.d3, ys.d3};
            depthwise_nhwc_dot_row(isa, a, dy + n * ys.d0 + p * ys.d2, acc);
          }
        }
      });
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t t = 0; t < RS; ++t) {
          float sum = 0.f;
          for (int64_t ch = 0; ch < chunks; ++ch) sum += part[ch * CRS + t * s.C + c];
          dw[c * ws.s0 + (t / s.S) * ws.s2 + (t % s.S) * ws.s3] = sum;
        }
      return;
    }
  }
  const int64_t grain = grain_for(s.N * s.P * s.Q * RS * kBlock);
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(RS * kBlock);
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t c0 = blk * kBlock, nc = std::min(kBlock, s.C - c0);
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t p = 0; p < s.P; ++p)
          for (int64_t q = 0; q < s.Q; ++q) {
            const scalar_t* d = dy + n * ys.d0 + p * ys.d2 + q * ys.d3 + c0;
            for (int64_t r = 0; r < s.R; ++r) {
              const int64_t h = p * s.stride_h - s.pad_h + r * s.dil_h;
              if (h < 0 || h >= s.H) continue;
              for (int64_t t = 0; t < s.S; ++t) {
                const int64_t w = q * s.stride_w - s.pad_w + t * s.dil_w;
                if (w < 0 || w >= s.W) continue;
                const scalar_t* xv = x + n * xs.d0 + h * xs.d2 + w * xs.d3 + c0;
                acc_t* a = acc.data() + (r * s.S + t) * kBlock;
                for (int64_t c = 0; c < nc; ++c)
                  a[c] += static_cast<acc_t>(d[c]) * static_cast<acc_t>(xv[c]);
              }
            }
          }
      for (int64_t c = 0; c < nc; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t)
            dw[(c0 + c) * ws.s0 + r * ws.s2 + t * ws.s3] =
                static_cast<scalar_t>(acc[(r * s.S + t) * kBlock + c]);
    }
  });
}

}  // namespace conv_ext::cpu
