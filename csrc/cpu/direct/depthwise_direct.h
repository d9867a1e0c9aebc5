// Direct convolution for depthwise and few-channels-per-group layers
// (heuristic.h decides which): every tap is a shifted, scaled copy of a
// source row, accumulated in registers a block of outputs at a time
// (direct_rows.h). A GEMM would see inner dimensions of C/G*R*S = 9..72 and
// K/G = 1..8, too thin to fill a 6 x 16 register tile.
//
// Layout: any strides in and out. Float 3 x 3 at unit stride on AVX-512
// reads planes with unit column stride in place, the padding masked out of
// its loads (direct_3x3_avx512.cpp), in all three passes. Otherwise the
// forward and grad input copy each float or double source row once into a
// small ring of zero-padded rows, and everything else (grad weight, half,
// bfloat16, strided columns) first copies whole source planes into
// zero-padded planes in the accumulation type.
// Threads: one (image, group) per task in forward and grad input; one group
// per task in grad weight, whose sums over images and pixels then run in a
// fixed order: deterministic, no shared writes.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../../conv_shape.h"
#include "../gemm/conv_gemm.h"
#include "direct_ring.h"
#include "direct_rows.h"
#include "../epilogue/epilogue.h"
#include "../isa.h"

namespace conv_ext::cpu {

template <typename T>
void correlate_isa(Isa isa, const DirectGeom& g, int64_t nsrc, const T* planes,
                   const T* wts, T init, T* out) {
  if (isa != Isa::kScalar) {
    correlate_padded_vec(isa == Isa::kAvx512 ? 2 : 1, g, nsrc, planes, wts, init, out);
  } else {
    correlate_padded<T, 16 / sizeof(T)>(g, nsrc, planes, wts, init, out);
  }
}

template <typename T>
void ring_isa(Isa isa, const DirectGeom& g, const PadGeom& pg, const Planes<const T>& src,
              int64_t nsrc, int64_t H, int64_t W, int64_t nout, const T* wts,
              const T* init, const Planes<T>& dst, T* ring) {
  if (isa != Isa::kScalar) {
    correlate_ring_vec(isa == Isa::kAvx512 ? 2 : 1, g, pg, src, nsrc, H, W, nout, wts,
                       init, dst, ring);
  } else {
    correlate_ring<T, 16 / sizeof(T)>(g, pg, src, nsrc, H, W, nout, wts, init, dst, ring);
  }
}

template <typename T>
void dot_isa(Isa isa, const DirectGeom& g, const T* dy, const T* plane, T* lanes) {
  if (isa != Isa::kScalar) {
    dot_padded_vec(isa == Isa::kAvx512 ? 2 : 1, g, dy, plane, lanes);
  } else {
    dot_padded<T, 16 / sizeof(T)>(g, dy, plane, lanes);
  }
}

// Writes a P x Q accumulator plane to dst (row stride ds, column stride dc).
template <typename scalar_t, typename acc_t>
void store_plane(
    const acc_t* plane, int64_t P, int64_t Q, scalar_t* dst, int64_t ds, int64_t dc) {
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < Q; ++q)
      dst[p * ds + q * dc] = static_cast<scalar_t>(plane[p * Q + q]);
}

// A plane of dst the kernels can write directly: the accumulator's type
// and dense rows.
template <typename scalar_t, typename acc_t>
acc_t* dense_plane(scalar_t* dst, int64_t Q, int64_t ds, int64_t dc) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (dc == 1 && ds == Q) return dst;
  }
  return nullptr;
}

