// Grad input on the CPU as a GEMM per tile of input pixels, the transposed
// convolution written as a gather so that no two threads write one element:
//   dx[pixels x C/G] = rows(grad_output)[pixels x K/G*R*S] * W'[K/G*R*S x C/G]
// where W'[(k, r, s)][c] = weight[k][c][r][s].
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
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
void conv2d_backward_input_kernel(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t Cg = s.Cg(), Kg = s.Kg();
  const int64_t KRS = Kg * s.R * s.S;
  const int64_t HW = s.H * s.W;

  std::vector<acc_t> wr(s.G * KRS * Cg);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const Strides4 ws(weight);
  for (int64_t k = 0; k < s.K; ++k) {
    const int64_t g = k / Kg, kk = k % Kg;
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t)
          wr[(g * KRS + (kk * s.R + r) * s.S + t) * Cg + c] = static_cast<acc_t>(
              w[k * ws.d0 + c * ws.d1 + r * ws.d2 + t * ws.d3]);
  }

  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dx = grad_input.mutable_data_ptr<scalar_t>();
  const Strides4 xs(grad_input);
  const int64_t tiles = (HW + kTilePixels - 1) / kTilePixels;

  at::parallel_for(0, s.N * s.G * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col(kTilePixels * KRS);
    std::vector<acc_t> acc(kTilePixels * Cg);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (s.G * tiles);
      const int64_t g = (task / tiles) % s.G;
      const int64_t hw0 = (task % tiles) * kTilePixels;
      const int64_t rows = std::min(kTilePixels, HW - hw0);
      gather_grad_output_rows(dy, ys, s, n, g, hw0, rows, col.data());
      std::fill_n(acc.data(), rows * Cg, acc_t(0));
      gemm_nn_acc(
          rows, Cg, KRS, col.data(), KRS, wr.data() + g * KRS * Cg, Cg,
          acc.data(), Cg);
      for (int64_t j = 0; j < rows; ++j) {
        const int64_t h = (hw0 + j) / s.W, wi = (hw0 + j) % s.W;
        scalar_t* xp = dx + n * xs.d0 + g * Cg * xs.d1 + h * xs.d2 + wi * xs.d3;
        for (int64_t c = 0; c < Cg; ++c)
          xp[c * xs.d1] = static_cast<scalar_t>(acc[j * Cg + c]);
      }
    }
  });
}

at::Tensor conv2d_backward_input_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    at::IntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s = check_backward_input(
      grad_output, weight, input_size, stride, padding, dilation, groups);
  const auto options = grad_output.options().memory_format(
      output_memory_format(grad_output, weight));
  if (s.K == 0 || grad_output.numel() == 0) {
    return at::zeros(input_size, options);
  }
  at::Tensor grad_input = at::empty(input_size, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_input_cpu", [&] {
        conv2d_backward_input_kernel<scalar_t>(grad_output, weight, s, grad_input);
      });
  return grad_input;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_backward_input", &conv_ext::cpu::conv2d_backward_input_cpu);
}
