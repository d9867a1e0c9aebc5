// grad_input = grad_output * act'(output) on the GPU: one grid-stride pass
// over dense tensors of one memory format (the op entry guarantees it).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>

#include "../activation.h"
#include "launch.cuh"
#include "launchers.h"

namespace conv_ext::cuda {
namespace {

constexpr int kActivationThreads = 256;

template <typename scalar_t>
struct ActivationBackwardParams {
  const scalar_t* grad_output;
  const scalar_t* output;
  scalar_t* grad_input;
  int64_t numel;
  Epilogue epilogue;
};

template <typename scalar_t>
__global__ void __launch_bounds__(kActivationThreads)
    activation_backward_kernel(const ActivationBackwardParams<scalar_t> p) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t step = int64_t{gridDim.x} * kActivationThreads;
  for (int64_t i = int64_t{blockIdx.x} * kActivationThreads + threadIdx.x;
       i < p.numel; i += step) {
    p.grad_input[i] = static_cast<scalar_t>(
        static_cast<acc_t>(p.grad_output[i]) *
        activation_grad(static_cast<acc_t>(p.output[i]), p.epilogue));
  }
}

}  // namespace

void activation_backward(
    const at::Tensor& grad_output,
    const at::Tensor& output,
    const Epilogue& epilogue,
    at::Tensor& grad_input) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, output.scalar_type(), "activation_backward_cuda",
      [&] {
        const ActivationBackwardParams<scalar_t> p{
            grad_output.const_data_ptr<scalar_t>(),
            output.const_data_ptr<scalar_t>(),
            grad_input.mutable_data_ptr<scalar_t>(), output.numel(), epilogue};
        CudaLaunch{}(
            activation_backward_kernel<scalar_t>,
            grid_stride_blocks(p.numel, kActivationThreads), kActivationThreads,
            p);
      });
}

}  // namespace conv_ext::cuda