// out[o] = init[o] + correlation of the group's padded sources with wts[o],
// for the group's outputs o; the shared body of forward and grad input.
// Sources and outputs in the accumulation type with unit column stride
// (float and double NCHW) are read and written in place, a ring of padded
// rows at a time (correlate_ring); others (half, bfloat16, strided
// columns) are first converted into whole padded planes. work and out are
// the task's buffers, grown on first use.
template <typename scalar_t, typename acc_t>
void direct_group(
    Isa isa, const DirectGeom& g, const PadGeom& pg, int64_t nsrc,
    const scalar_t* src, const Strides4& ss, int64_t H, int64_t W,
    int64_t nout, const acc_t* wts, const acc_t* init, scalar_t* dst,
    const Strides4& ds, std::vector<acc_t>& work, std::vector<acc_t>& out) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    if (ss.d3 == 1 && ds.d3 == 1 && ring_fits(g, nsrc)) {
      const int64_t need = nsrc * ring_span(g) * g.Wp;
      if (static_cast<int64_t>(work.size()) < need) work.resize(need);
      ring_isa<acc_t>(isa, g, pg, Planes<const acc_t>{src, ss.d1, ss.d2}, nsrc, H, W,
                      nout, wts, init, Planes<acc_t>{dst, ds.d1, ds.d2}, work.data());
      return;
    }
  }
  if (static_cast<int64_t>(work.size()) < nsrc * g.plane) work.resize(nsrc * g.plane);
  if (static_cast<int64_t>(out.size()) < g.P * g.Q) out.resize(g.P * g.Q);
  for (int64_t i = 0; i < nsrc; ++i)
    pad_plane(src + i * ss.d1, ss.d2, ss.d3, H, W, pg, work.data() + i * g.plane);
  const int64_t RS = g.R * g.S;
  for (int64_t o = 0; o < nout; ++o) {
    scalar_t* d = dst + o * ds.d1;
    acc_t* direct = dense_plane<scalar_t, acc_t>(d, g.Q, ds.d2, ds.d3);
    correlate_isa<acc_t>(
        isa, g, nsrc, work.data(), wts + o * nsrc * RS, init ? init[o] : acc_t(0),
        direct ? direct : out.data());
    if (!direct) store_plane(out.data(), g.P, g.Q, d, ds.d2, ds.d3);
  }
}

template <typename scalar_t>
void depthwise_direct_forward(
    const at::Tensor& input,
    const at::Tensor& weight,
    const std::optional<at::Tensor>& bias,
    const ConvShape& s,
    at::Tensor& output,
    Isa isa,
    const Epilogue& epilogue) {
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
  const std::vector<acc_t> b = bias_values<acc_t, scalar_t>(bias, s.K);
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  scalar_t* y = output.mutable_data_ptr<scalar_t>();
  const Strides4 ys(output);
  PadGeom pg;
  const DirectGeom geom = direct_geom(
      s.P, s.Q, s.stride_h, -s.pad_h, s.dil_h, s.R, s.stride_w, -s.pad_w, s.dil_w,
      s.S, pg);
  const int64_t grain = grain_for(Kg * CRS * s.P * s.Q);
  at::parallel_for(0, s.N * s.G, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> planes, out;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.G, g = task % s.G;
      direct_group<scalar_t, acc_t>(
          isa, geom, pg, Cg, x + n * xs.d0 + g * Cg * xs.d1, xs, s.H, s.W, Kg,
          wts.data() + g * Kg * CRS, b.data() + g * Kg,
          y + n * ys.d0 + g * Kg * ys.d1, ys, planes, out);
      // The output is freshly allocated and dense: a plane's pixels are
      // ys.d3 apart.
      activate_tile(
          y + n * ys.d0 + g * Kg * ys.d1, Kg, s.P * s.Q, ys.d1, ys.d3, epilogue);
    }
  });
}

