// Direct convolution for depthwise and few-channels-per-group layers
// (heuristic.h decides which): per output row, every tap is a shifted,
// scaled copy of an input row, accumulated in registers 16 outputs at a time
// (direct_rows.h). A GEMM would see inner dimensions of C/G*R*S = 9..36 and
// K/G = 1..8, too thin to fill a 6 x 16 register tile.
//
// Layout: any strides; rows are contiguous (the vector path) when the
// column stride is 1 (NCHW), else the strided path runs.
// Threads: one (image, channel) plane per task in forward and grad input;
// one output channel per task in grad weight, whose sum over images and
// pixels then runs in a fixed order: deterministic, no shared writes.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <type_traits>
#include <vector>

#include "../conv_shape.h"
#include "conv_gemm.h"
#include "direct_rows.h"
#include "isa.h"

namespace conv_ext::cpu {

template <typename acc_t, typename scalar_t>
void correlate_plane_isa(
    Isa isa, const DirectGeom& g, int64_t nsrc, const scalar_t* const* srcs,
    const acc_t* wts, acc_t init, acc_t* out, const scalar_t** rows,
    const acc_t** wrow) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    if (isa != Isa::kScalar) {
      correlate_plane_vec(
          isa == Isa::kAvx512 ? 2 : 1, g, nsrc, srcs, wts, init, out, rows, wrow);
      return;
    }
  }
  correlate_plane<acc_t, scalar_t>(g, nsrc, srcs, wts, init, out, rows, wrow);
}

template <typename acc_t, typename scalar_t>
void dot_plane_isa(
    Isa isa, const DirectGeom& g, const scalar_t* dy, int64_t ysh, int64_t ycs,
    const scalar_t* src, acc_t* lanes) {
  if constexpr (std::is_same_v<acc_t, scalar_t>) {
    if (isa != Isa::kScalar) {
      dot_plane_vec(isa == Isa::kAvx512 ? 2 : 1, g, dy, ysh, ycs, src, lanes);
      return;
    }
  }
  dot_plane<acc_t, scalar_t>(g, dy, ysh, ycs, src, lanes);
}

// Writes a P x Q accumulator plane to dst (row stride ds, column stride dc).
template <typename scalar_t, typename acc_t>
void store_plane(
    const acc_t* plane, int64_t P, int64_t Q, scalar_t* dst, int64_t ds, int64_t dc) {
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < Q; ++q)
      dst[p * ds + q * dc] = static_cast<scalar_t>(plane[p * Q + q]);
}

// A plane of dst the kernels can accumulate into directly: same type as the
// accumulator and dense rows.
template <typename scalar_t, typename acc_t>
acc_t* dense_plane(scalar_t* dst, int64_t Q, int64_t ds, int64_t dc) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (dc == 1 && ds == Q) return dst;
  }
  return nullptr;
}

template <typename scalar_t>
void depthwise_direct_forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvShape& s,
    at::Tensor& output,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S;
  std::vector<acc_t> wts(s.K * CRS);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const WeightView ws(weight);
  for (int64_t k = 0; k < s.K; ++k)
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t)
          wts[k * CRS + (c * s.R + r) * s.S + t] = static_cast<acc_t>(
              w[k * ws.s0 + c * ws.s1 + r * ws.s2 + t * ws.s3]);
  std::vector<acc_t> b(s.K, acc_t(0));
  if (bias.has_value() && bias->defined()) {
    const scalar_t* bp = bias->const_data_ptr<scalar_t>();
    for (int64_t k = 0; k < s.K; ++k)
      b[k] = static_cast<acc_t>(bp[k * bias->stride(0)]);
  }
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  scalar_t* y = output.mutable_data_ptr<scalar_t>();
  const Strides4 ys(output);
  const DirectGeom geom{
      s.P, s.Q, s.H, s.W, xs.d2, xs.d3, s.stride_h, -s.pad_h, s.dil_h, s.R,
      s.stride_w, -s.pad_w, s.dil_w, s.S};
  at::parallel_for(0, s.N * s.K, 1, [&](int64_t begin, int64_t end) {
    std::vector<const scalar_t*> srcs(Cg), rows(Cg * s.R);
    std::vector<const acc_t*> wrow(Cg * s.R);
    std::vector<acc_t> plane(s.P * s.Q);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.K, k = task % s.K, g = k / Kg;
      for (int64_t c = 0; c < Cg; ++c)
        srcs[c] = x + n * xs.d0 + (g * Cg + c) * xs.d1;
      scalar_t* yk = y + n * ys.d0 + k * ys.d1;
      acc_t* direct = dense_plane<scalar_t, acc_t>(yk, s.Q, ys.d2, ys.d3);
      correlate_plane_isa<acc_t, scalar_t>(
          isa, geom, Cg, srcs.data(), wts.data() + k * CRS, b[k],
          direct ? direct : plane.data(), rows.data(), wrow.data());
      if (!direct) store_plane(plane.data(), s.P, s.Q, yk, ys.d2, ys.d3);
    }
  });
}

