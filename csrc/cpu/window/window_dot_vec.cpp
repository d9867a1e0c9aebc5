// AVX2 + FMA and AVX-512F builds of window_dot (window_dot.h).
#include "window_dot.h"
#include "../isa.h"

namespace conv_ext::cpu {
namespace {

CONV_EXT_FLAT_AVX2 void dot_avx2(
    const float* const* a, const float* const* b, int64_t len, float* out) {
  window_dot<8, 3, 4>(a, b, len, out);
}

CONV_EXT_FLAT_AVX512 void dot_avx512(
    const float* const* a, const float* const* b, int64_t len, float* out) {
  window_dot<16, 4, 6>(a, b, len, out);
}

}  // namespace

WindowDotKernel window_dot_kernel(Isa isa) {
  if (isa == Isa::kAvx512) return {4, 6, 16, &dot_avx512};
  return {3, 4, 8, &dot_avx2};
}

}  // namespace conv_ext::cpu
