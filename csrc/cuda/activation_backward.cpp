// The gradient of a fused activation on the GPU, the op entry: checks,
// device guard, one memory format for the three tensors.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../activation.h"
#include "../conv_shape.h"
#include "launchers.h"

namespace conv_ext::cuda {
namespace {

at::Tensor activation_backward_cuda(
    const at::Tensor& grad_output,
    const at::Tensor& output,
    c10::string_view activation,
    double negative_slope) {
  const Epilogue e = make_epilogue(std::string(activation), negative_slope);
  check_activation_backward(grad_output, output);
  const c10::cuda::CUDAGuard guard(output.device());
  const auto fmt = output.suggest_memory_format();
  const at::Tensor g = grad_output.contiguous(fmt);
  const at::Tensor y = output.contiguous(fmt);
  at::Tensor grad_input = at::empty(y.sizes(), y.options().memory_format(fmt));
  if (grad_input.numel() > 0) {
    activation_backward(g, y, e, grad_input);
  }
  return grad_input;
}

}  // namespace
}  // namespace conv_ext::cuda

TORCH_LIBRARY_IMPL(conv_ext, CUDA, m) {
  m.impl("activation_backward", &conv_ext::cuda::activation_backward_cuda);
}
