// Instantiates the forward kernels (implicit GEMM, direct) for the GPU.
#include "forward.cuh"
#include "launchers.h"

namespace conv_ext::cuda {

void forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const at::Tensor& bias,
    const ConvShape& s,
    ConvAlgo algo,
    at::Tensor& output,
    const Epilogue& epilogue) {
  launch_forward(CudaLaunch{}, input, weight, bias, s, algo, output, epilogue);
}

}  // namespace conv_ext::cuda
