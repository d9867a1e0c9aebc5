// Phase planes: the input of a convolution re-laid so that every tap reads
// a unit-stride window (window_dot.h, window_forward.cpp).
//
// Per dimension, tap k of output o reads input o * st + k * dil - pad
// = (o + base_k) * st + phase_k with 0 <= phase_k < st. Phase plane
// (a, b) of a channel holds the input elements whose row is = a and column
// is = b modulo the strides, every st-th one, on a frame of Hp x Wp that
// starts at the smallest base. Output pixel j = p * Wp + q (q < Q; the
// columns q >= Q are junk) then meets tap (r, s) at plane element
// j + base_r * Wp + base_s of plane (phase_r, phase_s): a window shifted by
// a constant, the same for every pixel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../gemm/pack.h"  // valid_range

namespace conv_ext::cpu {

struct PhaseDim {
  int64_t lo = 0;   // the smallest base over the taps: frame index 0
  int64_t len = 0;  // frame extent: out + (largest base - lo)
  std::vector<int64_t> base, phase;  // per tap, base relative to lo
};

inline PhaseDim phase_dim(int64_t out, int64_t st, int64_t dil, int64_t pad, int64_t taps) {
  PhaseDim d;
  d.base.resize(taps);
  d.phase.resize(taps);
  int64_t hi = 0;
  for (int64_t k = 0; k < taps; ++k) {
    const int64_t off = k * dil - pad;
    const int64_t b = off >= 0 ? off / st : -((-off + st - 1) / st);
    d.base[k] = b;
    d.phase[k] = off - b * st;
    if (k == 0 || b < d.lo) d.lo = b;
    if (k == 0 || b > hi) hi = b;
  }
  for (int64_t k = 0; k < taps; ++k) d.base[k] -= d.lo;
  d.len = out + hi - d.lo;
  return d;
}

// Writes phase plane (a, b) of one channel (H x W, strides sh, sw) to
// dst[u * Wp + v], u < Hp, v < Wp; zero where the frame leaves the image.
// T (float, bfloat16, half) is widened to float here.
template <typename T>
inline void fill_phase_plane(
    const T* src, int64_t sh, int64_t sw, int64_t H, int64_t W, const PhaseDim& ph,
    const PhaseDim& pw, int64_t st_h, int64_t st_w, int64_t a, int64_t b, float* dst) {
  const int64_t Hp = ph.len, Wp = pw.len;
  for (int64_t u = 0; u < Hp; ++u) {
    float* row = dst + u * Wp;
    const int64_t h = (ph.lo + u) * st_h + a;
    if (h < 0 || h >= H) {
      std::fill_n(row, Wp, 0.f);
      continue;
    }
    // Columns v0 .. v1-1 fall inside the row (w = (lo + v) st_w + b in
    // [0, W)); the loop over them has no branch per element.
    int64_t v0, v1;
    valid_range(pw.lo * st_w + b, st_w, W, Wp, v0, v1);
    std::fill_n(row, v0, 0.f);
    const T* s = src + h * sh + ((pw.lo + v0) * st_w + b) * sw;
    const int64_t step = st_w * sw;
    for (int64_t v = 0; v < v1 - v0; ++v) row[v0 + v] = static_cast<float>(s[v * step]);
    std::fill_n(row + v1, Wp - v1, 0.f);
  }
}

}  // namespace conv_ext::cpu
