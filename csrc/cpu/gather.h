// Bounded im2col: gathers for a tile of pixels the operand rows that the
// GEMMs of csrc/cpu/ multiply, straight from strided tensors (any layout),
// converting to the accumulation type on the way. Out-of-image taps read 0.
#pragma once

#include <cstdint>

#include "../conv_shape.h"

namespace conv_ext::cpu {

// Element strides of a 4-D tensor, in its logical dimension order.
struct Strides4 {
  int64_t d0, d1, d2, d3;
  explicit Strides4(const at::Tensor& t)
      : d0(t.stride(0)), d1(t.stride(1)), d2(t.stride(2)), d3(t.stride(3)) {}
};

// Rows of the forward / grad-weight operand: for output pixels
// pq0 .. pq0+rows-1 of image n, row j holds input taps (c, r, s) of group g,
// flattened as (c*R + r)*S + s to match the weight's K x C/G x R x S order.
template <typename scalar_t, typename acc_t>
void gather_input_rows(
    const scalar_t* x,
    const Strides4& xs,
    const ConvShape& s,
    int64_t n,
    int64_t g,
    int64_t pq0,
    int64_t rows,
    acc_t* out) {
  const int64_t Cg = s.Cg();
  const int64_t CRS = Cg * s.R * s.S;
  const scalar_t* xg = x + n * xs.d0 + g * Cg * xs.d1;
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t p = (pq0 + j) / s.Q;
    const int64_t q = (pq0 + j) % s.Q;
    const int64_t h0 = p * s.stride_h - s.pad_h;
    const int64_t w0 = q * s.stride_w - s.pad_w;
    acc_t* row = out + j * CRS;
    for (int64_t c = 0; c < Cg; ++c) {
      const scalar_t* xc = xg + c * xs.d1;
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t h = h0 + r * s.dil_h;
        const bool h_in = h >= 0 && h < s.H;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t w = w0 + t * s.dil_w;
          *row++ = (h_in && w >= 0 && w < s.W)
              ? static_cast<acc_t>(xc[h * xs.d2 + w * xs.d3])
              : acc_t(0);
        }
      }
    }
  }
}

// Rows of the grad-input operand: for input pixels hw0 .. hw0+rows-1 of image
// n, row j holds, for every (k, r, s) of group g flattened as (k*R + r)*S + s,
// the grad_output element that tap (r, s) of that pixel fed, or 0 where the
// stride skips it or it falls outside the output.
template <typename scalar_t, typename acc_t>
void gather_grad_output_rows(
    const scalar_t* dy,
    const Strides4& ys,
    const ConvShape& s,
    int64_t n,
    int64_t g,
    int64_t hw0,
    int64_t rows,
    acc_t* out) {
  const int64_t Kg = s.Kg();
  const int64_t KRS = Kg * s.R * s.S;
  const scalar_t* yg = dy + n * ys.d0 + g * Kg * ys.d1;
  for (int64_t j = 0; j < rows; ++j) {
    const int64_t h = (hw0 + j) / s.W;
    const int64_t w = (hw0 + j) % s.W;
    acc_t* row = out + j * KRS;
    for (int64_t k = 0; k < Kg; ++k) {
      const scalar_t* yk = yg + k * ys.d1;
      for (int64_t r = 0; r < s.R; ++r) {
        const int64_t ph = h + s.pad_h - r * s.dil_h;
        const int64_t p = ph / s.stride_h;
        const bool p_in =
            ph >= 0 && ph % s.stride_h == 0 && p < s.P;
        for (int64_t t = 0; t < s.S; ++t) {
          const int64_t qw = w + s.pad_w - t * s.dil_w;
          const int64_t q = qw / s.stride_w;
          const bool q_in = qw >= 0 && qw % s.stride_w == 0 && q < s.Q;
          *row++ = (p_in && q_in) ? static_cast<acc_t>(yk[p * ys.d2 + q * ys.d3])
                                  : acc_t(0);
        }
      }
    }
  }
}

}  // namespace conv_ext::cpu
