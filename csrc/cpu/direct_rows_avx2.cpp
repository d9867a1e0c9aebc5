// Vector builds of the plane kernels of direct_rows.h: `flatten` inlines the
// portable templates into functions whose target attribute lets the
// compiler vectorize them with fused multiply-adds, 8 floats wide (AVX2) or
// 16 (AVX-512F).
#include "direct_rows.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CONV_EXT_FLAT_AVX2 __attribute__((target("avx2,fma"), flatten))
#define CONV_EXT_FLAT_AVX512 __attribute__((target("avx512f"), flatten))
#else
#define CONV_EXT_FLAT_AVX2
#define CONV_EXT_FLAT_AVX512
#endif

namespace conv_ext::cpu {
namespace {

template <typename T>
CONV_EXT_FLAT_AVX2 void correlate_avx2(
    const DirectGeom& g, int64_t nsrc, const T* const* srcs, const T* wts,
    T init, T* out, const T** rows, const T** wrow) {
  correlate_plane<T, T>(g, nsrc, srcs, wts, init, out, rows, wrow);
}

template <typename T>
CONV_EXT_FLAT_AVX512 void correlate_avx512(
    const DirectGeom& g, int64_t nsrc, const T* const* srcs, const T* wts,
    T init, T* out, const T** rows, const T** wrow) {
  correlate_plane<T, T>(g, nsrc, srcs, wts, init, out, rows, wrow);
}

template <typename T>
CONV_EXT_FLAT_AVX2 void dot_avx2(
    const DirectGeom& g, const T* dy, int64_t ysh, int64_t ycs, const T* src,
    T* lanes) {
  dot_plane<T, T>(g, dy, ysh, ycs, src, lanes);
}

template <typename T>
CONV_EXT_FLAT_AVX512 void dot_avx512(
    const DirectGeom& g, const T* dy, int64_t ysh, int64_t ycs, const T* src,
    T* lanes) {
  dot_plane<T, T>(g, dy, ysh, ycs, src, lanes);
}

}  // namespace

void correlate_plane_vec(
    int isa, const DirectGeom& g, int64_t nsrc, const float* const* srcs,
    const float* wts, float init, float* out, const float** rows, const float** wrow) {
  if (isa == 2) correlate_avx512(g, nsrc, srcs, wts, init, out, rows, wrow);
  else correlate_avx2(g, nsrc, srcs, wts, init, out, rows, wrow);
}
void correlate_plane_vec(
    int isa, const DirectGeom& g, int64_t nsrc, const double* const* srcs,
    const double* wts, double init, double* out, const double** rows, const double** wrow) {
  if (isa == 2) correlate_avx512(g, nsrc, srcs, wts, init, out, rows, wrow);
  else correlate_avx2(g, nsrc, srcs, wts, init, out, rows, wrow);
}
void dot_plane_vec(
    int isa, const DirectGeom& g, const float* dy, int64_t ysh, int64_t ycs,
    const float* src, float* lanes) {
  if (isa == 2) dot_avx512(g, dy, ysh, ycs, src, lanes);
  else dot_avx2(g, dy, ysh, ycs, src, lanes);
}
void dot_plane_vec(
    int isa, const DirectGeom& g, const double* dy, int64_t ysh, int64_t ycs,
    const double* src, double* lanes) {
  if (isa == 2) dot_avx512(g, dy, ysh, ycs, src, lanes);
  else dot_avx2(g, dy, ysh, ycs, src, lanes);
}

}  // namespace conv_ext::cpu
