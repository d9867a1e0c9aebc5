// Tiny kernels that run each wrapper of csrc/cuda/tensorop/ptx.cuh once and
// store what every lane got, for the known-answer tests of
// tests/test_emulator_ptx.py. Device code only, one source for both sides:
// ptx_known_answers.cpp runs it in the CPU emulator, and the SASS check
// compiles it with nvcc for sm_90 (ptx_known_answers_sass.cu), which proves
// the wrappers assemble into HMMA, LDSM and LDGSTS.
#pragma once

#include <cstdint>

#include "cuda/tensorop/ptx.cuh"

namespace conv_ext::ptx_kat {

namespace ptx = conv_ext::cuda::ptx;

enum MmaKind : int { kTf32 = 0, kBf16 = 1, kF16 = 2 };

// One warp: lane l passes a[l][0..3], b[l][0..1], c[l][0..3] and stores its
// D in d[l][0..3]; `chain` > 1 feeds D back as C (D = chain * A * B + C).
struct MmaParams {
  const uint32_t* a;
  const uint32_t* b;
  const float* c;
  float* d;
  int kind;
  int chain;
};

__global__ void mma_kernel(MmaParams p) {
  const int lane = threadIdx.x % 32;
  uint32_t a[4], b[2];
  float acc[4];
  for (int i = 0; i < 4; ++i) {
    a[i] = p.a[lane * 4 + i];
    acc[i] = p.c[lane * 4 + i];
  }
  b[0] = p.b[lane * 2];
  b[1] = p.b[lane * 2 + 1];
  for (int r = 0; r < p.chain; ++r) {
    if (p.kind == kTf32) {
      ptx::mma_tf32_m16n8k8(acc, a, b, acc);
    } else if (p.kind == kBf16) {
      ptx::mma_bf16_m16n8k16(acc, a, b, acc);
    } else {
      ptx::mma_f16_m16n8k16(acc, a, b, acc);
    }
  }
  for (int i = 0; i < 4; ++i) {
    p.d[lane * 4 + i] = acc[i];
  }
}

struct Tf32Params {
  const float* x;
  uint32_t* out;
  int64_t n;
};

__global__ void to_tf32_kernel(Tf32Params p) {
  for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) {
    p.out[i] = ptx::to_tf32(p.x[i]);
  }
}

// Four 8x8 b16 matrices `rows` (matrix-major, row-major) are copied to
// shared memory, row j (matrix j / 8, row j % 8) into 16-byte slot
// slot_of_row[j] (< kLdmatrixSlots) of the dynamic buffer, so that the
// addresses, not the
// order in memory, say which row is which. Lane l then passes the address
// of row l, or a misaligned address past the rows the variant reads (which
// ldmatrix must ignore), and stores its registers in out[l][0..3].
constexpr int kLdmatrixSlots = 64;

enum LdmatrixVariant : int { kX1 = 0, kX2 = 1, kX4 = 2, kX2Trans = 3, kX4Trans = 4 };

struct LdmatrixParams {
  const uint16_t* rows;
  const int32_t* slot_of_row;
  uint32_t* out;
  int variant;
  int misaligned_lane;  // -1: none; else this lane's address is off by 2 bytes
  int clobber;  // each lane zeroes its row right after the ldmatrix
};

__global__ void ldmatrix_kernel(LdmatrixParams p) {
  const int lane = threadIdx.x % 32;
  uint16_t* smem = conv_ext::cuda::dynamic_smem<uint16_t>();
  for (int j = 0; j < 8; ++j) {
    smem[p.slot_of_row[lane] * 8 + j] = p.rows[lane * 8 + j];
  }
  __syncthreads();
  const int used = p.variant == kX1 ? 8 : p.variant == kX2 || p.variant == kX2Trans ? 16 : 32;
  const uint16_t* row = smem + p.slot_of_row[lane] * 8;
  if (lane >= used || lane == p.misaligned_lane) {
    row += 1;
  }
  uint32_t r[4] = {0, 0, 0, 0};
  switch (p.variant) {
    case kX1: {
      uint32_t x[1];
      ptx::ldmatrix_x1(x, row);
      r[0] = x[0];
      break;
    }
    case kX2: {
      uint32_t x[2];
      ptx::ldmatrix_x2(x, row);
      r[0] = x[0];
      r[1] = x[1];
      break;
    }
    case kX2Trans: {
      uint32_t x[2];
      ptx::ldmatrix_x2_trans(x, row);
      r[0] = x[0];
      r[1] = x[1];
      break;
    }
    case kX4:
      ptx::ldmatrix_x4(r, row);
      break;
    default:
      ptx::ldmatrix_x4_trans(r, row);
      break;
  }
  // ldmatrix executes once for the converged warp: a lane's later store
  // cannot reach what another lane of the warp received.
  if (p.clobber) {
    for (int j = 0; j < 8; ++j) {
      smem[p.slot_of_row[lane] * 8 + j] = 0;
    }
  }
  for (int i = 0; i < 4; ++i) {
    p.out[lane * 4 + i] = r[i];
  }
}

