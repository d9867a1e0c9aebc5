// Grad input on the GPU, the op entry: checks, device guard, allocation in
// nn.Conv2d's memory format, the kernel choice (heuristics.h). The kernels
// are in *.cuh, launched from backward_input_kernels.cu.
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

at::Tensor conv2d_backward_input_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    at::IntArrayRef input_size,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  const ConvShape s = check_backward_input(
      grad_output, weight, input_size, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(grad_output.device());
  const auto options = grad_output.options().memory_format(
      output_memory_format(grad_output, weight));
  if (s.N * s.C * s.H * s.W == 0) {
    return at::zeros(input_size, options);
  }
  // Every grad_input element is written by the kernel (0 where no tap
  // reached it), so no zero fill is needed.
  at::Tensor grad_input = at::empty(input_size, options);
  const ConvAlgo algo = choose_backward_input_algo(
      s, grad_output.scalar_type(), current_math_mode());
  backward_input(grad_output, weight.contiguous(), s, algo, grad_input);
  return grad_input;
}

}  // namespace
}  // namespace conv_ext::cuda

TORCH_LIBRARY_IMPL(conv_ext, CUDA, m) {
  m.impl("conv2d_backward_input", &conv_ext::cuda::conv2d_backward_input_cuda);
}
