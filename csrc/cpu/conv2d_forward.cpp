// Forward on the CPU as a GEMM per tile of output pixels:
//   out[pixels x K/G] = im2col(input)[pixels x C/G*R*S] * weight^T[C/G*R*S x K/G]
// (M = N*P*Q in tiles, N = K, K = C*R*S/groups), with a bounded im2col
// buffer per thread and the bias folded into the accumulator's start value.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../conv_shape.h"
#include "gather.h"
#include "gemm.h"

namespace conv_ext::cpu {
namespace {

constexpr int64_t kTilePixels = 64;

template <typename scalar_t>
void conv2d_forward_kernel(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvShape& s,
    at::Tensor& output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t Cg = s.Cg(), Kg = s.Kg();
  const int64_t CRS = Cg * s.R * s.S;
  const int64_t PQ = s.P * s.Q;

  // B operand: per group a CRS x Kg matrix (the weight transposed).
  std::vector<acc_t> wt(s.G * CRS * Kg);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const Strides4 ws(weight);
  for (int64_t k = 0; k < s.K; ++k) {
    const int64_t g = k / Kg, kk = k % Kg;
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t)
          wt[(g * CRS + (c * s.R + r) * s.S + t) * Kg + kk] = static_cast<acc_t>(
              w[k * ws.d0 + c * ws.d1 + r * ws.d2 + t * ws.d3]);
  }
  std::vector<acc_t> b(s.K, acc_t(0));
  if (bias.has_value() && bias->defined()) {
    const scalar_t* bp = bias->const_data_ptr<scalar_t>();
    for (int64_t k = 0; k < s.K; ++k)
      b[k] = static_cast<acc_t>(bp[k * bias->stride(0)]);
  }

  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  scalar_t* y = output.mutable_data_ptr<scalar_t>();
  const Strides4 ys(output);
  const int64_t tiles = (PQ + kTilePixels - 1) / kTilePixels;

  at::parallel_for(0, s.N * s.G * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col(kTilePixels * CRS);
    std::vector<acc_t> acc(kTilePixels * Kg);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (s.G * tiles);
      const int64_t g = (task / tiles) % s.G;
      const int64_t pq0 = (task % tiles) * kTilePixels;
      const int64_t rows = std::min(kTilePixels, PQ - pq0);
      gather_input_rows(x, xs, s, n, g, pq0, rows, col.data());
      for (int64_t j = 0; j < rows; ++j)
        std::copy_n(b.data() + g * Kg, Kg, acc.data() + j * Kg);
      gemm_nn_acc(
          rows, Kg, CRS, col.data(), CRS, wt.data() + g * CRS * Kg, Kg,
          acc.data(), Kg);
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t p = (pq0 + j) / s.Q, q = (pq0 + j) % s.Q;
        scalar_t* yp = y + n * ys.d0 + g * Kg * ys.d1 + p * ys.d2 + q * ys.d3;
        for (int64_t kk = 0; kk < Kg; ++kk)
          yp[kk * ys.d1] = static_cast<scalar_t>(acc[j * Kg + kk]);
      }
    }
  });
}

at::Tensor conv2d_forward_cpu(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s =
      check_forward(input, weight, bias, stride, padding, dilation, groups);
  at::Tensor output = at::empty(
      {s.N, s.K, s.P, s.Q},
      input.options().memory_format(output_memory_format(input, weight)));
  if (output.numel() == 0) {
    return output;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "conv2d_forward_cpu", [&] {
        conv2d_forward_kernel<scalar_t>(input, weight, bias, s, output);
      });
  return output;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_forward", &conv_ext::cpu::conv2d_forward_cpu);
}
