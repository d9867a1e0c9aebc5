// Portable micro-kernels: plain loops over a local tile that the compiler
// vectorizes for whatever baseline the library is built for.
#include "microkernel.h"

namespace conv_ext::cpu {
namespace {

template <typename T, int64_t MR, int64_t NR>
void tile_kernel(
    int64_t kc, const T* a, const T* b, T* c, int64_t ldc, bool accumulate) {
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    for (int64_t i = 0; i < MR; ++i) {
      const T ai = a[k * MR + i];
      for (int64_t j = 0; j < NR; ++j) {
        acc[i][j] += ai * b[k * NR + j];
      }
    }
  }
  for (int64_t i = 0; i < MR; ++i) {
    for (int64_t j = 0; j < NR; ++j) {
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + acc[i][j] : acc[i][j];
    }
  }
}

}  // namespace

void microkernel_scalar(
    int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate) {
  tile_kernel<float, 6, 16>(kc, a, b, c, ldc, accumulate);
}

void microkernel_scalar(
    int64_t kc, const double* a, const double* b, double* c, int64_t ldc, bool accumulate) {
  tile_kernel<double, 6, 8>(kc, a, b, c, ldc, accumulate);
}

}  // namespace conv_ext::cpu
