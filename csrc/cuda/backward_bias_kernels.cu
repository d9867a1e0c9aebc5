// Instantiates the grad-bias reduction kernels for the GPU.
#include "backward_bias.cuh"
#include "launchers.h"

namespace conv_ext::cuda {

void backward_bias(const at::Tensor& grad_output, at::Tensor& grad_bias) {
  launch_backward_bias(CudaLaunch{}, grad_output, grad_bias);
}

}  // namespace conv_ext::cuda
