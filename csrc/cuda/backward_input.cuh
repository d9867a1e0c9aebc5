// The grad-input pass on the GPU: dtype dispatch, kernel parameters and
// grids for the chosen algorithm (heuristics.h), over a launch policy.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "direct_backward_input.cuh"
#include "heuristics.h"
#include "implicit_gemm_backward_input.cuh"
#include "launch.cuh"
#include "tensorop/backward_input.cuh"

namespace conv_ext::cuda {

// weight must be contiguous; grad_input allocated, non-empty.
template <class Launch>
void launch_backward_input(
    const Launch& launch,
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_output.scalar_type(),
      "conv2d_backward_input_cuda", [&] {
        if (algo == ConvAlgo::kDirect) {
          const int64_t total = grad_input.numel();
          if (fits_uint31(total)) {
            auto p = make_direct_backward_input_params<scalar_t, uint32_t>(
                grad_output, weight, s, grad_input);
            launch(direct_backward_input_kernel<scalar_t, uint32_t>,
                   grid_stride_blocks(total, kDirectThreads), kDirectThreads, p);
          } else {
            auto p = make_direct_backward_input_params<scalar_t, int64_t>(
                grad_output, weight, s, grad_input);
            launch(direct_backward_input_kernel<scalar_t, int64_t>,
                   grid_stride_blocks(total, kDirectThreads), kDirectThreads, p);
          }
        } else if (is_tensor_op(algo)) {
          if constexpr (std::is_same_v<scalar_t, double>) {
            TORCH_INTERNAL_ASSERT(false, "float64 has no tensor-core kernel");
          } else if (algo == ConvAlgo::kTensorOpLarge) {
            tensorop::launch_backward_input<tensorop::LargeTensorTile, scalar_t>(
                launch, grad_output, weight, s, grad_input);
          } else {
            tensorop::launch_backward_input<tensorop::SmallTensorTile, scalar_t>(
                launch, grad_output, weight, s, grad_input);
          }
        } else if (algo == ConvAlgo::kGemmLarge) {
          using T = LargeTileFor<scalar_t>;
          auto p = make_backward_input_gemm_params<T, scalar_t>(
              grad_output, weight, s, grad_input);
          launch(implicit_gemm_backward_input_kernel<scalar_t, T>,
                 backward_input_gemm_blocks<T>(p), T::kThreads, p);
        } else {
          using T = SmallTile;
          auto p = make_backward_input_gemm_params<T, scalar_t>(
              grad_output, weight, s, grad_input);
          launch(implicit_gemm_backward_input_kernel<scalar_t, T>,
                 backward_input_gemm_blocks<T>(p), T::kThreads, p);
        }
      });
}

}  // namespace conv_ext::cuda
