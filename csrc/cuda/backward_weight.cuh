// The grad-weight pass on the GPU: per-chunk partial sums (implicit GEMM or
// direct kernel, heuristics.h) into a scratch buffer in the accumulation
// type, then reduce_partials_kernel adds the chunks in order and writes the
// result through grad_weight's strides (partials.cuh).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "direct_backward_weight.cuh"
#include "heuristics.h"
#include "implicit_gemm_backward_weight.cuh"
#include "launch.cuh"
#include "partials.cuh"
#include "tensorop/backward_weight.cuh"

namespace conv_ext::cuda {

template <class T, typename scalar_t, class Launch>
void launch_backward_weight_gemm(
    const Launch& launch,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    int64_t chunks,
    at::Tensor& grad_weight) {
  auto p = make_backward_weight_gemm_params<T, scalar_t>(
      grad_output, input, s, chunks);
  at::Tensor partial = partial_buffer<scalar_t>(
      grad_output, p.chunks * s.K * int64_t{p.crs});
  p.partial = partial.mutable_data_ptr<at::opmath_type<scalar_t>>();
  launch(implicit_gemm_backward_weight_kernel<scalar_t, T>,
         backward_weight_gemm_blocks<T>(p), T::kThreads, p);
  launch_reduce_partials<scalar_t>(
      launch, partial, p.chunks, grad_weight, strides_of(grad_weight),
      p.crs, s.R * s.S, s.S);
}

// The tensor-core grad weight (tensorop/backward_weight.cuh): float partials,
// reduced in chunk order as the SIMT GEMM's.
template <class Tile, typename scalar_t, class Launch>
void launch_backward_weight_tensorop(
    const Launch& launch,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    int64_t chunks,
    at::Tensor& grad_weight) {
  auto p = tensorop::make_backward_weight_params<Tile, scalar_t>(
      grad_output, input, s, chunks);
  at::Tensor partial = partial_buffer<scalar_t>(
      grad_output, p.chunks * s.K * int64_t{p.crs});
  p.partial = partial.mutable_data_ptr<float>();
  launch(tensorop::tensorop_backward_weight_kernel<scalar_t, Tile>,
         tensorop::backward_weight_blocks<Tile>(p), Tile::kThreads, p,
         Tile::kSmemBytes);
  launch_reduce_partials<scalar_t>(
      launch, partial, p.chunks, grad_weight, strides_of(grad_weight),
      p.crs, s.R * s.S, s.S);
}

template <typename scalar_t, typename index_t, class Launch>
void launch_backward_weight_direct(
    const Launch& launch,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    int64_t chunks,
    at::Tensor& grad_weight) {
  auto p = make_direct_backward_weight_params<scalar_t, index_t>(
      grad_output, input, s, chunks);
  at::Tensor partial =
      partial_buffer<scalar_t>(grad_output, p.chunks * s.K * p.crs);
  p.partial = partial.mutable_data_ptr<at::opmath_type<scalar_t>>();
  launch(direct_backward_weight_kernel<scalar_t, index_t>, p.chunks * s.K,
         kReduceThreads, p);
  launch_reduce_partials<scalar_t>(
      launch, partial, p.chunks, grad_weight, strides_of(grad_weight), p.crs,
      s.R * s.S, s.S);
}

// grad_weight allocated; N > 0. `chunks` splits the N*P*Q reduction
// (heuristics.h, backward_weight_chunks).
template <class Launch>
void launch_backward_weight(
    const Launch& launch,
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    ConvAlgo algo,
    int64_t chunks,
    at::Tensor& grad_weight) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_weight_cuda", [&] {
        if (algo == ConvAlgo::kDirect) {
          if (fits_uint31(s.N * s.P * s.Q)) {
            launch_backward_weight_direct<scalar_t, uint32_t>(
                launch, grad_output, input, s, chunks, grad_weight);
          } else {
            launch_backward_weight_direct<scalar_t, int64_t>(
                launch, grad_output, input, s, chunks, grad_weight);
          }
        } else if (is_tensor_op(algo)) {
          if constexpr (std::is_same_v<scalar_t, double>) {
            TORCH_INTERNAL_ASSERT(false, "float64 has no tensor-core kernel");
          } else if (algo == ConvAlgo::kTensorOpLarge) {
            launch_backward_weight_tensorop<tensorop::LargeTensorTile, scalar_t>(
                launch, grad_output, input, s, chunks, grad_weight);
          } else {
            launch_backward_weight_tensorop<tensorop::SmallTensorTile, scalar_t>(
                launch, grad_output, input, s, chunks, grad_weight);
          }
        } else if (algo == ConvAlgo::kGemmLarge) {
          launch_backward_weight_gemm<LargeTileFor<scalar_t>, scalar_t>(
              launch, grad_output, input, s, chunks, grad_weight);
        } else {
          launch_backward_weight_gemm<SmallTile, scalar_t>(
              launch, grad_output, input, s, chunks, grad_weight);
        }
      });
}

}  // namespace conv_ext::cuda
