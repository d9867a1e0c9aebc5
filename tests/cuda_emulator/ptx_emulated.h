// The CPU emulator's form of csrc/cuda/tensorop/ptx.cuh: the same functions,
// over the emulator's fibers (emulator.h). Each lane deposits its fragment
// registers or row address (emu::warp_collective); the last lane of the
// warp to arrive executes the instruction once for the warp, element
// positions as the PTX ISA's figures give them (the table at the top of
// ptx.cuh), and every lane takes its own registers. What is modelled:
//
//  - to_tf32: cvt.rna.tf32.f32 bit for bit as compiled for sm_90 (nearest,
//    ties away from zero; see the function).
//  - mma: operands as the hardware reads them (TF32 registers with their low
//    13 bits ignored, so a kernel that forgets to_tf32 gets truncation);
//    each lane's D = C + sum over k of A(m, k) * B(k, n), the products exact
//    and summed in double in k order, rounded to float once per
//    instruction (tensor cores add the products of one instruction in a
//    wide adder; their exact rounding is not modelled).
//  - ldmatrix: rows read from the addresses lanes give, which must be
//    16-byte aligned; lanes past the matrices used are ignored; bank
//    conflicts counted in emu::shared_memory_stats().
//  - cp.async: source read at issue, destination written only when a wait of
//    the issuing thread retires its group (emu::CpAsyncQueue), so reading a
//    stage before its wait sees stale (or, with emu::CpAsyncPending::
//    kPoisoned, NaN) data; misaligned addresses abort.
#pragma once

#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "emulator.h"

namespace conv_ext::cuda {

template <typename T>
T* dynamic_smem() {
  emu::Block* block = emu::current_block();
  if (block->dynamic_smem_bytes == 0) {
    emu::fail_in_thread("dynamic_smem() in a kernel launched without dynamic shared memory");
  }
  return reinterpret_cast<T*>(block->dynamic_smem.get());
}

}  // namespace conv_ext::cuda

