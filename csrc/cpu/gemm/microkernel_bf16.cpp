// bfloat16 micro-kernels: C[6 x 32] (float) (+)= A^T * B over panels of
// bfloat16 pairs (pack.h, kPackPairs): per reduction pair (k, k+1), an A
// panel holds its 6 rows as (a[i][k], a[i][k+1]) and a B panel its 32
// columns as (b[k][j], b[k+1][j]), so one 32-bit lane of B and one
// broadcast 32-bit pair of A are the operands of one vdpbf16ps lane:
//   c[i][j] += a[i][k+1] * b[k+1][j];  c[i][j] += a[i][k] * b[k][j]
// (products exact in float, each sum rounded: the instruction's order).
// An odd depth ends in a pair whose second half the packers zeroed.
//
// AVX-512 BF16: the float tile's register plan, 12 zmm accumulators (6 rows
// x 2 vectors of 16 columns), 2 B vectors and 1 broadcast; each pair step
// does 12 vdpbf16ps = 384 multiply-adds for 128 bytes of B, twice the
// float kernel's multiply-adds per instruction.
#include "microkernel.h"

#include <cstring>

namespace conv_ext::cpu {

namespace {

float widen(c10::BFloat16 v) {
  const uint32_t bits = static_cast<uint32_t>(v.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

// The reference: the same panels, the same two roundings per pair as the
// instruction (no fused multiply-add: the products are exact anyway).
// arow(i) points at row i's pairs, pair p at arow(i) + p * astep.
template <typename ARow>
static void bf16_tile_scalar(
    int64_t kc, ARow&& arow, int64_t astep, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate) {
  constexpr int64_t MR = 6, NR = 32;
  float acc[MR][NR] = {};
  const int64_t pairs = (kc + 1) / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    const c10::BFloat16* bp = b + p * 2 * NR;
    for (int64_t i = 0; i < MR; ++i) {
      const c10::BFloat16* ap = arow(i) + p * astep;
      const float a0 = widen(ap[0]), a1 = widen(ap[1]);
      for (int64_t j = 0; j < NR; ++j) {
        float v = acc[i][j] + a1 * widen(bp[2 * j + 1]);
        acc[i][j] = v + a0 * widen(bp[2 * j]);
      }
    }
  }
  for (int64_t i = 0; i < MR; ++i)
    for (int64_t j = 0; j < NR; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
}

void microkernel_bf16_scalar(
    int64_t kc, const c10::BFloat16* a, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate) {
  bf16_tile_scalar(kc, [a](int64_t i) { return a + 2 * i; }, 12, b, c, ldc, accumulate);
}

void microkernel_bf16_rows_scalar(
    int64_t kc, const c10::BFloat16* const* a, const c10::BFloat16* b,
    const c10::BFloat16* const*, int64_t, float* c, int64_t ldc, bool accumulate) {
  bf16_tile_scalar(kc, [a](int64_t i) { return a[i]; }, 2, b, c, ldc, accumulate);
}

}  // namespace conv_ext::cpu

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

namespace conv_ext::cpu {

// arow(i) points at row i's pairs, pair p at arow(i) + p * astep.
template <typename ARow>
__attribute__((target("avx512f,avx512bf16"), always_inline)) static inline void bf16_tile_avx512(
    int64_t kc, ARow&& arow, int64_t astep, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate) {
  __m512 acc[6][2];
  for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  const int64_t pairs = (kc + 1) / 2;
  const c10::BFloat16* ar[6];
  for (int i = 0; i < 6; ++i) ar[i] = arow(i);
#pragma GCC unroll 4
  for (int64_t p = 0; p < pairs; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      int32_t pair;  // row i's (k, k+1), broadcast straight from memory
      std::memcpy(&pair, ar[i] + p * astep, sizeof pair);
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
    b += 64;
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    float* ci = c + i * ldc;
    __m512 lo = acc[i][0], hi = acc[i][1];
    if (accumulate) {
      lo = _mm512_add_ps(lo, _mm512_loadu_ps(ci));
      hi = _mm512_add_ps(hi, _mm512_loadu_ps(ci + 16));
    }
    _mm512_storeu_ps(ci, lo);
    _mm512_storeu_ps(ci + 16, hi);
  }
}

__attribute__((target("avx512f,avx512bf16"))) void microkernel_bf16_avx512(
    int64_t kc, const c10::BFloat16* a, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate) {
  bf16_tile_avx512(kc, [a](int64_t i) { return a + 2 * i; }, 12, b, c, ldc, accumulate);
}

__attribute__((target("avx512f,avx512bf16"))) void microkernel_bf16_rows_avx512(
    int64_t kc, const c10::BFloat16* const* a, const c10::BFloat16* b,
    const c10::BFloat16* const*, int64_t, float* c, int64_t ldc, bool accumulate) {
  bf16_tile_avx512(kc, [a](int64_t i) { return a[i]; }, 2, b, c, ldc, accumulate);
}

}  // namespace conv_ext::cpu

#else  // not x86-64 with GCC/Clang: cpu_isa_bf16() never returns kAvx512Bf16.

namespace conv_ext::cpu {
void microkernel_bf16_avx512(
    int64_t kc, const c10::BFloat16* a, const c10::BFloat16* b, float* c, int64_t ldc,
    bool accumulate) {
  microkernel_bf16_scalar(kc, a, b, c, ldc, accumulate);
}
void microkernel_bf16_rows_avx512(
    int64_t kc, const c10::BFloat16* const* a, const c10::BFloat16* b,
    const c10::BFloat16* const* brows, int64_t boff, float* c, int64_t ldc, bool accumulate) {
  microkernel_bf16_rows_scalar(kc, a, b, brows, boff, c, ldc, accumulate);
}
}  // namespace conv_ext::cpu

#endif
