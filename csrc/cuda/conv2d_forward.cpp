// Forward on the GPU, the op entry: checks (csrc/conv_shape.h), device
// guard, allocation in nn.Conv2d's memory format, the kernel choice
// (heuristics.h). The kernels are in *.cuh, launched from forward_kernels.cu.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../conv_shape.h"
#include "heuristics.h"
#include "launchers.h"

namespace conv_ext::cuda {
namespace {

at::Tensor conv2d_forward_cuda(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    at::IntArrayRef stride,
    at::IntArrayRef padding,
    at::IntArrayRef dilation,
    int64_t groups) {
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
    // An empty image with padding: every tap reads padding.
    if (b.defined()) {
      return output.copy_(b.reshape({1, s.K, 1, 1}).expand_as(output));
    }
    return output.zero_();
  }
  // The kernels read the weight as K rows of C/G*R*S taps; it is small, so
  // one contiguous copy (a no-op when already contiguous) beats strided reads.
  forward(
      input, weight.contiguous(), b, s,
      choose_forward_algo(s, input.scalar_type()), output);
  return output;
}

}  // namespace
}  // namespace conv_ext::cuda

TORCH_LIBRARY_IMPL(conv_ext, CUDA, m) {
  m.impl("conv2d_forward", &conv_ext::cuda::conv2d_forward_cuda);
}
