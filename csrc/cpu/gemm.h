// The one matrix product every CPU pass reduces to.
#pragma once

#include <cstdint>

namespace conv_ext::cpu {

// C[M x N] += A[M x K] * B[K x N]; every matrix row-major with the given
// leading dimension. Four rows of C are updated per pass over B so each row
// of B loaded from cache feeds four multiply-adds; the inner loop runs along
// contiguous rows of B and C so the compiler vectorizes it.
template <typename T>
void gemm_nn_acc(
    int64_t M,
    int64_t N,
    int64_t K,
    const T* __restrict__ A,
    int64_t lda,
    const T* __restrict__ B,
    int64_t ldb,
    T* __restrict__ C,
    int64_t ldc) {
  int64_t i = 0;
  for (; i + 4 <= M; i += 4) {
    T* __restrict__ c0 = C + (i + 0) * ldc;
    T* __restrict__ c1 = C + (i + 1) * ldc;
    T* __restrict__ c2 = C + (i + 2) * ldc;
    T* __restrict__ c3 = C + (i + 3) * ldc;
    for (int64_t k = 0; k < K; ++k) {
      const T a0 = A[(i + 0) * lda + k];
      const T a1 = A[(i + 1) * lda + k];
      const T a2 = A[(i + 2) * lda + k];
      const T a3 = A[(i + 3) * lda + k];
      const T* __restrict__ b = B + k * ldb;
      for (int64_t j = 0; j < N; ++j) {
        c0[j] += a0 * b[j];
        c1[j] += a1 * b[j];
        c2[j] += a2 * b[j];
        c3[j] += a3 * b[j];
      }
    }
  }
  for (; i < M; ++i) {
    T* __restrict__ c = C + i * ldc;
    for (int64_t k = 0; k < K; ++k) {
      const T a = A[i * lda + k];
      const T* __restrict__ b = B + k * ldb;
      for (int64_t j = 0; j < N; ++j) {
        c[j] += a * b[j];
      }
    }
  }
}

}  // namespace conv_ext::cpu
