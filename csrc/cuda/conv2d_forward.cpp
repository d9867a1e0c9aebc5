// Forward on the GPU, the op entry: checks (csrc/conv_shape.h), device
// guard, allocation in nn.Conv2d's memory format, the kernel choice
// (heuristics.h). The kernels are in *.cuh, launched from forward_kernels.cu.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../activation.h"
#include "../conv_shape.h"
#include "heuristics.h"
#include "math_mode.h"
#include "launchers.h"

namespace conv_ext::cuda {
namespace {

at::Tensor forward_with_epilogue(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups,
    const Epilogue& epilogue) {
  const ConvShape s =
      check_forward(input, weight, bias, stride, padding, dilation, groups);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty(
      {s.N, s.K, s.P, s.Q},
      input.options().memory_format(output_memory_format(input, weight)));
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  if (input.numel() == 0) {
    // An empty image with padding: every tap reads padding, so each output
    // channel is its activated bias (or activated zero) everywhere.
    at::Tensor fill = b.defined()
        ? b.to(at::kCPU, at::kDouble)
        : at::zeros({s.K}, at::TensorOptions().dtype(at::kDouble));
    auto v = fill.accessor<double, 1>();
    for (int64_t k = 0; k < s.K; ++k) {
      v[k] = activate(v[k], epilogue);
    }
    fill = fill.to(output.device(), output.scalar_type());
    return output.copy_(fill.reshape({1, s.K, 1, 1}).expand_as(output));
  }
  // The kernels read the weight as K rows of C/G*R*S taps; it is small, so
  // one contiguous copy (a no-op when already contiguous) beats strided reads.
  const ConvAlgo algo =
      choose_forward_algo(s, input.scalar_type(), current_math_mode());
  forward(input, weight.contiguous(), b, s, algo, output, epilogue);
  return output;
}

at::Tensor conv2d_forward_cuda(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
  return forward_with_epilogue(
      input, weight, bias, stride, padding, dilation, groups, Epilogue{});
}

at::Tensor conv2d_forward_activation_cuda(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups,
    c10::string_view activation,
    double negative_slope) {
  return forward_with_epilogue(
      input, weight, bias, stride, padding, dilation, groups,
      make_epilogue(std::string(activation), negative_slope));
}

}  // namespace
}  // namespace conv_ext::cuda

TORCH_LIBRARY_IMPL(conv_ext, CUDA, m) {
  m.impl("conv2d_forward", &conv_ext::cuda::conv2d_forward_cuda);
  m.impl(
      "conv2d_forward_activation",
      &conv_ext::cuda::conv2d_forward_activation_cuda);
}
