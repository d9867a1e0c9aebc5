// The forward pass on the GPU: dtype dispatch, kernel parameters and grids
// for the chosen algorithm (heuristics.h), over a launch policy (launch.cuh).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include "direct_forward.cuh"
#include "heuristics.h"
#include "implicit_gemm_forward.cuh"
#include "launch.cuh"
#include "tensorop/forward.cuh"

namespace conv_ext::cuda {

// The tensor-core forward (tensorop/forward.cuh) for one tile; float runs
// TF32, the 16-bit types their own mma, float64 never comes here.
template <typename scalar_t, class Launch>
void launch_tensorop_forward(
    const Launch& launch,
    const at::Tensor& input,
    const at::Tensor& weight,
    const at::Tensor& bias,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& output,
    const Epilogue& epilogue) {
  if constexpr (std::is_same_v<scalar_t, double>) {
    TORCH_INTERNAL_ASSERT(false, "float64 has no tensor-core kernel");
  } else {
    const at::Tensor packed = tensorop::pack_forward_weight<scalar_t>(weight);
    const auto run = [&](auto tile) {
      using Tile = decltype(tile);
      const auto p = tensorop::make_forward_params<Tile, scalar_t>(
          input.const_data_ptr<scalar_t>(), strides_of(input), packed,
          bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
          bias.defined() ? bias.stride(0) : 0,
          output.mutable_data_ptr<scalar_t>(), strides_of(output), dims_of(s),
          epilogue);
      tensorop::launch_forward_params<Tile>(launch, p);
    };
    if (algo == ConvAlgo::kTensorOpLarge) {
      run(tensorop::LargeTensorTile{});
    } else {
      run(tensorop::SmallTensorTile{});
    }
  }
}

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
        } else if (is_tensor_op(algo)) {
          launch_tensorop_forward<scalar_t>(
              launch, input, weight, bias, s, algo, output, epilogue);
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
