// The tensor-core GEMM room: tile shapes, the shared-memory ring, and the one
// pipelined main loop every tensor-core convolution pass runs.
//
//   C[BM x BN] += A[BM x K] * B[K x BN], accumulated in float, BK at a time.
//
// Shared memory holds both operands "k-contiguous": row i of the A stage is
// output row i's BK reduction elements, row j of the B stage is output column
// j's. Each row is 64 bytes (BK = 16 floats or 32 halves) padded to 80, so
// that the eight 16-byte rows one ldmatrix phase reads start at 0, 80, 160,
// ... = 0, 5, 2, 7, 4, 1, 6, 3 (x 16 bytes, mod 128): eight distinct bank
// groups, no conflict. 80 is a multiple of 16, so 16-byte cp.async stores
// stay aligned.
//
// Fragments come from ldmatrix (non-transposed) for every element type: a
// 16-byte row of an 8x8 b16 matrix is 4 floats, and the lane that receives
// b16 columns 2*(l%4), 2*(l%4)+1 of row l/4 receives float l%4 of that row,
// which is exactly the tf32 m16n8k8 fragment (PTX ISA, "Matrix Fragments for
// mma.m16n8k8"); for b16 types it is the m16n8k16 fragment. TF32 operands
// are rounded with cvt.rna after the load (cp.async cannot convert).
//
// Tiles (warps laid out WARPS_M x WARPS_N, each a WM x WN warp tile made of
// (WM/16) x (WN/8) mma tiles; one k-step is 8 (tf32) or 16 (b16) reduction
// elements, two k-steps per BK):
//   Large: 128 x 128 block, 8 warps 2 x 4 of 64 x 32, 256 threads, 3 stages.
//          Accumulators 64 floats per thread, fragments 4x4 + 4x2 registers
//          per k-step, staging <= 16 registers (16-bit generic fetch);
//          ptxas reports the totals (README, CUDA section). Shared memory:
//          3 x (128 + 128) x 80 B = 60 KiB, dynamic (over the 48 KiB static
//          limit); compiled for one block per SM (up to 255 registers;
//          ptxas takes about 150-170, no spills).
//   Small:  64 x 64 block, 4 warps 2 x 2 of 32 x 32, 128 threads, 4 stages.
//          Accumulators 32 floats per thread, <= 128 registers (four blocks
//          per SM). Shared memory: 4 x (64 + 64) x 80 B = 40 KiB.
//
// The main loop owns every cp.async commit/wait and every barrier; a pass
// supplies only its operand fetches (issue cp.async into a stage, or load
// registers and stash them afterwards) and its epilogue.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ptx.cuh"

namespace conv_ext::cuda::tensorop {

constexpr int kRowBytes = 64;     // BK elements of one operand row
constexpr int kRowPitch = 80;     // padded: conflict-free ldmatrix phases
constexpr int kChunksPerRow = kRowBytes / 16;

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct TensorTile {
  static constexpr int BM = BM_, BN = BN_, STAGES = STAGES_;
  // Blocks per SM the kernel is compiled for (__launch_bounds__): caps the
  // registers at 64K / (kThreads * kMinBlocks).
  static constexpr int kMinBlocks = MIN_BLOCKS_;
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MI = WM / 16;  // mma tiles per warp along M
  static constexpr int NI = WN / 8;   // and along N
  static constexpr int kStageBytes = (BM + BN) * kRowPitch;
  static constexpr int kSmemBytes = STAGES * kStageBytes;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "B is loaded two n8 tiles at once");
  static_assert(STAGES >= 2, "a ring needs two stages");
  static_assert(kThreads % BM == 0 && kThreads % BN == 0, "row-fastest fetches");
};

// Large: one block per SM as far as registers go (ptxas's own choice of 128
// registers, two blocks, spilled the accumulators of some variants);
// Small: four blocks of 128 threads, <= 128 registers.
using LargeTensorTile = TensorTile<128, 128, 2, 4, 3, 1>;
using SmallTensorTile = TensorTile<64, 64, 2, 2, 4, 4>;

