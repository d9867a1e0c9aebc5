// Grad weight on the GPU, the op entry: checks, device guard, allocation in
// nn.Conv2d's memory format, the kernel choice (heuristics.h). The kernels
// are in *.cuh, launched from backward_weight_kernels.cu.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../conv_shape.h"
#include "heuristics.h"
#include "math_mode.h"
#include "launchers.h"

namespace conv_ext::cuda {
namespace {

at::Tensor conv2d_backward_weight_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    at::IntArrayRef weight_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s = check_backward_weight(
      grad_output, input, weight_size, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const auto options = grad_output.options().memory_format(
      output_memory_format(grad_output, input));
  // No pixels, or an empty image (every tap reads padding): nothing to sum.
  if (s.N == 0 || input.numel() == 0) {
    return at::zeros(weight_size, options);
  }
  at::Tensor grad_weight = at::empty(weight_size, options);
  const ConvAlgo algo = choose_backward_weight_algo(
      s, grad_output.scalar_type(), current_math_mode());
  backward_weight(grad_output, input, s, algo, grad_weight);
  return grad_weight;
}

}  // namespace
}  // namespace conv_ext::cuda

TORCH_LIBRARY_IMPL(conv_ext, CUDA, m) {
  m.impl("conv2d_backward_weight", &conv_ext::cuda::conv2d_backward_weight_cuda);
}