namespace conv_ext::cuda::ptx {

// As ptxas 13.0 lowers cvt.rna.tf32.f32 for sm_90 (there is no single SASS
// instruction for it): half a TF32 unit added to the bits of a finite x
// (FSETP.GEU |x|, +INF; IADD 0x1000), then the 13 dropped bits cleared
// (LOP3 & 0xFFFFE000). The addition rounds the magnitude to nearest, ties
// away from zero, a carry into the exponent being the correct rounding up
// to the next binade or to infinity; infinities pass unchanged, and NaNs
// keep their sign and top 10 payload bits (a NaN whose payload lies only
// in the low 13 bits becomes an infinity, as that SASS does; read from the
// compiled code, not run on a GPU).
inline uint32_t to_tf32(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if (std::isfinite(x)) {
    bits += 0x1000u;
  }
  return bits & 0xFFFFE000u;
}

namespace emulated {

inline float f32_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The operand register as the tf32 mma reads it: low 13 bits ignored.
inline double tf32_operand(uint32_t reg) {
  return f32_from_bits(reg & 0xFFFFE000u);
}

// Half `h` (0: low, 1: high) of a register of two b16 values.
inline double bf16_operand(uint32_t reg, int h) {
  return f32_from_bits(((reg >> (16 * h)) & 0xFFFFu) << 16);
}

inline double f16_operand(uint32_t reg, int h) {
  return c10::detail::fp16_ieee_to_fp32_value(static_cast<uint16_t>(reg >> (16 * h)));
}

struct MmaFragments {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

struct MmaResult {
  float d[4];
};

// D = A * B + C for one m16n8kK mma, once for the warp: A (16 x K) and B
// (K x 8) are gathered from the lanes' fragments, element (m, k) of A from
// lane a_lane(m, k) by a_at(fragments, m, k), likewise B.
template <int K, class ALane, class AAt, class BLane, class BAt>
void mma(
    const char* name,
    float (&d)[4],
    const uint32_t (&a)[4],
    const uint32_t (&b)[2],
    const float (&c)[4],
    ALane a_lane,
    AAt a_at,
    BLane b_lane,
    BAt b_at) {
  MmaFragments mine;
  std::memcpy(mine.a, a, sizeof(mine.a));
  std::memcpy(mine.b, b, sizeof(mine.b));
  std::memcpy(mine.c, c, sizeof(mine.c));
  const MmaResult r = emu::warp_collective<MmaResult>(
      name, mine, [&](const MmaFragments (&frags)[32], MmaResult (&outs)[32]) {
        double A[16][K], B[K][8];
        for (int m = 0; m < 16; ++m) {
          for (int k = 0; k < K; ++k) {
            A[m][k] = a_at(frags[a_lane(m, k)], m, k);
          }
        }
        for (int k = 0; k < K; ++k) {
          for (int n = 0; n < 8; ++n) {
            B[k][n] = b_at(frags[b_lane(k, n)], k, n);
          }
        }
        for (int lane = 0; lane < 32; ++lane) {
          const int g = lane / 4, t = lane % 4;
          for (int i = 0; i < 4; ++i) {
            const int m = g + 8 * (i / 2), n = 2 * t + i % 2;
            double sum = frags[lane].c[i];
            for (int k = 0; k < K; ++k) {
              sum += A[m][k] * B[k][n];
            }
            outs[lane].d[i] = static_cast<float>(sum);
          }
        }
      });
  std::memcpy(d, r.d, sizeof(r.d));  // d may be c
}

// m16n8k16 .bf16/.f16: the element at (m, k) of A and (k, n) of B.
template <class Operand>
void mma_m16n8k16(
    const char* name,
    float (&d)[4],
    const uint32_t (&a)[4],
    const uint32_t (&b)[2],
    const float (&c)[4],
    Operand operand) {
  mma<16>(
      name, d, a, b, c,
      [](int m, int k) { return (m % 8) * 4 + (k % 8) / 2; },
      [operand](const MmaFragments& f, int m, int k) {
        return operand(f.a[m / 8 + 2 * (k / 8)], k % 2);
      },
      [](int k, int n) { return n * 4 + (k % 8) / 2; },
      [operand](const MmaFragments& f, int k, int /*n*/) {
        return operand(f.b[k / 8], k % 2);
      });
}

}  // namespace emulated

inline void mma_tf32_m16n8k8(
    float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  emulated::mma<8>(
      "mma.m16n8k8.tf32", d, a, b, c,
      [](int m, int k) { return (m % 8) * 4 + k % 4; },
      [](const emulated::MmaFragments& f, int m, int k) {
        return emulated::tf32_operand(f.a[m / 8 + 2 * (k / 4)]);
      },
      [](int k, int n) { return n * 4 + k % 4; },
      [](const emulated::MmaFragments& f, int k, int /*n*/) {
        return emulated::tf32_operand(f.b[k / 4]);
      });
}

inline void mma_bf16_m16n8k16(
    float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  emulated::mma_m16n8k16("mma.m16n8k16.bf16", d, a, b, c, emulated::bf16_operand);
}

inline void mma_f16_m16n8k16(
    float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
  emulated::mma_m16n8k16("mma.m16n8k16.f16", d, a, b, c, emulated::f16_operand);
}

namespace emulated {

// Adds one ldmatrix's matrices and their extra wavefronts to
// emu::shared_memory_stats(); deposit(l) is the row address of lane l.
template <class Deposit>
void count_bank_conflicts(int matrices, Deposit deposit) {
  emu::SharedMemoryStats& stats = emu::shared_memory_stats();
  for (int i = 0; i < matrices; ++i) {
    uintptr_t rows[8];
    int distinct = 0;
    for (int r = 0; r < 8; ++r) {
      const uintptr_t address = reinterpret_cast<uintptr_t>(deposit(8 * i + r));
      // The same row twice is one read, broadcast.
      if (std::find(rows, rows + distinct, address) == rows + distinct) {
        rows[distinct++] = address;
      }
    }
    int per_group[8] = {};
    int wavefronts = 0;
    for (int r = 0; r < distinct; ++r) {
      wavefronts = std::max(wavefronts, ++per_group[(rows[r] / 16) % 8]);
    }
    stats.ldmatrix_matrices += 1;
    stats.ldmatrix_extra_wavefronts += wavefronts - 1;
  }
}

// ldmatrix.m8n8 of `kMatrices` matrices: lane l reads, from matrix i, row
// l / 4 (column 2(l%4) and the next) or, transposed, rows 2(l%4) and
// 2(l%4)+1 at column l / 4.
template <int kMatrices, bool kTrans>
void ldmatrix(uint32_t* r, const void* smem_row, const char* name) {
  const int lane = threadIdx.x % 32;
  if (lane < 8 * kMatrices && reinterpret_cast<uintptr_t>(smem_row) % 16 != 0) {
    std::fprintf(
        stderr,
        "cuda emulator: %s: lane %d gives row address %p, which is not "
        "16-byte aligned (thread %u of block %u)\n",
        name, lane, smem_row, threadIdx.x, blockIdx.x);
    std::abort();
  }
  struct Registers {
    uint32_t r[4];
  };
  const Registers got = emu::warp_collective<Registers>(
      name, smem_row, [](const void* const (&rows)[32], Registers (&outs)[32]) {
        count_bank_conflicts(kMatrices, [&rows](int l) { return rows[l]; });
        auto element = [&rows](int matrix, int row, int col) {
          uint16_t v;
          std::memcpy(&v, static_cast<const uint16_t*>(rows[8 * matrix + row]) + col, 2);
          return static_cast<uint32_t>(v);
        };
        for (int lane = 0; lane < 32; ++lane) {
          const int row = lane / 4, col = 2 * (lane % 4);
          for (int i = 0; i < kMatrices; ++i) {
            outs[lane].r[i] = kTrans ? element(i, col, row) | element(i, col + 1, row) << 16
                                     : element(i, row, col) | element(i, row, col + 1) << 16;
          }
        }
      });
  std::memcpy(r, got.r, kMatrices * sizeof(uint32_t));
}

template <int kBytes>
void cp_async(void* smem, const void* gmem, bool valid, const char* name) {
  if (reinterpret_cast<uintptr_t>(smem) % kBytes != 0 ||
      reinterpret_cast<uintptr_t>(gmem) % kBytes != 0) {
    std::fprintf(
        stderr,
        "cuda emulator: %s of %d bytes needs both addresses %d-byte aligned; "
        "got shared %p, global %p (thread %u of block %u)\n",
        name, kBytes, kBytes, smem, gmem, threadIdx.x, blockIdx.x);
    std::abort();
  }
  emu::CpAsyncCopy copy;
  copy.dst = smem;
  copy.bytes = kBytes;
  if (valid) {
    std::memcpy(copy.data, gmem, kBytes);
  } else {
    std::memset(copy.data, 0, kBytes);
  }
  emu::current_block()->cp_async[threadIdx.x].uncommitted.push_back(copy);
  if (emu::cp_async_pending() == emu::CpAsyncPending::kPoisoned) {
    std::memset(smem, 0xFF, kBytes);
  }
}

}  // namespace emulated

inline void ldmatrix_x1(uint32_t (&r)[1], const void* smem_row) {
  emulated::ldmatrix<1, false>(r, smem_row, "ldmatrix.x1");
}
inline void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
  emulated::ldmatrix<2, false>(r, smem_row, "ldmatrix.x2");
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  emulated::ldmatrix<4, false>(r, smem_row, "ldmatrix.x4");
}
inline void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row) {
  emulated::ldmatrix<2, true>(r, smem_row, "ldmatrix.x2.trans");
}
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  emulated::ldmatrix<4, true>(r, smem_row, "ldmatrix.x4.trans");
}

inline void cp_async_4(void* smem, const void* gmem, bool valid) {
  emulated::cp_async<4>(smem, gmem, valid, "cp.async.ca");
}
inline void cp_async_8(void* smem, const void* gmem, bool valid) {
  emulated::cp_async<8>(smem, gmem, valid, "cp.async.ca");
}
inline void cp_async_16(void* smem, const void* gmem, bool valid) {
  emulated::cp_async<16>(smem, gmem, valid, "cp.async.cg");
}

inline void cp_async_commit() {
  emu::current_block()->cp_async[threadIdx.x].commit();
}

template <int N>
void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group takes a count of groups");
  emu::current_block()->cp_async[threadIdx.x].wait(N);
}

inline void cp_async_wait_all() {
  emu::current_block()->cp_async[threadIdx.x].land_everything();
}

}  // namespace conv_ext::cuda::ptx
