// Vector builds of the patch packer (pack.h) for float and double: the
// copies of pixel and channel runs are most of the packing time, and the
// baseline build moves them 16 bytes at a time. `flatten` inlines the
// portable template here under AVX2 or AVX-512F.
#include "pack.h"
#include "../isa.h"

namespace conv_ext::cpu {
namespace {

template <typename T>
CONV_EXT_FLAT_AVX2 void pack_avx2(
    const Im2col<T>& g, int64_t m0, int64_t mlen, int64_t t0, int64_t tlen,
    bool pixels_x, int64_t width, T* dst, int64_t depth_off, int64_t depth_total) {
  pack_im2col<T, T>(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
}

template <typename T>
CONV_EXT_FLAT_AVX512 void pack_avx512(
    const Im2col<T>& g, int64_t m0, int64_t mlen, int64_t t0, int64_t tlen,
    bool pixels_x, int64_t width, T* dst, int64_t depth_off, int64_t depth_total) {
  pack_im2col<T, T>(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
}

}  // namespace

void pack_im2col_vec(
    int isa, const Im2col<float>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, float* dst, int64_t depth_off,
    int64_t depth_total) {
  if (isa == 2) pack_avx512(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
  else pack_avx2(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
}

void pack_im2col_vec(
    int isa, const Im2col<double>& g, int64_t m0, int64_t mlen, int64_t t0,
    int64_t tlen, bool pixels_x, int64_t width, double* dst, int64_t depth_off,
    int64_t depth_total) {
  if (isa == 2) pack_avx512(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
  else pack_avx2(g, m0, mlen, t0, tlen, pixels_x, width, dst, depth_off, depth_total);
}

}  // namespace conv_ext::cpu
