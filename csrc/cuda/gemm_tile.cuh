// The tile machinery every implicit GEMM of csrc/cuda/ shares: tile shapes,
// the shared-memory staging buffers, and the main loop that multiplies one
// BM x BN output tile over the reduction, BK at a time.
//
// Each pass supplies only its operand fetches (how element (k, row) of A and
// (k, col) of B are read from the convolution's tensors) and its epilogue.
// The main loop owns the shared-memory double buffer and every barrier, so
// the ordering that makes it race-free is written once, here.
#pragma once

#include <cstdint>
#include <type_traits>

namespace conv_ext::cuda {

// A block computes a BM x BN tile of C = A * B; each thread a TM x TN
// sub-tile whose rows are tm, tm + BM/TM, ... and columns tn, tn + BN/TN, ...
// (strided rather than contiguous, so a warp's shared-memory reads fall in
// distinct banks or broadcast).
template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct TileShape {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kRowThreads = BM / TM;  // threads along rows
  static constexpr int kColThreads = BN / TN;  // threads along columns
  static constexpr int kThreads = kRowThreads * kColThreads;
  // Operand loads in "k-fastest" order: thread t fetches reduction index
  // t % BK of rows / columns t / BK, t / BK + kKFastStride, ...
  static constexpr int kKFastStride = kThreads / BK;
  // Operand loads in "row-fastest" order: thread t fetches row t % BM at
  // reduction indices t / BM, t / BM + kRowFastStride, ...
  static constexpr int kRowFastStride = kThreads / BM;
  static constexpr int kRowFastLoads = BK / kRowFastStride;
  static constexpr int kAKFastLoads = BM / kKFastStride;
  static constexpr int kBKFastLoads = BN / kKFastStride;
  // Shared rows are padded so that the k-fastest stores of a warp, which
  // walk down a column, spread over banks instead of hitting one.
  static constexpr int kPad = 4;

  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split into threads");
  static_assert(kThreads % 32 == 0, "whole warps");
  static_assert(kThreads % BK == 0 && BM % kKFastStride == 0 &&
                    BN % kKFastStride == 0,
                "k-fastest loads must cover the tile exactly");
  static_assert(kThreads % BM == 0 && BK % kRowFastStride == 0,
                "row-fastest loads must cover the tile exactly");
};

// 128 x 128 tiles, 8 x 8 per thread: 64 FMAs per 16 shared loads, for
// problems wide enough to fill the GPU with them.
using LargeTile = TileShape<128, 128, 8, 8, 8>;
// 64 x 64 tiles, 4 x 4 per thread: four times the blocks for narrow or small
// problems, and few enough registers for double accumulators.
using SmallTile = TileShape<64, 64, 16, 4, 4>;

// 64 double accumulators per thread would exceed the register file's share
// of a 256-thread block: doubles always take the small tile.
template <typename acc_t>
using LargeTileFor =
    std::conditional_t<std::is_same_v<acc_t, double>, SmallTile, LargeTile>;

// Both operands stored k-major (a[k][row], b[k][col]) so that the inner
// product reads a row of each; two copies, one being filled while the other
// is multiplied.
template <typename acc_t, class T>
struct GemmSmem {
  acc_t a[2][T::BK][T::BM + T::kPad];
  acc_t b[2][T::BK][T::BN + T::kPad];
};

// Runs the reduction of one tile over `steps` (>= 1) slices of BK:
//   fetch(t): read slice t of A and B from global memory into the caller's
//             registers (called for t = 0, 1, 2, ... in order);
//   stash(buf): write those registers into sm.a[buf] and sm.b[buf].
// Slice t + 1 is fetched before slice t is multiplied, so global loads are in
// flight during the arithmetic. One barrier per slice suffices: the buffer a
// stash writes was last read in the previous iteration, and every thread has
// passed that iteration's closing barrier before any thread stashes.
template <class T, typename acc_t, class Fetch, class Stash>
__device__ __forceinline__ void gemm_mainloop(
    int64_t steps,
    GemmSmem<acc_t, T>& sm,
    acc_t (&acc)[T::TM][T::TN],
    Fetch&& fetch,
    Stash&& stash) {
  const int tm = threadIdx.x % T::kRowThreads;
  const int tn = threadIdx.x / T::kRowThreads;
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      acc[i][j] = acc_t(0);
    }
  }
  fetch(int64_t{0});
  stash(0);
  __syncthreads();
  for (int64_t t = 0; t < steps; ++t) {
    const int cur = static_cast<int>(t & 1);
    const bool more = t + 1 < steps;  // the same in every thread
    if (more) {
      fetch(t + 1);
    }
#pragma unroll
    for (int kk = 0; kk < T::BK; ++kk) {
      acc_t a[T::TM], b[T::TN];
#pragma unroll
      for (int i = 0; i < T::TM; ++i) {
        a[i] = sm.a[cur][kk][tm + i * T::kRowThreads];
      }
#pragma unroll
      for (int j = 0; j < T::TN; ++j) {
        b[j] = sm.b[cur][kk][tn + j * T::kColThreads];
      }
#pragma unroll
      for (int i = 0; i < T::TM; ++i) {
#pragma unroll
        for (int j = 0; j < T::TN; ++j) {
          acc[i][j] += a[i] * b[j];
        }
      }
    }
    if (more) {
      stash(cur ^ 1);
    }
    __syncthreads();
  }
}

}  // namespace conv_ext::cuda
