// Vector builds of the plane kernels of direct_rows.h and direct_ring.h:
// `flatten` inlines the portable templates into functions whose target
// attribute lets the compiler use 32-byte (AVX2 + FMA) or 64-byte
// (AVX-512F) vectors.
#include "direct_ring.h"
#include "../isa.h"

#include <type_traits>
#include <vector>

namespace conv_ext::cpu {
namespace {

template <typename T>
CONV_EXT_FLAT_AVX2 void correlate_avx2(
    const DirectGeom& g, int64_t nsrc, const T* planes, const T* wts, T init, T* out) {
  correlate_padded<T, 32 / sizeof(T)>(g, nsrc, planes, wts, init, out);
}

template <typename T>
CONV_EXT_FLAT_AVX512 void correlate_avx512(
    const DirectGeom& g, int64_t nsrc, const T* planes, const T* wts, T init, T* out) {
  correlate_padded<T, 64 / sizeof(T)>(g, nsrc, planes, wts, init, out);
}

template <typename T>
CONV_EXT_FLAT_AVX2 void ring_avx2(
    const DirectGeom& g, const PadGeom& pg, const Planes<const T>& src, int64_t nsrc,
    int64_t H, int64_t W, int64_t nout, const T* wts, const T* init,
    const Planes<T>& dst, T* ring) {
  correlate_ring<T, 32 / sizeof(T)>(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
}

template <typename T>
CONV_EXT_FLAT_AVX512 void ring_avx512(
    const DirectGeom& g, const PadGeom& pg, const Planes<const T>& src, int64_t nsrc,
    int64_t H, int64_t W, int64_t nout, const T* wts, const T* init,
    const Planes<T>& dst, T* ring) {
  if constexpr (std::is_same_v<T, float>) {
    DirectGeom gp = g;
    thread_local std::vector<float> flipped;  // grad input: once per thread, not per plane
    const float* w = positive_dilations(gp, wts, nout * nsrc, flipped);
    if (use_3x3_avx512(gp) && correlate3x3_avx512(gp, pg, src, nsrc, H, W, nout, w, init, dst))
      return;
  }
  correlate_ring<T, 64 / sizeof(T)>(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
}

template <typename T>
CONV_EXT_FLAT_AVX2 void dot_avx2(const DirectGeom& g, const T* dy, const T* plane, T* lanes) {
  dot_padded<T, 32 / sizeof(T)>(g, dy, plane, lanes);
}

template <typename T>
CONV_EXT_FLAT_AVX512 void dot_avx512(const DirectGeom& g, const T* dy, const T* plane, T* lanes) {
  dot_padded<T, 64 / sizeof(T)>(g, dy, plane, lanes);
}

}  // namespace

void correlate_padded_vec(int isa, const DirectGeom& g, int64_t nsrc,
                          const float* planes, const float* wts, float init, float* out) {
  if (isa == 2) correlate_avx512(g, nsrc, planes, wts, init, out);
  else correlate_avx2(g, nsrc, planes, wts, init, out);
}
void correlate_padded_vec(int isa, const DirectGeom& g, int64_t nsrc,
                          const double* planes, const double* wts, double init, double* out) {
  if (isa == 2) correlate_avx512(g, nsrc, planes, wts, init, out);
  else correlate_avx2(g, nsrc, planes, wts, init, out);
}
void correlate_ring_vec(int isa, const DirectGeom& g, const PadGeom& pg,
                        const Planes<const float>& src, int64_t nsrc, int64_t H, int64_t W,
                        int64_t nout, const float* wts, const float* init,
                        const Planes<float>& dst, float* ring) {
  if (isa == 2) ring_avx512(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
  else ring_avx2(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
}
void correlate_ring_vec(int isa, const DirectGeom& g, const PadGeom& pg,
                        const Planes<const double>& src, int64_t nsrc, int64_t H, int64_t W,
                        int64_t nout, const double* wts, const double* init,
                        const Planes<double>& dst, double* ring) {
  if (isa == 2) ring_avx512(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
  else ring_avx2(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
}
void dot_padded_vec(int isa, const DirectGeom& g, const float* dy, const float* plane,
                    float* lanes) {
  if (isa == 2) dot_avx512(g, dy, plane, lanes);
  else dot_avx2(g, dy, plane, lanes);
}
void dot_padded_vec(int isa, const DirectGeom& g, const double* dy, const double* plane,
                    double* lanes) {
  if (isa == 2) dot_avx512(g, dy, plane, lanes);
  else dot_avx2(g, dy, plane, lanes);
}

}  // namespace conv_ext::cpu