// Per element type: the mma shape and how a fragment register is finished.
template <typename scalar_t>
struct MmaOp;

template <>
struct MmaOp<float> {
  static constexpr int kBK = kRowBytes / 4;  // 16 floats per stage row
  static constexpr int kVec = 4;             // elements per 16 bytes
  __device__ __forceinline__ static uint32_t operand(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return ptx::to_tf32(f);
  }
  __device__ __forceinline__ static void mma(
      float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    const float c[4] = {d[0], d[1], d[2], d[3]};
    ptx::mma_tf32_m16n8k8(d, a, b, c);
  }
};

template <typename half_t>
struct MmaOp16 {
  static constexpr int kBK = kRowBytes / 2;  // 32 halves per stage row
  static constexpr int kVec = 8;
  __device__ __forceinline__ static uint32_t operand(uint32_t bits) {
    return bits;
  }
};

template <>
struct MmaOp<c10::BFloat16> : MmaOp16<c10::BFloat16> {
  __device__ __forceinline__ static void mma(
      float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    const float c[4] = {d[0], d[1], d[2], d[3]};
    ptx::mma_bf16_m16n8k16(d, a, b, c);
  }
};

template <>
struct MmaOp<c10::Half> : MmaOp16<c10::Half> {
  __device__ __forceinline__ static void mma(
      float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    const float c[4] = {d[0], d[1], d[2], d[3]};
    ptx::mma_f16_m16n8k16(d, a, b, c);
  }
};

// Where an operand element (row, k) of a stage lives.
__device__ __forceinline__ unsigned char* stage_row(unsigned char* base, int row) {
  return base + row * kRowPitch;
}

template <class Tile>
struct Stages {
  unsigned char* smem;
  __device__ __forceinline__ unsigned char* a(int stage) const {
    return smem + stage * Tile::kStageBytes;
  }
  __device__ __forceinline__ unsigned char* b(int stage) const {
    return a(stage) + Tile::BM * kRowPitch;
  }
};

// The warp's part of the block tile, and the C fragment of each mma tile:
// acc[i][j][0..1] at row l/4, columns 2*(l%4) + {0, 1}; [2..3] at row l/4 + 8
// (PTX ISA, "Matrix Fragments for mma.m16n8k8", C/D layout).
template <class Tile>
struct WarpCoords {
  int m0, n0;  // first row and column of the warp tile within the block tile
  __device__ __forceinline__ WarpCoords() {
    const int warp = threadIdx.x / 32;
    m0 = (warp % Tile::WARPS_M) * Tile::WM;
    n0 = (warp / Tile::WARPS_M) * Tile::WN;
  }
  __device__ __forceinline__ int row(int i, int half) const {
    return m0 + i * 16 + static_cast<int>(threadIdx.x % 32) / 4 + 8 * half;
  }
  __device__ __forceinline__ int col(int j, int e) const {
    return n0 + j * 8 + 2 * (static_cast<int>(threadIdx.x % 32) % 4) + e;
  }
};

