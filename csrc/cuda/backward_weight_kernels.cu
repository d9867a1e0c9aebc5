// Instantiates the grad-weight kernels (implicit GEMM, direct, chunk
// reduction) for the GPU.
#include "backward_weight.cuh"
#include "launchers.h"

namespace conv_ext::cuda {

void backward_weight(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& grad_weight) {
  launch_backward_weight(
      CudaLaunch{}, grad_output, input, s, algo,
      backward_weight_chunks(s, algo), grad_weight);
}

}  // namespace conv_ext::cuda
