// Grad bias on the CPU: the sum of grad_output over N, P and Q for each
// output channel. Each channel is summed by one thread in a fixed order, in
// double, so the result is reproducible and accurate for any dtype.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

#include "../conv_shape.h"
#include "conv_gemm.h"

namespace conv_ext::cpu {
namespace {

template <typename scalar_t>
void conv2d_backward_bias_kernel(const at::Tensor& grad_output, at::Tensor& grad_bias) {
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  const int64_t N = grad_output.size(0), K = grad_output.size(1);
  const int64_t P = grad_output.size(2), Q = grad_output.size(3);
  scalar_t* db = grad_bias.mutable_data_ptr<scalar_t>();
  // Eight partial sums per channel, position q feeding sum q % 8: eight
  // independent add chains instead of one latency-bound chain (a 4-cycle
  // add per element), and still one fixed order.
  constexpr int64_t kLanes = 8;
  if (ys.d1 == 1 && K > 1) {
    // Channels contiguous (channels_last): blocks of 64 channels per task,
    // each pixel adding a contiguous run; a channel at a time would stride
    // K elements per read (10 ms for r50_res2_1x1 in NHWC).
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (K + kBlock - 1) / kBlock;
    at::parallel_for(0, blocks, grain_for(N * P * Q * kBlock), [&](int64_t begin, int64_t end) {
      double part[kBlock];
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t k0 = blk * kBlock, nk = std::min(kBlock, K - k0);
        for (int64_t k = 0; k < nk; ++k) part[k] = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t p = 0; p < P; ++p)
            for (int64_t q = 0; q < Q; ++q) {
              const scalar_t* v = dy + n * ys.d0 + p * ys.d2 + q * ys.d3 + k0;
              for (int64_t k = 0; k < nk; ++k) part[k] += static_cast<double>(v[k]);
            }
        for (int64_t k = 0; k < nk; ++k) db[k0 + k] = static_cast<scalar_t>(part[k]);
      }
    });
    return;
  }
  at::parallel_for(0, K, grain_for(N * P * Q), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      double part[kLanes] = {};
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* row = dy + n * ys.d0 + k * ys.d1 + p * ys.d2;
          int64_t q = 0;
          if (ys.d3 == 1) {
            for (; q + kLanes <= Q; q += kLanes)
              for (int64_t l = 0; l < kLanes; ++l)
                part[l] += static_cast<double>(row[q + l]);
          }
          for (; q < Q; ++q) part[q % kLanes] += static_cast<double>(row[q * ys.d3]);
        }
      double sum = 0;
      for (int64_t l = 0; l < kLanes; ++l) sum += part[l];
      db[k] = static_cast<scalar_t>(sum);
    }
  });
}

at::Tensor conv2d_backward_bias_cpu(const at::Tensor& grad_output) {
  check_backward_bias(grad_output);
  at::Tensor grad_bias = at::empty({grad_output.size(1)}, grad_output.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_bias_cpu",
      [&] { conv2d_backward_bias_kernel<scalar_t>(grad_output, grad_bias); });
  return grad_bias;
}

}  // namespace
}  // namespace conv_ext::cpu

TORCH_LIBRARY_IMPL(conv_ext, CPU, m) {
  m.impl("conv2d_backward_bias", &conv_ext::cpu::conv2d_backward_bias_cpu);
}
