// The tensor-core instructions of the CUDA kernels, behind small inline
// wrappers: device code never writes `asm` itself, so the same source
// compiles with nvcc for the GPU and with g++ for the CPU emulator, which
// defines CONV_EXT_CUDA_EMULATOR and gets these functions from
// tests/cuda_emulator/ptx_emulated.h instead (same names, same fragments).
//
// Fragments follow the PTX ISA's figures ("Matrix Fragments for mma.m16n8k8"
// and "mma.m16n8k16", "Warp-level matrix load instruction: ldmatrix"); with
// g = lane / 4 and t = lane % 4:
//   mma.m16n8k8 .tf32 (row.col)   A 16x8: a[0] (g, t)    a[1] (g+8, t)
//                                         a[2] (g, t+4)  a[3] (g+8, t+4)
//                                 B 8x8:  b[0] (k=t, n=g)  b[1] (k=t+4, n=g)
//   mma.m16n8k16 .bf16/.f16       A 16x16, two b16 per register, the lower
//                                 column in the low half:
//                                         a[0] (g, 2t..2t+1)    a[1] (g+8, 2t..2t+1)
//                                         a[2] (g, 2t+8..2t+9)  a[3] (g+8, 2t+8..2t+9)
//                                 B 16x8: b[0] (k=2t..2t+1, n=g)  b[1] (k=2t+8..2t+9, n=g)
//   C and D (both shapes), float: c[0] (g, 2t)  c[1] (g, 2t+1)
//                                 c[2] (g+8, 2t)  c[3] (g+8, 2t+1)
//   ldmatrix m8n8 .b16: register i of lane l holds row l/4, columns 2(l%4)
//   and 2(l%4)+1 of matrix i (low half first); .trans the same of the
//   transposed matrix. Lane l gives the address of row l%8 of matrix l/8.
//
// mma, cvt.rna.tf32 and cp.async need sm_80; ldmatrix sm_75. Builds for
// older architectures compile these to a trap: the dispatch never sends
// tensor-core work to a device below compute capability 8.0.
#pragma once

#include <cstdint>

#if defined(CONV_EXT_CUDA_EMULATOR)
#include "ptx_emulated.h"
#elif defined(__CUDACC__)

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define CONV_EXT_PTX_SM80 1
#endif

namespace conv_ext::cuda {

// The block's dynamic shared memory (the launch's third <<<>>> argument),
// 16-byte aligned for cp.async and ldmatrix. One unsigned char array for
// every T, so that the declarations of different kernels do not conflict.
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char conv_ext_dynamic_smem[];
  return reinterpret_cast<T*>(conv_ext_dynamic_smem);
}

}  // namespace conv_ext::cuda

namespace conv_ext::cuda::ptx {

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// cvt.rna.tf32.f32: round to nearest, ties away from zero, keeping the 10
// explicit mantissa bits TF32 has; the result is the register mma takes.
__device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(CONV_EXT_PTX_SM80)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  __trap();
  return 0;
#endif
}

// D = A * B + C on one warp (all 32 lanes converged), float accumulators.
__device__ __forceinline__ void mma_tf32_m16n8k8(
    float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
        "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  __trap();
#endif
}

__device__ __forceinline__ void mma_bf16_m16n8k16(
    float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
        "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  __trap();
#endif
}

__device__ __forceinline__ void mma_f16_m16n8k16(
    float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),
        "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  __trap();
#endif
}

// ldmatrix.sync.aligned.m8n8: each lane passes the shared address of one
// 16-byte row (see the top of the file). The shared data must have been
// written before a __syncthreads or __syncwarp, which also orders it for
// the compiler; so no "memory" clobber here.
__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(smem_address(smem_row)));
}

__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(smem_row)));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem_row)));
}

__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(smem_address(smem_row)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem_row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(smem_row)));
}

// cp.async global -> shared. src-size 0 when !valid: the shared bytes are
// zero-filled and global memory is not read, so an out-of-image address
// may be passed. The "memory" clobbers keep the compiler from moving shared
// loads and stores across the copies and the waits, which write shared
// memory behind its back.
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem, bool valid) {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(smem)),
               "l"(gmem), "r"(valid ? 4 : 0)
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void cp_async_8(void* smem, const void* gmem, bool valid) {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_address(smem)),
               "l"(gmem), "r"(valid ? 8 : 0)
               : "memory");
#else
  __trap();
#endif
}

// 16 bytes bypass L1 (.cg): operand tiles are reused from shared memory,
// not from L1.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_address(smem)),
               "l"(gmem), "r"(valid ? 16 : 0)
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#else
  __trap();
#endif
}

// Waits until at most N of this thread's committed groups are in flight.
// Other threads' copies are not covered: a __syncthreads must follow
// before reading what they copied.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#else
  __trap();
#endif
}

// Commits any uncommitted copies and waits for all of them.
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(CONV_EXT_PTX_SM80)
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#else
  __trap();
#endif
}

}  // namespace conv_ext::cuda::ptx

#undef CONV_EXT_PTX_SM80

#else
#error "ptx.cuh is device code: include it from a .cu file, or from the CPU emulator"
#endif
