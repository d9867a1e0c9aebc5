// Which CUDA kernel runs a convolution pass, and how the grad-weight and
// grad-bias reductions are split: every such decision, in one place.
//
// These rules are reasoned from the shape of the work and not yet measured;
// measured tile and split choices (an H100, benchmarks/) will replace them
// here.
#pragma once

#include <c10/core/ScalarType.h>

#include <algorithm>
#include <cstdint>

#include "../conv_shape.h"

namespace conv_ext::cuda {

enum class ConvAlgo {
  kDirect,         // one thread per output element (direct_*.cuh)
  kGemmSmall,      // implicit GEMM, 64 x 64 tiles (gemm_tile.cuh SmallTile)
  kGemmLarge,      // implicit GEMM, 128 x 128 tiles (LargeTile)
  kTensorOpSmall,  // tensor cores, 64 x 64 (tensorop/mainloop.cuh)
  kTensorOpLarge,  // tensor cores, 128 x 128 (LargeTensorTile)
};

// What the device and torch's settings allow, read by the op entries at
// call time (math_mode.h).
struct MathMode {
  bool tensor_cores = false;  // compute capability >= 8.0: mma.sync for
                              // tf32/bf16, cp.async (tensorop/ptx.cuh)
  bool allow_tf32 = false;    // torch.backends.cudnn.allow_tf32
};

// Tensor cores or exact arithmetic: the rule nn.Conv2d follows. float16 and
// bfloat16 always multiply on tensor cores (accumulating in float); float32
// does in TF32 when torch.backends.cudnn.allow_tf32 is True at call time (as
// cuDNN's convolution does; True by default), and in exact FP32 otherwise;
// float64 is always exact. Devices before sm_80 run everything on the SIMT
// kernels.
inline bool use_tensor_cores(at::ScalarType dtype, MathMode mode) {
  return mode.tensor_cores &&
      (dtype == at::kHalf || dtype == at::kBFloat16 ||
       (dtype == at::kFloat && mode.allow_tf32));
}

inline bool is_tensor_op(ConvAlgo algo) {
  return algo == ConvAlgo::kTensorOpSmall || algo == ConvAlgo::kTensorOpLarge;
}

// The implicit GEMMs tile the per-group channel dimension (K/G for forward
// and grad weight, C/G for grad input) by 64 or 128. Below 16 channels per
// group at least 3/4 of every tile would be padding: depthwise (1 channel)
// and small-group convolutions (grouped_3x3 has 4) instead run the direct
// kernels, which do exactly the useful multiply-adds and are bound by
// memory traffic, as such layers are on any kernel.
constexpr int64_t kDirectBelowChannelsPerGroup = 16;

// A 128 x 128 tile does 4x the work of a 64 x 64 one per block. It pays only
// when both GEMM sides are at least that wide and the grid still has about
// two blocks per SM of a large GPU (132 on an H100) to hide latency with.
constexpr int64_t kLargeTileMinBlocks = 256;

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// A GEMM of rows x cols per group, `groups` of them. With split_reduction
// (grad weight) the grid is also split along the reduction until it is full
// (backward_weight_chunks), so only the two sides matter. The tensor-core
// tiles have the same 64 / 128 sides, so the same arithmetic picks theirs.
inline ConvAlgo choose_gemm_tile(
    int64_t rows,
    int64_t cols,
    int64_t groups,
    at::ScalarType dtype,
    bool split_reduction,
    bool tensor_cores) {
  const ConvAlgo small =
      tensor_cores ? ConvAlgo::kTensorOpSmall : ConvAlgo::kGemmSmall;
  const ConvAlgo large =
      tensor_cores ? ConvAlgo::kTensorOpLarge : ConvAlgo::kGemmLarge;
  // Doubles always run small tiles (gemm_tile.cuh, LargeTileFor).
  if (dtype == at::kDouble || rows < 128 || cols < 128) {
    return small;
  }
  if (split_reduction) {
    return large;
  }
  const int64_t blocks = ceil_div(rows, 128) * ceil_div(cols, 128) * groups;
  return blocks >= kLargeTileMinBlocks ? large : small;
}

// The GEMMs index a filter's taps (C/G*R*S, or K/G*R*S for grad input) in
// 32 bits for fast division (conv_params.cuh, FastDivmod); filters with
// 2^30 taps or more (4 GiB of float per filter) take the direct kernels,
// which index in 64 bits throughout.
constexpr int64_t kMaxGemmTaps = int64_t{1} << 30;

inline ConvAlgo choose_forward_algo(
    const ConvShape& s,
    at::ScalarType dtype,
    MathMode mode) {
  if (s.Kg() < kDirectBelowChannelsPerGroup ||
      s.Cg() * s.R * s.S >= kMaxGemmTaps) {
    return ConvAlgo::kDirect;
  }
  return choose_gemm_tile(
      s.N * s.P * s.Q, s.Kg(), s.G, dtype, false,
      use_tensor_cores(dtype, mode));
}

inline ConvAlgo choose_backward_input_algo(
    const ConvShape& s,
    at::ScalarType dtype,
    MathMode mode) {
  if (s.Cg() < kDirectBelowChannelsPerGroup ||
      s.Kg() * s.R * s.S >= kMaxGemmTaps) {
    return ConvAlgo::kDirect;
  }
  return choose_gemm_tile(
      s.N * s.H * s.W, s.Cg(), s.G, dtype, false,
      use_tensor_cores(dtype, mode));
}

inline ConvAlgo choose_backward_weight_algo(
    const ConvShape& s,
    at::ScalarType dtype,
    MathMode mode) {
  if (s.Kg() < kDirectBelowChannelsPerGroup ||
      s.Cg() * s.R * s.S >= kMaxGemmTaps) {
    return ConvAlgo::kDirect;
  }
  return choose_gemm_tile(
      s.Kg(), s.Cg() * s.R * s.S, s.G, dtype, true,
      use_tensor_cores(dtype, mode));
}

// Grad weight and grad bias reduce over all N*P*Q output pixels. The pixels
// are cut into chunks, one partial result per chunk, so that the grid has
// about kTargetBlocks blocks; a chunk keeps at least kMinChunkPixels pixels
// (enough work to amortize a block's set-up), and the partial buffers stay
// under kMaxPartialElements (128 MiB of float). The split depends on the
// shape alone, never on the card, so the bits do not either.
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kMinChunkPixels = 256;
constexpr int64_t kMaxPartialElements = int64_t{1} << 25;

inline int64_t reduction_chunks(
    int64_t pixels,
    int64_t blocks_per_chunk,
    int64_t partial_per_chunk) {
  int64_t chunks = ceil_div(kTargetBlocks, blocks_per_chunk);
  chunks = std::min(chunks, pixels / kMinChunkPixels);
  chunks = std::min(chunks, kMaxPartialElements / partial_per_chunk);
  return std::max<int64_t>(chunks, 1);
}

inline int64_t backward_weight_chunks(const ConvShape& s, ConvAlgo algo) {
  const int64_t crs = s.Cg() * s.R * s.S;
  int64_t blocks_per_chunk = s.K;  // direct: one block per output channel
  if (algo != ConvAlgo::kDirect) {
    const int64_t tile =
        algo == ConvAlgo::kGemmLarge || algo == ConvAlgo::kTensorOpLarge ? 128
                                                                           : 64;
    blocks_per_chunk = ceil_div(s.Kg(), tile) * ceil_div(crs, tile) * s.G;
  }
  return reduction_chunks(s.N * s.P * s.Q, blocks_per_chunk, s.K * crs);
}

// Grad bias reads each grad_output element once: a fixed chunk of pixels
// per block is simplest, and the partial buffer (K per chunk) is at most
// 1/kBiasChunkPixels of grad_output.
constexpr int64_t kBiasChunkPixels = 4096;

}  // namespace conv_ext::cuda
