// AVX-512F micro-kernels: the AVX2 plan (microkernel_avx2.cpp) in zmm
// registers, 6 x 32 floats and 6 x 16 doubles. Called only after cpu_isa()
// has seen AVX-512F.
#include "microkernel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define CONV_EXT_AVX512 __attribute__((target("avx512f")))

namespace conv_ext::cpu {

CONV_EXT_AVX512 void microkernel_avx512(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[6][2];
  for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b);
    const __m512 b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += 6;
    b += 32;
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

CONV_EXT_AVX512 void microkernel_avx512(
    int64_t kc, const double* a, const double* b, double* c, int64_t ldc, bool accumulate) {
  __m512d acc[6][2];
  for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_pd();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    const __m512d b0 = _mm512_loadu_pd(b);
    const __m512d b1 = _mm512_loadu_pd(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) {
      const __m512d ai = _mm512_set1_pd(a[i]);
      acc[i][0] = _mm512_fmadd_pd(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_pd(ai, b1, acc[i][1]);
    }
    a += 6;
    b += 16;
  }
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    double* ci = c + i * ldc;
    __m512d lo = acc[i][0], hi = acc[i][1];
    if (accumulate) {
      lo = _mm512_add_pd(lo, _mm512_loadu_pd(ci));
      hi = _mm512_add_pd(hi, _mm512_loadu_pd(ci + 8));
    }
    _mm512_storeu_pd(ci, lo);
    _mm512_storeu_pd(ci + 8, hi);
  }
}

}  // namespace conv_ext::cpu

#else  // not x86-64 with GCC/Clang: cpu_isa() never returns kAvx512 here.

namespace conv_ext::cpu {
void microkernel_avx512(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  microkernel_scalar(kc, a, b, c, ldc, accumulate);
}
void microkernel_avx512(
    int64_t kc, const double* a, const double* b, double* c, int64_t ldc, bool accumulate) {
  microkernel_scalar(kc, a, b, c, ldc, accumulate);
}
}  // namespace conv_ext::cpu

#endif
