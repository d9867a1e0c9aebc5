// The fused activation on the CPU: applied by the thread that computed an
// output tile, to that tile, right after it is stored and while it is still
// in cache, so the activation costs no extra pass over the output in memory.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>
#include <type_traits>
#include <utility>

#include "../../activation.h"
#include "../isa.h"

namespace conv_ext::cpu {

// Sigmoid (tanh false) or tanh of n contiguous floats in place, in vectors
// (activation_vec.cpp); false, doing nothing, on the scalar instruction set.
bool sigmoid_tanh_vec(Isa isa, float* d, int64_t n, bool tanh);

// out = g * (y > 0 ? 1 : slope) over n contiguous floats (relu: slope 0),
// in vectors; false, doing nothing, on the scalar instruction set.
bool relu_grad_vec(Isa isa, const float* g, const float* y, float* out, int64_t n, float slope);

// dst[i * rs + j * cs] = f(dst[...]) over a rows x cols tile, the unit-stride
// dimension innermost so that the compiler vectorizes the loop.
template <typename scalar_t, typename F>
void map_tile(scalar_t* dst, int64_t rows, int64_t cols, int64_t rs, int64_t cs, F f) {
  if (rs == 1 && cs != 1) {
    std::swap(rows, cols);
    std::swap(rs, cs);
  }
  for (int64_t i = 0; i < rows; ++i) {
    scalar_t* d = dst + i * rs;
    if (cs == 1) {
      for (int64_t j = 0; j < cols; ++j) d[j] = f(d[j]);
    } else {
      for (int64_t j = 0; j < cols; ++j) d[j * cs] = f(d[j * cs]);
    }
  }
}

// The activation of `e` over a tile; the choice is made once per tile, not
// per element.
template <typename scalar_t>
void activate_tile(
    scalar_t* dst,
    int64_t rows,
    int64_t cols,
    int64_t row_stride,
    int64_t col_stride,
    const Epilogue& e) {
  using acc_t = at::opmath_type<scalar_t>;
  auto run = [&](auto act) {
    map_tile(dst, rows, cols, row_stride, col_stride, [act](scalar_t v) {
      return static_cast<scalar_t>(act(static_cast<acc_t>(v)));
    });
  };
  const acc_t slope = static_cast<acc_t>(e.negative_slope);
  switch (e.act) {
    case Activation::ReLU:
      return run([](acc_t v) { return v > acc_t(0) ? v : acc_t(0); });
    case Activation::LeakyReLU:
      return run([slope](acc_t v) { return v > acc_t(0) ? v : v * slope; });
    case Activation::Sigmoid:
    case Activation::Tanh:
      if constexpr (std::is_same_v<scalar_t, float>) {
        // Unit-stride rows go to the vector kernels.
        const bool swap = row_stride == 1 && col_stride != 1;
        const int64_t r = swap ? cols : rows, c = swap ? rows : cols;
        const int64_t rs = swap ? col_stride : row_stride, cs = swap ? row_stride : col_stride;
        const Isa isa = cpu_isa();
        if (cs == 1 && isa != Isa::kScalar) {
          for (int64_t i = 0; i < r; ++i)
            sigmoid_tanh_vec(isa, dst + i * rs, c, e.act == Activation::Tanh);
          return;
        }
      }
      return run([e](acc_t v) { return activate(v, e); });
    default:
      return;
  }
}

}  // namespace conv_ext::cpu
