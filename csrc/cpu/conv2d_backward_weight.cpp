// Grad weight on the CPU: a reduction over every output pixel of every image,
//   dw[K/G x C/G*R*S] += grad_output[K/G x pixels] * im2col(input)[pixels x C/G*R*S]
// The (image, pixel tile) pairs are cut into one fixed range per thread, each
// summed into its own buffer, and the buffers are added in a fixed order:
// no atomics, no false sharing, the same bits on every run.
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
void conv2d_backward_weight_kernel(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    at::Tensor& grad_weight) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t Cg = s.Cg(), Kg = s.Kg();
  const int64_t CRS = Cg * s.R * s.S;
  const int64_t PQ = s.P * s.Q;
  const int64_t wnumel = s.K * CRS;

  const int64_t tiles = (PQ + kTilePixels - 1) / kTilePixels;
  const int64_t work = s.N * tiles;
  const int64_t chunks = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), work));
  std::vector<acc_t> partial(chunks * wnumel, acc_t(0));

  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);

  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col(kTilePixels * CRS);
    std::vector<acc_t> dyt(Kg * kTilePixels);
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      acc_t* acc = partial.data() + chunk * wnumel;
      for (int64_t t = chunk * work / chunks; t < (chunk + 1) * work / chunks;
           ++t) {
        const int64_t n = t / tiles;
        const int64_t pq0 = (t % tiles) * kTilePixels;
        const int64_t rows = std::min(kTilePixels, PQ - pq0);
        for (int64_t g = 0; g < s.G; ++g) {
          gather_input_rows(x, xs, s, n, g, pq0, rows, col.data());
          for (int64_t kk = 0; kk < Kg; ++kk) {
            const scalar_t* yk = dy + n * ys.d0 + (g * Kg + kk) * ys.d1;
            for (int64_t j = 0; j < rows; ++j) {
              const int64_t p = (pq0 + j) / s.Q, q = (pq0 + j) % s.Q;
              dyt[kk * rows + j] = static_cast<acc_t>(yk[p * ys.d2 + q * ys.d3]);
            }
          }
          gemm_nn_acc(
              Kg, CRS, rows, dyt.data(), rows, col.data(), CRS,
              acc + g * Kg * CRS, CRS);
        }
      }
    }
  });

  scalar_t* dw = grad_weight.mutable_data_ptr<scalar_t>();
  const Strides4 ws(grad_weight);
  at::parallel_for(0, s.K, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t u = 0; u < s.S; ++u) {
            const int64_t e = k * CRS + (c * s.R + r) * s.S + u;
            acc_t sum = partial[e];
            for (int64_t chunk = 1; chunk < chunks; ++chunk)
              sum += partial[chunk * wnumel + e];
            dw[k * ws.d0 + c * ws.d1 + r * ws.d2 + u * ws.d3] =
                static_cast<scalar_t>(sum);
          }
  });
}

at::Tensor conv2d_backward_weight_cpu(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    at::IntArrayRef weight_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s = check_backward_weight(
      grad_output, input, weight_size, stride, padding, dilation, groups);
  const auto options = grad_output.options().memory_format(
      output_memory_format(grad_output, input));
  if (s.N == 0) {
    return at::zeros(weight_size, options);
  }
  at::Tensor grad_weight = at::empty(weight_size, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_weight_cpu", [&] {
        conv2d_backward_weight_kernel<scalar_t>(grad_output, input, s, grad_weight);
      });
  return grad_weight;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_backward_weight", &conv_ext::cpu::conv2d_backward_weight_cpu);
}