// Every thread runs the same cp.async sequence on its own 16 words of
// shared memory and logs them (as bits) after each step:
//   log 0  as found (never written)
//   log 1  16 old words written (0x100 + j), then 16 bytes to words 0-3
//          committed as group 1: still old
//   groups 2 (8 bytes to words 4-5, 4 bytes to word 6) and 3 (16 bytes,
//   not valid, to words 8-11), then 4 bytes to word 12 left uncommitted
//   log 2  after wait_group 2: group 1 landed
//   log 3  after wait_group 1: group 2 landed
//   log 4  after wait_group 0: group 3 landed (zeros), word 12 still old
//   log 5  after wait_all: word 12 landed
// The new words come from src[block][thread][16]. `misalign` (in bytes)
// shifts the shared (misalign_shared) or global address of the first copy
// of `misalign_size` bytes, for the abort tests.
struct CpAsyncParams {
  const uint32_t* src;
  uint32_t* log;  // [block][thread][6][16]
  int misalign_size;  // 0: none; 4, 8 or 16: that copy is misaligned
  int misalign_shared;
  int misalign_global;
};

__global__ void cp_async_kernel(CpAsyncParams p) {
  const int t = threadIdx.x;
  uint32_t* own = conv_ext::cuda::dynamic_smem<uint32_t>() + t * 16;
  const uint32_t* src = p.src + (static_cast<int64_t>(blockIdx.x) * blockDim.x + t) * 16;
  uint32_t* log = p.log + (static_cast<int64_t>(blockIdx.x) * blockDim.x + t) * 6 * 16;
  auto record = [&](int step) {
    for (int j = 0; j < 16; ++j) {
      log[step * 16 + j] = own[j];
    }
  };
  if (p.misalign_size != 0) {
    char* s = reinterpret_cast<char*>(own) + p.misalign_shared;
    const char* g = reinterpret_cast<const char*>(src) + p.misalign_global;
    if (p.misalign_size == 4) {
      ptx::cp_async_4(s, g, true);
    } else if (p.misalign_size == 8) {
      ptx::cp_async_8(s, g, true);
    } else {
      ptx::cp_async_16(s, g, true);
    }
    ptx::cp_async_wait_all();
    return;
  }
  record(0);
  for (int j = 0; j < 16; ++j) {
    own[j] = 0x100 + j;
  }
  ptx::cp_async_16(own, src, true);
  ptx::cp_async_commit();
  record(1);
  ptx::cp_async_8(own + 4, src + 4, true);
  ptx::cp_async_4(own + 6, src + 6, true);
  ptx::cp_async_commit();
  ptx::cp_async_16(own + 8, src + 8, false);
  ptx::cp_async_commit();
  ptx::cp_async_4(own + 12, src + 12, true);
  ptx::cp_async_wait<2>();
  record(2);
  ptx::cp_async_wait<1>();
  record(3);
  ptx::cp_async_wait<0>();
  record(4);
  ptx::cp_async_wait_all();
  record(5);
}

// Lane l writes word l of a shared array, then (after __syncwarp when
// `sync`) reads word l + 1: without the warp barrier a lane that runs
// before its neighbour reads the old value, which the emulator's random
// resume order makes happen.
struct SyncwarpParams {
  uint32_t* out;
  int sync;
};

__global__ void syncwarp_kernel(SyncwarpParams p) {
  const int lane = threadIdx.x % 32;
  uint32_t* words = conv_ext::cuda::dynamic_smem<uint32_t>();
  words[lane] = 0x100 + lane;
  if (p.sync) {
    __syncwarp();
  }
  p.out[lane] = words[(lane + 1) % 32];
}

}  // namespace conv_ext::ptx_kat
