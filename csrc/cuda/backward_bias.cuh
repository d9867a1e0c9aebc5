// The grad-bias pass on the GPU: per-(channel, chunk) sums of grad_output
// (bias_partial_kernel), then the chunks added in order (partials.cuh).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "heuristics.h"
#include "launch.cuh"
#include "partials.cuh"
#include "reductions.cuh"

namespace conv_ext::cuda {

template <typename scalar_t, typename index_t, class Launch>
void launch_backward_bias_typed(
    const Launch& launch,
    const at::Tensor& grad_output,
    at::Tensor& grad_bias) {
  BiasPartialParams<scalar_t, index_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.ys = strides_of(grad_output);
  p.K = grad_output.size(1);
  p.L = grad_output.size(0) * grad_output.size(2) * grad_output.size(3);
  p.chunk_len = kBiasChunkPixels;
  p.chunks = ceil_div(p.L, p.chunk_len);
  p.pq_div = Divmod<index_t>(grad_output.size(2) * grad_output.size(3));
  p.q_div = Divmod<index_t>(grad_output.size(3));
  at::Tensor partial = partial_buffer<scalar_t>(grad_output, p.chunks * p.K);
  p.partial = partial.mutable_data_ptr<at::opmath_type<scalar_t>>();
  launch(bias_partial_kernel<scalar_t, index_t>, p.chunks * p.K,
         kReduceThreads, p);
  launch_reduce_partials<scalar_t>(
      launch, partial, p.chunks, grad_bias, {grad_bias.stride(0), 0, 0, 0}, 1,
      1, 1);
}

// grad_output non-empty; grad_bias allocated (K).
template <class Launch>
void launch_backward_bias(
    const Launch& launch,
    const at::Tensor& grad_output,
    at::Tensor& grad_bias) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_bias_cuda", [&] {
        if (fits_uint31(grad_output.numel() / grad_output.size(1))) {
          launch_backward_bias_typed<scalar_t, uint32_t>(
              launch, grad_output, grad_bias);
        } else {
          launch_backward_bias_typed<scalar_t, int64_t>(
              launch, grad_output, grad_bias);
        }
      });
}

}  // namespace conv_ext::cuda
