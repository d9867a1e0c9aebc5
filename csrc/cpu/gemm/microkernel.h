// The register-blocked inner product of the packed GEMM (gemm_packed.h):
//   C[mr x nr] (+)= A_panel[kc x mr]^T * B_panel[kc x nr]
// A panels hold mr rows interleaved per k, B panels nr columns per k (the
// layout pack.h writes), so the kernel streams both with unit stride.
//
// Tiles, per instruction set (all mr = 6 rows):
//   AVX2 + FMA   float 6 x 16, double 6 x 8: 12 ymm accumulators + 2 for B +
//                1 broadcast of the 16 registers. Two FMA ports with 4-cycle
//                latency need >= 8 independent accumulators; 6 rows give 12.
//   AVX-512F     float 6 x 32, double 6 x 16: the same plan in zmm (15 of 32).
//   scalar       float 6 x 16, double 6 x 8, plain loops.
// bfloat16 panels (microkernel_bf16.cpp, the pair layout of pack.h) feed
// float accumulators in a 6 x 32 tile on AVX-512 BF16 and in its scalar
// reference. The tile is a run-time property (GemmKernel), so the packers
// follow it.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>

#include "../isa.h"

namespace conv_ext::cpu {

// Full tiles only: callers pad C to multiples of mr x nr. T is C's type, P
// the packed operands' (T, or bfloat16 pairs for a float C); kc counts
// reduction steps, not pairs.
template <typename T, typename P = T>
using MicroKernelFn = void (*)(
    int64_t kc, const P* a, const P* b, T* c, int64_t ldc, bool accumulate);

// The same tile with A read in place: a[i] points at row i's depth run
// (microkernel_rows.cpp). B is a packed panel, or with brows non-null, its
// row k is read in place at brows[k] + boff.
template <typename T, typename P = T>
using MicroKernelRowsFn = void (*)(
    int64_t kc, const P* const* a, const P* b, const P* const* brows, int64_t boff, T* c,
    int64_t ldc, bool accumulate);

// bfloat16 rows_fn: A rows in place (a[i] + 2 p is row i's pair p, so kc
// must be even), B packed (brows null).
template <typename T, typename P = T>
struct GemmKernel {
  int64_t mr, nr;
  int64_t kc;  // depth of one packed block: a kc x nr B panel stays in L1
  MicroKernelFn<T, P> fn;
  MicroKernelRowsFn<T, P> rows_fn;
};

void microkernel_scalar(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);
void microkernel_scalar(
    int64_t kc, const double* a, const double* b, double* c, int64_t ldc, bool accumulate);
void microkernel_avx2(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);
void microkernel_avx2(
    int64_t kc, const double* a, const double* b, double* c, int64_t ldc, bool accumulate);
void microkernel_avx512(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate);
void microkernel_avx512(
    int64_t kc, const double* a, const double* b, double* c, int64_t ldc, bool accumulate);

// bfloat16 pairs into float (microkernel_bf16.cpp): vdpbf16ps, and the
// scalar reference of the same layout and summation order.
void microkernel_bf16_avx512(
    int64_t kc, const c10::BFloat16* a, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate);
void microkernel_bf16_scalar(
    int64_t kc, const c10::BFloat16* a, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate);
void microkernel_bf16_rows_avx512(
    int64_t kc, const c10::BFloat16* const* a, const c10::BFloat16* b,
    const c10::BFloat16* const* brows, int64_t boff, float* c, int64_t ldc, bool accumulate);
void microkernel_bf16_rows_scalar(
    int64_t kc, const c10::BFloat16* const* a, const c10::BFloat16* b,
    const c10::BFloat16* const* brows, int64_t boff, float* c, int64_t ldc, bool accumulate);

#define CONV_EXT_ROWS_KERNEL(isa)                                                   \
  void microkernel_rows_##isa(                                                     \
      int64_t kc, const float* const* a, const float* b, const float* const* brows, \
      int64_t boff, float* c, int64_t ldc, bool accumulate);                       \
  void microkernel_rows_##isa(                                                     \
      int64_t kc, const double* const* a, const double* b,                         \
      const double* const* brows, int64_t boff, double* c, int64_t ldc,            \
      bool accumulate);
CONV_EXT_ROWS_KERNEL(scalar)
CONV_EXT_ROWS_KERNEL(avx2)
CONV_EXT_ROWS_KERNEL(avx512)
#undef CONV_EXT_ROWS_KERNEL

// kc: a B panel of kc x nr takes 16 KiB (float at AVX2: 256 x 16) to
// 32 KiB (AVX-512: 256 x 32 floats), within a 32-48 KiB L1.
template <typename T>
GemmKernel<T> select_microkernel(Isa isa) {
  constexpr int64_t lanes = 32 / sizeof(T);  // per ymm
  switch (isa) {
    case Isa::kAvx512Bf16:
    case Isa::kAvx512:
      return {6, 4 * lanes, 256, &microkernel_avx512, &microkernel_rows_avx512};
    case Isa::kAvx2:
      return {6, 2 * lanes, 256, &microkernel_avx2, &microkernel_rows_avx2};
    default:
      return {6, 2 * lanes, 256, &microkernel_scalar, &microkernel_rows_scalar};
  }
}

// The bfloat16-pair GEMM: vdpbf16ps on kAvx512Bf16, the scalar reference
// on kScalar (the portable build, which also keeps the pair layout tested on
// every machine). Other levels widen bfloat16 to float while packing and
// run select_microkernel<float> instead (bf16_pairs() in conv_gemm.h).
// kc = 256 as for float: a 256 x 32 panel of pairs is 16 KiB.
inline GemmKernel<float, c10::BFloat16> select_microkernel_bf16(Isa isa) {
  if (isa == Isa::kAvx512Bf16)
    return {6, 32, 256, &microkernel_bf16_avx512, &microkernel_bf16_rows_avx512};
  return {6, 32, 256, &microkernel_bf16_scalar, &microkernel_bf16_rows_scalar};
}

}  // namespace conv_ext::cpu
