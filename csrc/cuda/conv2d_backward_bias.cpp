// Grad bias on the GPU, the op entry: checks, device guard, allocation. The
// reduction kernels are in reductions.cuh, launched from
// backward_bias_kernels.cu.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../conv_shape.h"
#include "launchers.h"

namespace conv_ext::cuda {
namespace {

at::Tensor conv2d_backward_bias_cuda(const at::Tensor& grad_output) {
  check_backward_bias(grad_output);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  at::Tensor grad_bias = at::empty({grad_output.size(1)}, grad_output.options());
  if (grad_bias.numel() == 0) {
    return grad_bias;
  }
  if (grad_output.numel() == 0) {
    return grad_bias.zero_();
  }
  backward_bias(grad_output, grad_bias);
  return grad_bias;
}

}  // namespace
}  // namespace conv_ext::cuda

TORCH_LIBRARY_IMPL(conv_ext, CUDA, m) {
  m.impl("conv2d_backward_bias", &conv_ext::cuda::conv2d_backward_bias_cuda);
}
