// The forward pass on the GPU: dtype dispatch, kernel parameters and grids
// for the chosen algorithm (heuristics.h), over a launch policy (launch.cuh).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "direct_forward.cuh"
#include "heuristics.h"
#include "implicit_gemm_forward.cuh"
#include "launch.cuh"

namespace conv_ext::cuda {

// weight must be contiguous; bias undefined or a K-vector; output allocated,
// non-empty.
template <class Launch>
void launch_forward(
    const Launch& launch,
    const at::Tensor& input,
    const at::Tensor& weight,
    const at::Tensor& bias,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& output,
    const Epilogue& epilogue = Epilogue{}) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "conv2d_forward_cuda",
      [&] {
        if (algo == ConvAlgo::kDirect) {
          const int64_t total = output.numel();
          if (fits_uint31(total)) {
            auto p = make_direct_forward_params<scalar_t, uint32_t>(
                input, weight, bias, s, output, epilogue);
            launch(direct_forward_kernel<scalar_t, uint32_t>,
                   grid_stride_blocks(total, kDirectThreads), kDirectThreads, p);
          } else {
            auto p = make_direct_forward_params<scalar_t, int64_t>(
                input, weight, bias, s, output, epilogue);
            launch(direct_forward_kernel<scalar_t, int64_t>,
                   grid_stride_blocks(total, kDirectThreads), kDirectThreads, p);
          }
        } else if (algo == ConvAlgo::kGemmLarge) {
          using T = LargeTileFor<scalar_t>;
          auto p = make_forward_gemm_params<T, scalar_t>(
              input, weight, bias, s, output, epilogue);
          launch(implicit_gemm_forward_kernel<scalar_t, T>,
                 forward_gemm_blocks<T>(p), T::kThreads, p);
        } else {
          using T = SmallTile;
          auto p = make_forward_gemm_params<T, scalar_t>(
              input, weight, bias, s, output, epilogue);
          launch(implicit_gemm_forward_kernel<scalar_t, T>,
                 forward_gemm_blocks<T>(p), T::kThreads, p);
        }
      });
}

}  // namespace conv_ext::cuda
