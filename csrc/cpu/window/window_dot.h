// Grad weight of float32 convolutions as dot products of shifted windows:
// no im2col, no packing.
//
// Pad the input once into planes of Hp x Wp = (P + (R-1) dil_h) x
// (Q + (S-1) dil_w) and lay grad_output out on the same row pitch Wp (zero
// in the columns q >= Q). Output pixel j = p * Wp + q then meets tap
// (c, r, s) at input element j + r dil_h Wp + s dil_w of plane c: every tap
// is the same contiguous run, shifted. So
//   dW[k][c][r][s] = sum_j gy[k][j] * xpad[c][j + r dil_h Wp + s dil_w]
// is a dot product of two unit-stride runs, and a register tile of MK
// output channels by MT taps loads MK + MT vectors per MK * MT
// multiply-adds (AVX-512: 4 x 6, 10 loads for 24 FMAs). Images are stacked
// along j (pitch Hp * Wp each), so a late layer's 7 x 7 images still make
// long runs. Strides become unit strides by splitting the input into
// stride_h x stride_w phase planes (every stride-th row and column): each
// tap reads one phase plane, again as a shifted window
// (window_weight_grad.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "../../conv_shape.h"
#include "../isa.h"
#include "../simd.h"

namespace conv_ext::cpu {

// out[i * MT + t] += sum_{j < len} a[i][j] * b[t][j] for i < MK, t < MT;
// len a multiple of B. Accumulates in B float lanes, reduced in a fixed
// order.
template <int B, int MK, int MT>
inline void window_dot(const float* const* a, const float* const* b, int64_t len, float* out) {
  using V = typename simd::Lanes<B>::type;
  V acc[MK][MT];
  for (int i = 0; i < MK; ++i)
    for (int t = 0; t < MT; ++t) acc[i][t] = V{};
  for (int64_t j = 0; j < len; j += B) {
    V av[MK];
    for (int i = 0; i < MK; ++i) av[i] = simd::load<V>(a[i] + j);
    for (int t = 0; t < MT; ++t) {
      const V bv = simd::load<V>(b[t] + j);
      for (int i = 0; i < MK; ++i) acc[i][t] += av[i] * bv;
    }
  }
  for (int i = 0; i < MK; ++i)
    for (int t = 0; t < MT; ++t) {
      float sum = 0.f;
      for (int l = 0; l < B; ++l) sum += acc[i][t][l];
      out[i * MT + t] += sum;
    }
}

// The register tile per instruction set (window_dot_vec.cpp): AVX-512 4 x 6
// of 16 lanes (24 accumulators + 4 + 1 of 32 zmm), AVX2 3 x 4 of 8 lanes
// (12 + 3 + 1 of 16 ymm).
struct WindowDotKernel {
  int64_t mk, mt, lanes;
  void (*fn)(const float* const* a, const float* const* b, int64_t len, float* out);
};

WindowDotKernel window_dot_kernel(Isa isa);

// grad_weight (float32, dense, K x C x R x S) of a convolution without
// groups, by window_dot.
void window_backward_weight(
    const at::Tensor& grad_output, const at::Tensor& input, const ConvShape& s,
    at::Tensor& grad_weight, Isa isa);

}  // namespace conv_ext::cpu