// Grad input row h of channel c gathers grad_output rows p = (h + pad -
// r*dil) / stride. At stride 1 that is a correlation with the flipped
// kernel (offset +pad, dilation -dil); at larger strides only the taps the
// stride divides contribute, checked per element.
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
  if (s.stride_h == 1 && s.stride_w == 1) {
    PadGeom pg;
    const DirectGeom geom = direct_geom(
        s.H, s.W, 1, s.pad_h, -s.dil_h, s.R, 1, s.pad_w, -s.dil_w, s.S, pg);
    const int64_t grain = grain_for(Cg * KRS * s.H * s.W);
    at::parallel_for(0, s.N * s.G, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> planes, out;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / s.G, g = task % s.G;
        direct_group<scalar_t, acc_t>(
            isa, geom, pg, Kg, dy + n * ys.d0 + g * Kg * ys.d1, ys, s.P, s.Q, Cg,
            wts.data() + g * Cg * KRS, static_cast<const acc_t*>(nullptr),
            dx + n * xs.d0 + g * Cg * xs.d1, xs, planes, out);
      }
    });
    return;
  }
  at::parallel_for(0, s.N * s.C, grain_for(KRS * s.H * s.W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> out(s.H * s.W);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / s.C, c = task % s.C, g = c / Cg;
      const acc_t* wc = wts.data() + c * KRS;
      std::fill(out.begin(), out.end(), acc_t(0));
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t r = 0; r < s.R; ++r) {
          const int64_t ph = h + s.pad_h - r * s.dil_h;
          const int64_t p = ph / s.stride_h;
          if (ph < 0 || ph % s.stride_h != 0 || p >= s.P) continue;
          for (int64_t kk = 0; kk < Kg; ++kk) {
            const scalar_t* row = dy + n * ys.d0 + (g * Kg + kk) * ys.d1 + p * ys.d2;
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
      store_plane(out.data(), s.H, s.W, dx + n * xs.d0 + c * xs.d1, xs.d2, xs.d3);
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
  const int64_t Cg = s.Cg(), Kg = s.Kg(), CRS = Cg * s.R * s.S, RS = s.R * s.S;
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const Strides4 xs(input);
  const scalar_t* dy = grad_output.const_data_ptr<scalar_t>();
  const Strides4 ys(grad_output);
  scalar_t* dw = grad_weight.mutable_data_ptr<scalar_t>();
  const WeightView ws(grad_weight);
  PadGeom pg;
  const DirectGeom geom = direct_geom(
      s.P, s.Q, s.stride_h, -s.pad_h, s.dil_h, s.R, s.stride_w, -s.pad_w, s.dil_w,
      s.S, pg);
  const PadGeom dense{0, s.P, 0, s.Q};  // grad_output, converted, unpadded
  const int64_t grain = grain_for(s.N * Kg * CRS * s.P * s.Q);
  // float on AVX-512, 3 x 3 at unit stride, rows in place: one pass over
  // each (dy, x) plane pair with the 9 tap sums in registers, no padded
  // copy (direct_3x3_avx512.cpp).
  const bool fast = std::is_same_v<scalar_t, float> && isa == Isa::kAvx512 &&
                    xs.d3 == 1 && ys.d3 == 1 && use_3x3_avx512(geom);
  at::parallel_for(0, s.G, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> lanes(Kg * CRS * kRowBlock);
    std::vector<acc_t> planes(Cg * geom.plane), grads(Kg * s.P * s.Q);
    std::vector<float> taps;
    for (int64_t g = begin; g < end; ++g) {
      if constexpr (std::is_same_v<scalar_t, float>) {
        if (fast) {
          taps.resize(Kg * Cg * 9);
          if (dot3x3_avx512(geom, pg, x + g * Cg * xs.d1, {xs.d0, xs.d1, xs.d2}, s.H, s.W,
                            dy + g * Kg * ys.d1, {ys.d0, ys.d1, ys.d2}, s.N, Cg, Kg,
                            taps.data())) {
            for (int64_t kk = 0; kk < Kg; ++kk)
              for (int64_t c = 0; c < Cg; ++c)
                for (int64_t t = 0; t < 9; ++t)
                  dw[(g * Kg + kk) * ws.s0 + c * ws.s1 + (t / 3) * ws.s2 + (t % 3) * ws.s3] =
                      taps[(kk * Cg + c) * 9 + t];
            continue;
          }
        }
      }
      std::fill(lanes.begin(), lanes.end(), acc_t(0));
      for (int64_t n = 0; n < s.N; ++n) {
        for (int64_t c = 0; c < Cg; ++c)
          pad_plane(x + n * xs.d0 + (g * Cg + c) * xs.d1, xs.d2, xs.d3, s.H, s.W, pg,
                    planes.data() + c * geom.plane);
        for (int64_t kk = 0; kk < Kg; ++kk) {
          const scalar_t* dyk = dy + n * ys.d0 + (g * Kg + kk) * ys.d1;
          const acc_t* d = nullptr;
          if constexpr (std::is_same_v<scalar_t, acc_t>) {
            if (ys.d3 == 1 && ys.d2 == s.Q) d = dyk;  // dense: read in place
          }
          if (d == nullptr) {
            pad_plane(dyk, ys.d2, ys.d3, s.P, s.Q, dense, grads.data() + kk * s.P * s.Q);
            d = grads.data() + kk * s.P * s.Q;
          }
          for (int64_t c = 0; c < Cg; ++c)
            dot_isa<acc_t>(
                isa, geom, d, planes.data() + c * geom.plane,
                lanes.data() + (kk * Cg + c) * RS * kRowBlock);
        }
      }
      for (int64_t kk = 0; kk < Kg; ++kk) {
        const int64_t k = g * Kg + kk;
        for (int64_t c = 0; c < Cg; ++c)
          for (int64_t r = 0; r < s.R; ++r)
            for (int64_t t = 0; t < s.S; ++t) {
              const acc_t* l =
                  lanes.data() + ((kk * Cg + c) * RS + r * s.S + t) * kRowBlock;
              acc_t sum = 0;
              for (int64_t i = 0; i < kRowBlock; ++i) sum += l[i];
              dw[k * ws.s0 + c * ws.s1 + r * ws.s2 + t * ws.s3] =
                  static_cast<scalar_t>(sum);
            }
      }
    }
  });
}

}  // namespace conv_ext::cpu
