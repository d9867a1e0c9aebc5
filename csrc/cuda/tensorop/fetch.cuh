// How an operand slice (ROWS rows x BK reduction elements) travels from
// global memory into a stage of the ring (mainloop.cuh). A pass describes
// its operand by one function, offset(slot, row, k) -> element offset from a
// base pointer, or -1 where the element is zero (padding, image edges, past
// the reduction or the rows); the policies below decide which thread copies
// which elements and how. A thread always copies the same kRows rows of a
// slice, rows slot_row(0..kRows-1), and names them by slot, so that a pass
// decodes each row's coordinates once per tile, not once per copy.
//
//   Vec16Fetch     16-byte cp.async (4 floats, 8 halves) per copy: for a
//                  reduction run that is contiguous and 16-byte aligned in
//                  memory (channels_last with C/G a multiple of 4 floats or
//                  8 halves, and the packed weights). The pass guarantees
//                  that a chunk of kVec elements is all valid or all zero.
//   ElementFetch   one element per copy, for any layout and channel count:
//                  4-byte cp.async with zero-fill for float; for 16-bit
//                  types (below cp.async's 4-byte minimum) a register load
//                  now and a shared store after the stage's arithmetic.
//
// ElementFetch comes in two thread mappings: RowFast (consecutive threads,
// consecutive rows: coalesced when rows are the contiguous dimension, as
// output pixels of an NCHW image) and KFast (consecutive threads,
// consecutive reduction elements: coalesced when the reduction runs along
// memory, as pixels for grad weight).
#pragma once

#include <cstdint>

#include "mainloop.cuh"

namespace conv_ext::cuda::tensorop {

template <int ROWS, int THREADS, typename scalar_t>
struct Vec16Fetch {
  static constexpr int kVec = MmaOp<scalar_t>::kVec;
  static constexpr int kRowStride = THREADS / kChunksPerRow;
  static constexpr int kLoads = ROWS / kRowStride;
  static_assert(THREADS % kChunksPerRow == 0 && ROWS % kRowStride == 0,
                "16-byte copies must cover the slice exactly");
  static constexpr int kRows = kLoads;
  int chunk, row0;

  __device__ __forceinline__ int slot_row(int slot) const {
    return row0 + slot * kRowStride;
  }
  __device__ __forceinline__ Vec16Fetch()
      : chunk(threadIdx.x % kChunksPerRow),
        row0(threadIdx.x / kChunksPerRow) {}

  // offset(slot, row, k) for k = the first element of a 16-byte chunk.
  template <class Offset>
  __device__ __forceinline__ void fetch(
      unsigned char* stage, const scalar_t* base, Offset&& offset) const {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int row = row0 + j * kRowStride;
      const int64_t off = offset(j, row, chunk * kVec);
      ptx::cp_async_16(
          stage + row * kRowPitch + chunk * 16, base + (off >= 0 ? off : 0),
          off >= 0);
    }
  }
  __device__ __forceinline__ void stash(unsigned char*) const {}
};

// Element (row, k) of a slice is copied by thread (row % R) + R * (k % KK)
// (RowFast: R = ROWS) or (k % BK) + BK * (row % RR) (KFast).
template <int ROWS, int THREADS, typename scalar_t, bool kRowFast>
struct ElementFetch {
  static constexpr int BK = MmaOp<scalar_t>::kBK;
  static constexpr bool kAsync = sizeof(scalar_t) == 4;
  // RowFast: fixed row, k steps of kStride; KFast: fixed k, row steps.
  static constexpr int kStride = kRowFast ? THREADS / ROWS : THREADS / BK;
  static constexpr int kLoads = kRowFast ? BK / kStride : ROWS / kStride;
  static_assert(kRowFast ? (THREADS % ROWS == 0 && BK % kStride == 0)
                         : (THREADS % BK == 0 && ROWS % kStride == 0),
                "element copies must cover the slice exactly");
  static constexpr int kRows = kRowFast ? 1 : kLoads;
  int row0, k0;
  scalar_t reg[kAsync ? 1 : kLoads];

  __device__ __forceinline__ int slot_row(int slot) const {
    return row0 + slot * kStride;  // slot is 0 for RowFast
  }
  __device__ __forceinline__ ElementFetch() {
    if (kRowFast) {
      row0 = threadIdx.x % ROWS;
      k0 = threadIdx.x / ROWS;
    } else {
      k0 = threadIdx.x % BK;
      row0 = threadIdx.x / BK;
    }
  }
  __device__ __forceinline__ int row(int j) const {
    return kRowFast ? row0 : row0 + j * kStride;
  }
  __device__ __forceinline__ int k(int j) const {
    return kRowFast ? k0 + j * kStride : k0;
  }

  template <class Offset>
  __device__ __forceinline__ void fetch(
      unsigned char* stage, const scalar_t* base, Offset&& offset) {
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int64_t off = offset(kRowFast ? 0 : j, row(j), k(j));
      if constexpr (kAsync) {
        ptx::cp_async_4(
            stage + row(j) * kRowPitch + k(j) * 4, base + (off >= 0 ? off : 0),
            off >= 0);
      } else {
        reg[j] = off >= 0 ? base[off] : scalar_t(0);
      }
    }
  }
  __device__ __forceinline__ void stash(unsigned char* stage) const {
    if constexpr (!kAsync) {
#pragma unroll
      for (int j = 0; j < kLoads; ++j) {
        reinterpret_cast<scalar_t*>(stage + row(j) * kRowPitch)[k(j)] = reg[j];
      }
    }
  }
};

}  // namespace conv_ext::cuda::tensorop
