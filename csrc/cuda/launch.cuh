// How a pass's kernels are launched, kept apart from what they compute.
// Each pass (forward.cuh, backward_*.cuh) is a template over a launch
// policy with one call operator,
//   launch(kernel, blocks, threads, params, dynamic_smem_bytes = 0)
// which runs `kernel(params)` on a 1-D grid. CudaLaunch below is the real
// one; the CPU emulation in tests/cuda_emulator/ supplies another so the
// same pass code (choices, parameters, buffers, grids) is exercised on
// machines without a GPU. Grids are 1-D throughout: gridDim.x allows
// 2^31 - 1 blocks where y and z stop at 65535.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

namespace conv_ext::cuda {

inline unsigned grid_size(int64_t blocks, const char* what) {
  TORCH_INTERNAL_ASSERT(blocks > 0, what, ": empty grid");
  TORCH_CHECK(
      blocks <= std::numeric_limits<int32_t>::max(), what, ": ", blocks,
      " thread blocks exceed one CUDA launch (2^31 - 1); the tensors are "
      "too large for this kernel");
  return static_cast<unsigned>(blocks);
}

// Shared memory a kernel may use without opting in to more.
constexpr int kStaticSharedLimit = 48 * 1024;

// Grid-stride kernels loop over any count; more blocks than this only add
// scheduling overhead.
constexpr int64_t kMaxGridStrideBlocks = int64_t{1} << 16;

inline int64_t grid_stride_blocks(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return blocks < kMaxGridStrideBlocks ? blocks : kMaxGridStrideBlocks;
}

}  // namespace conv_ext::cuda

#if defined(__CUDACC__)
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

namespace conv_ext::cuda {

// Launches on the current stream of the current device (the op entry holds
// a CUDAGuard on the tensors' device), so the work orders with the rest of
// PyTorch's and is captured by CUDA graphs. `smem_bytes` of dynamic shared
// memory (tensorop/: the cp.async ring); past the 48 KiB every kernel may
// take, the kernel must opt in, per device, before its launch.
struct CudaLaunch {
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  template <class Params>
  void operator()(
      void (*kernel)(Params),
      int64_t blocks,
      int threads,
      const Params& params,
      int smem_bytes = 0) const {
    if (smem_bytes > kStaticSharedLimit) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(
          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
    }
    kernel<<<grid_size(blocks, "conv_ext"), threads, smem_bytes, stream>>>(
        params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace conv_ext::cuda
#endif
