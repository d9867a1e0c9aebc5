// Instantiates the grad-input kernels (implicit GEMM, direct) for the GPU.
#include "backward_input.cuh"
#include "launchers.h"

namespace conv_ext::cuda {

void backward_input(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& grad_input) {
  launch_backward_input(CudaLaunch{}, grad_output, weight, s, algo, grad_input);
}

}  // namespace conv_ext::cuda
