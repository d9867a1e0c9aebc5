// The float row kernel of the channels_last depthwise passes
// (depthwise_nhwc.h), built for each instruction set in
// depthwise_nhwc_vec.cpp.
#pragma once

#include <cstdint>

#include "../isa.h"

namespace conv_ext::cpu {

// One output row, out[q*ys + c] = init[c] + sum over taps (r, s) of
// wt[(r*S + s)*C + c] * rows[r][(q*st_w + off_w + s*dil_w)*xs + c], taps
// whose column falls off [0, Ws) skipped, rows[r] null for a tap row off
// the image. Channels have unit stride in source, weights and output.
struct NhwcRow {
  const float* const* rows;  // R source rows (pixel 0, channel 0)
  const float* wt;           // [r][s][c]
  const float* init;         // C values, or null for zeros
  int64_t C, Q, R, S, Ws;
  int64_t st_w, off_w, dil_w;
  int64_t xs, ys;  // pixel strides of source and output
};

void depthwise_nhwc_row(Isa isa, const NhwcRow& a, float* out);

// Grad weight over one output row: acc[(r*S + s)*C + c] += sum over q of
// dy[q*ys + c] * rows[r][(q*st_w + off_w + s*dil_w)*xs + c], the same
// skipping rules as NhwcRow (its init unused), pixels in order.
void depthwise_nhwc_dot_row(Isa isa, const NhwcRow& a, const float* dy, float* acc);

}  // namespace conv_ext::cpu
