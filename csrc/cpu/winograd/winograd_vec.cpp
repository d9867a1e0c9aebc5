// AVX2 + FMA and AVX-512F builds of the Winograd tile transforms
// (winograd_transforms.h): `flatten` inlines the portable loops into
// functions compiled for those targets, as direct_rows_vec.cpp does.
#include "winograd.h"
#include "winograd_transforms.h"
#include "../isa.h"

// One instance of each transform per target.
#define CONV_EXT_WINOGRAD_KERNELS(suffix, attr, lanes)                                  \
  attr void input_##suffix(                                                      \
      const float* d, int64_t ldd, int64_t len, float* v, int64_t ldv) {         \
    winograd::input_transform<lanes>(d, ldd, len, v, ldv);                       \
  }                                                                              \
  attr void output_##suffix(                                                     \
      const float* m, int64_t ldm, int64_t len, float bias, float* y,            \
      int64_t ldy) {                                                             \
    winograd::output_transform<lanes>(m, ldm, len, bias, y, ldy);                \
  }                                                                              \
  attr void kernel_##suffix(                                                     \
      const float* g, int64_t ldg, int64_t len, float* u, int64_t ldu) {         \
    winograd::kernel_transform<lanes>(g, ldg, len, u, ldu);                      \
  }                                                                              \
  attr void grad_output_##suffix(                                                \
      const float* d, int64_t ldd, int64_t len, float* m, int64_t ldm) {         \
    winograd::grad_output_transform<lanes>(d, ldd, len, m, ldm);                 \
  }                                                                              \
  attr void kernel_grad_##suffix(                                                \
      const float* S, int64_t lds, int64_t len, float* dg, int64_t ldo) {        \
    winograd::kernel_grad_transform<lanes>(S, lds, len, dg, ldo);                \
  }                                                                              \
  const WinogradKernels kernels_##suffix{                                        \
      input_##suffix, output_##suffix, kernel_##suffix, grad_output_##suffix,    \
      kernel_grad_##suffix};

// The copies of one data type T per target.
#define CONV_EXT_WINOGRAD_COPIES(suffix, attr, T)                                \
  attr void gather_##suffix(                                                     \
      const T* plane, int64_t sh, int64_t sw, int64_t H, int64_t W,              \
      int64_t h0, int64_t w0, int64_t len, float* d, int64_t ldd) {              \
    winograd::gather_tiles(plane, sh, sw, H, W, h0, w0, len, d, ldd);            \
  }                                                                              \
  attr void scatter_##suffix(                                                    \
      const float* y, int64_t ldy, int64_t len, T* y0, T* y1,                    \
      int64_t q_end, int64_t sw) {                                               \
    winograd::scatter_tiles(y, ldy, len, y0, y1, q_end, sw);                     \
  }                                                                              \
  attr void gather_output_##suffix(                                              \
      const T* plane, int64_t sh, int64_t sw, int64_t P, int64_t Q,              \
      int64_t p0, int64_t q0, int64_t len, float* d, int64_t ldd) {              \
    winograd::gather_output_tiles(plane, sh, sw, P, Q, p0, q0, len, d, ldd);     \
  }                                                                              \
  const WinogradCopies<T> copies_##suffix{                                       \
      gather_##suffix, scatter_##suffix, gather_output_##suffix};

namespace conv_ext::cpu {
namespace {

CONV_EXT_WINOGRAD_KERNELS(avx2, CONV_EXT_FLAT_AVX2, 8)
CONV_EXT_WINOGRAD_KERNELS(avx512, CONV_EXT_FLAT_AVX512, 16)
CONV_EXT_WINOGRAD_COPIES(f32_avx2, CONV_EXT_FLAT_AVX2, float)
CONV_EXT_WINOGRAD_COPIES(f32_avx512, CONV_EXT_FLAT_AVX512, float)
CONV_EXT_WINOGRAD_COPIES(bf16_avx2, CONV_EXT_FLAT_AVX2, c10::BFloat16)
CONV_EXT_WINOGRAD_COPIES(bf16_avx512, CONV_EXT_FLAT_AVX512, c10::BFloat16)
CONV_EXT_WINOGRAD_COPIES(f16_avx2, CONV_EXT_FLAT_AVX2, c10::Half)
CONV_EXT_WINOGRAD_COPIES(f16_avx512, CONV_EXT_FLAT_AVX512, c10::Half)

}  // namespace

const WinogradKernels& winograd_kernels(Isa isa) {
  return isa == Isa::kAvx512 ? kernels_avx512 : kernels_avx2;
}

template <>
const WinogradCopies<float>& winograd_copies<float>(Isa isa) {
  return isa == Isa::kAvx512 ? copies_f32_avx512 : copies_f32_avx2;
}
template <>
const WinogradCopies<c10::BFloat16>& winograd_copies<c10::BFloat16>(Isa isa) {
  return isa == Isa::kAvx512 ? copies_bf16_avx512 : copies_bf16_avx2;
}
template <>
const WinogradCopies<c10::Half>& winograd_copies<c10::Half>(Isa isa) {
  return isa == Isa::kAvx512 ? copies_f16_avx512 : copies_f16_avx2;
}

}  // namespace conv_ext::cpu
