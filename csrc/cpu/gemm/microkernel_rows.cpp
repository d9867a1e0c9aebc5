// The micro-kernel tile of microkernel.h with A read in place instead of
// from a packed panel: a[i] points at row i's run of depth (unit stride),
// so a weight stored row by row (k, then c, r, s) feeds the kernel without
// packing. Written once over GCC/Clang vectors and built for AVX-512F,
// AVX2 + FMA and the baseline, with the same mr x nr as the packed kernels.
#include "microkernel.h"
#include "../isa.h"

namespace conv_ext::cpu {
namespace {

template <typename T, int L>
struct Vec {
  typedef T type __attribute__((vector_size(L * sizeof(T))));
};

// 6 rows x NV vectors of L lanes. B is a packed panel (brows null: row k at
// b + k * NV * L) or, with brows, row k at brows[k] + boff: windows read in
// place.
template <typename T, int L, int NV>
inline void rows_tile(
    int64_t kc, const T* const* a, const T* b, const T* const* brows, int64_t boff, T* c,
    int64_t ldc, bool accumulate) {
  using V = typename Vec<T, L>::type;
  const T* ar[6];
  for (int i = 0; i < 6; ++i) ar[i] = a[i];
  V acc[6][NV];
  for (int i = 0; i < 6; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = V{};
  for (int64_t k = 0; k < kc; ++k) {
    const T* bk = brows != nullptr ? brows[k] + boff : b + k * NV * L;
    V bv[NV];
    for (int v = 0; v < NV; ++v) __builtin_memcpy(&bv[v], bk + v * L, sizeof(V));
    for (int i = 0; i < 6; ++i) {
      const T ai = ar[i][k];
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
  }
  for (int i = 0; i < 6; ++i)
    for (int v = 0; v < NV; ++v) {
      T* ci = c + i * ldc + v * L;
      V out = acc[i][v];
      if (accumulate) {
        V old;
        __builtin_memcpy(&old, ci, sizeof(V));
        out += old;
      }
      __builtin_memcpy(ci, &out, sizeof(V));
    }
}

}  // namespace

CONV_EXT_FLAT_AVX512 void microkernel_rows_avx512(
    int64_t kc, const float* const* a, const float* b, const float* const* brows,
    int64_t boff, float* c, int64_t ldc, bool acc) {
  rows_tile<float, 16, 2>(kc, a, b, brows, boff, c, ldc, acc);
}
CONV_EXT_FLAT_AVX512 void microkernel_rows_avx512(
    int64_t kc, const double* const* a, const double* b, const double* const* brows,
    int64_t boff, double* c, int64_t ldc, bool acc) {
  rows_tile<double, 8, 2>(kc, a, b, brows, boff, c, ldc, acc);
}
CONV_EXT_FLAT_AVX2 void microkernel_rows_avx2(
    int64_t kc, const float* const* a, const float* b, const float* const* brows,
    int64_t boff, float* c, int64_t ldc, bool acc) {
  rows_tile<float, 8, 2>(kc, a, b, brows, boff, c, ldc, acc);
}
CONV_EXT_FLAT_AVX2 void microkernel_rows_avx2(
    int64_t kc, const double* const* a, const double* b, const double* const* brows,
    int64_t boff, double* c, int64_t ldc, bool acc) {
  rows_tile<double, 4, 2>(kc, a, b, brows, boff, c, ldc, acc);
}
void microkernel_rows_scalar(
    int64_t kc, const float* const* a, const float* b, const float* const* brows,
    int64_t boff, float* c, int64_t ldc, bool acc) {
  rows_tile<float, 4, 4>(kc, a, b, brows, boff, c, ldc, acc);
}
void microkernel_rows_scalar(
    int64_t kc, const double* const* a, const double* b, const double* const* brows,
    int64_t boff, double* c, int64_t ldc, bool acc) {
  rows_tile<double, 2, 4>(kc, a, b, brows, boff, c, ldc, acc);
}

}  // namespace conv_ext::cpu
