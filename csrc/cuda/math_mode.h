// The MathMode (heuristics.h) of a call: whether the current device has the
// tensor-core instructions of tensorop/ (sm_80 and newer), and whether
// float32 may use TF32, read at call time from torch.backends.cudnn.allow_tf32
// (torch.backends.cudnn.conv.fp32_precision in torch's newer spelling), as
// nn.Conv2d reads it.
#pragma once

#include <ATen/Context.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>

#include "heuristics.h"

namespace conv_ext::cuda {

inline MathMode current_math_mode() {
  MathMode mode;
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(
      &major, cudaDevAttrComputeCapabilityMajor, c10::cuda::current_device()));
  mode.tensor_cores = major >= 8;
  mode.allow_tf32 = at::globalContext().allowTF32CuDNN(at::Float32Op::CONV);
  return mode;
}

}  // namespace conv_ext::cuda
