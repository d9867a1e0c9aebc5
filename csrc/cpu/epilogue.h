// The fused activation on the CPU: applied by the thread that computed an
// output tile, to that tile, right after it is stored and while it is still
// in cache, so the activation costs no extra pass over the output in memory.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "../activation.h"

namespace conv_ext::cpu {

// dst[i * row_stride + j * col_stride] = act(dst[...]) for a rows x cols tile.
template <typename scalar_t>
void activate_tile(
    scalar_t* dst,
    int64_t rows,
    int64_t cols,
    int64_t row_stride,
    int64_t col_stride,
    const Epilogue& e) {
  using acc_t = at::opmath_type<scalar_t>;
  if (e.act == Activation::None) return;
  for (int64_t i = 0; i < rows; ++i) {
    scalar_t* d = dst + i * row_stride;
    for (int64_t j = 0; j < cols; ++j) {
      d[j * col_stride] = static_cast<scalar_t>(
          activate(static_cast<acc_t>(d[j * col_stride]), e));
    }
  }
}

}  // namespace conv_ext::cpu