// Multiplies one stage: two k-steps of (MI x NI) mma per warp.
template <class Tile, typename scalar_t>
__device__ __forceinline__ void multiply_stage(
    const unsigned char* a_stage,
    const unsigned char* b_stage,
    const WarpCoords<Tile>& w,
    float (&acc)[Tile::MI][Tile::NI][4]) {
  using Op = MmaOp<scalar_t>;
  const int lane = threadIdx.x % 32;
  const int mat = lane / 8;  // which 8x8 matrix this lane addresses
  const int mrow = lane % 8;
#pragma unroll
  for (int ks = 0; ks < 2; ++ks) {
    uint32_t a[Tile::MI][4];
    uint32_t b[Tile::NI][2];
    // A, x4: matrices (rows 0-7, k lo), (rows 8-15, k lo), (0-7, hi),
    // (8-15, hi) give registers a0..a3 of the fragment.
#pragma unroll
    for (int i = 0; i < Tile::MI; ++i) {
      const int row = w.m0 + i * 16 + mrow + 8 * (mat % 2);
      const int chunk = 2 * ks + mat / 2;
      ptx::ldmatrix_x4(a[i], a_stage + row * kRowPitch + chunk * 16);
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        a[i][r] = Op::operand(a[i][r]);
      }
    }
    // B, x4 over two n8 tiles: (cols 0-7, k lo), (0-7, hi), (8-15, lo),
    // (8-15, hi) give b0, b1 of tile j and of tile j + 1.
#pragma unroll
    for (int j = 0; j < Tile::NI; j += 2) {
      const int col = w.n0 + j * 8 + mrow + 8 * (mat / 2);
      const int chunk = 2 * ks + mat % 2;
      uint32_t r[4];
      ptx::ldmatrix_x4(r, b_stage + col * kRowPitch + chunk * 16);
      b[j][0] = Op::operand(r[0]);
      b[j][1] = Op::operand(r[1]);
      b[j + 1][0] = Op::operand(r[2]);
      b[j + 1][1] = Op::operand(r[3]);
    }
#pragma unroll
    for (int i = 0; i < Tile::MI; ++i) {
#pragma unroll
      for (int j = 0; j < Tile::NI; ++j) {
        Op::mma(acc[i][j], a[i], b[j]);
      }
    }
  }
}

// Runs the reduction of one block tile over `steps` (>= 0) slices of BK:
//   fetch(t, a_stage, b_stage): start bringing slice t into the stage, by
//       cp.async (lands at the main loop's wait) and/or into the caller's
//       registers;
//   stash(a_stage, b_stage): store those registers into the stage (nothing
//       for a pure cp.async fetch).
// The ring: slices 0..STAGES-2 are in flight before the loop; at step t the
// loop waits for slice t (every older group retired), passes a barrier
// (slice t visible to all; every thread done with step t-1, whose stage is
// the one slice t+STAGES-1 now overwrites), issues that slice, multiplies
// slice t, and stashes slice t+STAGES-1's registers after the arithmetic
// so that their global loads overlap it. One commit per step, even an empty
// one, keeps the wait count fixed.
template <class Tile, typename scalar_t, class Fetch, class Stash>
__device__ __forceinline__ void tensorop_mainloop(
    int64_t steps,
    float (&acc)[Tile::MI][Tile::NI][4],
    Fetch&& fetch,
    Stash&& stash) {
  const Stages<Tile> ring{dynamic_smem<unsigned char>()};
  const WarpCoords<Tile> w;
#pragma unroll
  for (int i = 0; i < Tile::MI; ++i) {
#pragma unroll
    for (int j = 0; j < Tile::NI; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        acc[i][j][e] = 0.0f;
      }
    }
  }
#pragma unroll
  for (int s = 0; s < Tile::STAGES - 1; ++s) {
    if (s < steps) {
      fetch(int64_t{s}, ring.a(s), ring.b(s));
      stash(ring.a(s), ring.b(s));
    }
    ptx::cp_async_commit();
  }
  int read = 0;                     // stage of slice t
  int write = Tile::STAGES - 1;     // stage of slice t + STAGES - 1
  for (int64_t t = 0; t < steps; ++t) {
    ptx::cp_async_wait<Tile::STAGES - 2>();
    __syncthreads();
    const int64_t next = t + Tile::STAGES - 1;
    const bool more = next < steps;  // the same in every thread
    if (more) {
      fetch(next, ring.a(write), ring.b(write));
    }
    ptx::cp_async_commit();
    multiply_stage<Tile, scalar_t>(ring.a(read), ring.b(read), w, acc);
    if (more) {
      stash(ring.a(write), ring.b(write));
    }
    read = read + 1 == Tile::STAGES ? 0 : read + 1;
    write = write + 1 == Tile::STAGES ? 0 : write + 1;
  }
  // No cp.async may still write shared memory when the block exits.
  ptx::cp_async_wait_all();
}

}  // namespace conv_ext::cuda::tensorop