// Grad input row h of channel c gathers grad_output rows p = (h + pad -
// r*dil) / stride. At stride 1 that is a correlation with the flipped
// kernel (correlate_plane with off = +pad, dil = -dil); at larger strides
// only the taps the stride divides contribute, checked per element.
template <typename scalar_t>
void depthwise_direct_backward_input(
    const at::Tensor& grad_output,
    const at::Tensor& weight,
    const ConvShape& s,
    at::Tensor& grad_input,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), KRS = Kg * s.R * s.S;
  std::vector<acc_t> wts(s.C * KRS);
  const scalar_t* w = weight.const_data_ptr<scalar_t>();
  const WeightView ws(weight);
  for (int64_t c = 0; c < s.C; ++c) {
    const int64_t g = c / Cg;
    for (int64_t kk = 0; kk < Kg; ++kk)
      for (int64_t r = 0; r < s.R; ++r)
        for (int64_t t = 0; t < s.S; ++t)
          wts[c * KRS + (kk * s.R + r) * s.S + t] = static_cast<acc_t>(
              w[(g * Kg + kk) * ws.s0 + (c % Cg) * ws.s1 + r * ws.s2 + t * ws.s3]);
  }
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dx = grad_input.mutable_data_ptr<scalar_t>();
  const Strides4 xs(grad_input);
  const bool unit = s.stride_h == 1 && s.stride_w == 1;
  const DirectGeom geom{
      s.H, s.W, s.P, s.Q, ys.d2, ys.d3, 1, s.pad_h, -s.dil_h, s.R,
      1, s.pad_w, -s.dil_w, s.S};
  at::parallel_for(0, s.N * s.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<const scalar_t*> srcs(Kg), rows(Kg * s.R);
    std::vector<const acc_t*> wrow(Kg * s.R);
    std::vector<acc_t> plane(s.H * s.W);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.C, c = task % s.C, g = c / Cg;
      for (int64_t kk = 0; kk < Kg; ++kk)
        srcs[kk] = dy + n * ys.d0 + (g * Kg + kk) * ys.d1;
      const acc_t* wc = wts.data() + c * KRS;
      scalar_t* xc = dx + n * xs.d0 + c * xs.d1;
      acc_t* direct = dense_plane<scalar_t, acc_t>(xc, s.W, xs.d2, xs.d3);
      acc_t* out = direct ? direct : plane.data();
      if (unit) {
        correlate_plane_isa<acc_t, scalar_t>(
            isa, geom, Kg, srcs.data(), wc, acc_t(0), out, rows.data(), wrow.data());
      } else {
        // Only the taps the stride divides reach (h, w).
        std::fill(out, out + s.H * s.W, acc_t(0));
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t r = 0; r < s.R; ++r) {
            const int64_t ph = h + s.pad_h - r * s.dil_h;
            const int64_t p = ph / s.stride_h;
            if (ph < 0 || ph % s.stride_h != 0 || p >= s.P) continue;
            for (int64_t kk = 0; kk < Kg; ++kk) {
              const scalar_t* row = srcs[kk] + p * ys.d2;
              for (int64_t t = 0; t < s.S; ++t) {
                const acc_t wv = wc[(kk * s.R + r) * s.S + t];
                for (int64_t wi = 0; wi < s.W; ++wi) {
                  const int64_t qw = wi + s.pad_w - t * s.dil_w;
                  const int64_t q = qw / s.stride_w;
                  if (qw >= 0 && qw % s.stride_w == 0 && q < s.Q)
                    out[h * s.W + wi] += wv * static_cast<acc_t>(row[q * ys.d3]);
                }
              }
            }
          }
      }
      if (!direct) store_plane(plane.data(), s.H, s.W, xc, xs.d2, xs.d3);
    }
  });
}

template <typename scalar_t>
void depthwise_direct_backward_weight(
    const at::Tensor& grad_output,
    const at::Tensor& input,
    const ConvShape& s,
    at::Tensor& grad_weight,
    Isa isa) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dw = grad_weight.mutable_data_ptr<scalar_t>();
  const WeightView ws(grad_weight);
  const DirectGeom geom{
      s.P, s.Q, s.H, s.W, xs.d2, xs.d3, s.stride_h, -s.pad_h, s.dil_h, s.R,
      s.stride_w, -s.pad_w, s.dil_w, s.S};
  at::parallel_for(0, s.K, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> lanes(CRS * kRowBlock);
    for (int64_t k = begin; k < end; ++k) {
      const int64_t g = k / Kg;
      std::fill(lanes.begin(), lanes.end(), acc_t(0));
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t c = 0; c < Cg; ++c)
          dot_plane_isa<acc_t, scalar_t>(
              isa, geom, dy + n * ys.d0 + k * ys.d1, ys.d2, ys.d3,
              x + n * xs.d0 + (g * Cg + c) * xs.d1,
              lanes.data() + c * s.R * s.S * kRowBlock);
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t r = 0; r < s.R; ++r)
          for (int64_t t = 0; t < s.S; ++t) {
            const acc_t* l = lanes.data() + ((c * s.R + r) * s.S + t) * kRowBlock;
            acc_t sum = 0;
            for (int64_t i = 0; i < kRowBlock; ++i) sum += l[i];
            dw[k * ws.s0 + c * ws.s1 + r * ws.s2 + t * ws.s3] =
                static_cast<scalar_t>(sum);
          }
    }
  });
}

}  // namespace conv_ext::cpu
