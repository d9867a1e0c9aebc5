// The direct correlation of direct_rows.h reading float and double planes
// with unit column stride in place (depthwise_direct.h): each padded
// source row is built once, in a small ring, as the output rows reach it
// (correlate_ring), and a 3 x 3 kernel at unit stride loads each source
// vector once for all the output rows it feeds. On AVX-512, float 3 x 3 at
// unit stride reads the source rows themselves, the padding masked out of
// its loads, in all three passes (direct_3x3_avx512.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "direct_rows.h"

namespace conv_ext::cpu {

// A group's planes as the ring kernel reads and writes them in place:
// n planes `ps` apart, rows `rs` apart, unit column stride.
template <typename T>
struct Planes {
  T* data;
  int64_t ps, rs;
};

// Rows of padded source a ring holds per source: the rows a block of
// kMaxRowBlock output rows spans, rounded up to a power of two so that a
// row's slot is a mask, not a division (a 64-bit division per row lookup
// was a measurable share of a 56 x 56 plane).
inline int64_t ring_span(const DirectGeom& g) {
  const int64_t rows =
      (kMaxRowBlock - 1) * g.st_h + (g.R - 1) * (g.dil_h < 0 ? -g.dil_h : g.dil_h) + 1;
  int64_t span = 1;
  while (span < rows) span *= 2;
  return span;
}
constexpr int64_t kMaxRingSpan = 64;

// True when correlate_ring takes this geometry (else correlate_padded).
inline bool ring_fits(const DirectGeom& g, int64_t nsrc) {
  return ring_span(g) <= kMaxRingSpan && kMaxRowBlock * nsrc * g.R <= kMaxRows;
}

// 3 x 3 taps, unit strides, row dilation 1: RB output rows from RB + 2
// source rows, each source vector loaded once and multiplied into every
// output row it feeds (up to 3). Loads, mostly unaligned and split across
// cache lines, bound the one-row-at-a-time kernel (9 per output vector);
// here they are 3 * (RB + 2) / RB per output vector. rows[c*(RB+2) + j]:
// source c, row p0 + j, offset by the column base; column taps s*dil_w.
template <int RB, int NB, int B, typename T>
inline void correlate3x3_blocks(
    const DirectGeom& g, int64_t b0, int64_t nsrc, const T* const* rows, const T* wts,
    T init, T* o, int64_t os) {
  using V = typename Vec<T, B>::type;
  int64_t st[NB];
  V a[RB][NB];
  for (int i = 0; i < NB; ++i) {
    const int64_t q = (b0 + i) * B;
    st[i] = q + B <= g.Q ? q : g.Q - B;
    for (int k = 0; k < RB; ++k) a[k][i] = V{} + init;
  }
  for (int64_t c = 0; c < nsrc; ++c) {
    V w[9];
    for (int t = 0; t < 9; ++t) w[t] = V{} + wts[c * 9 + t];
#pragma GCC unroll 8
    for (int j = 0; j < RB + 2; ++j) {
      const T* x = rows[c * (RB + 2) + j];
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s)
#pragma GCC unroll 4
        for (int i = 0; i < NB; ++i) {
          V xv = loadv<B>(x + s * g.dil_w + st[i]);
          keep_in_register(xv);
#pragma GCC unroll 8
          for (int k = 0; k < RB; ++k)
            if (j - k >= 0 && j - k < 3) a[k][i] += w[(j - k) * 3 + s] * xv;
        }
    }
  }
  for (int k = 0; k < RB; ++k)
    for (int i = 0; i < NB; ++i) storev<B>(o + k * os + st[i], a[k][i]);
}

template <int RB, typename T, int B>
inline void correlate3x3_rows(
    const DirectGeom& g, int64_t nsrc, const T* const* rows, const T* wts, T init, T* o,
    int64_t os) {
  const int64_t nb = (g.Q + B - 1) / B;
  int64_t b = 0;
  for (; b + 4 <= nb; b += 4) correlate3x3_blocks<RB, 4, B>(g, b, nsrc, rows, wts, init, o, os);
  switch (nb - b) {
    case 3: correlate3x3_blocks<RB, 3, B>(g, b, nsrc, rows, wts, init, o, os); break;
    case 2: correlate3x3_blocks<RB, 2, B>(g, b, nsrc, rows, wts, init, o, os); break;
    case 1: correlate3x3_blocks<RB, 1, B>(g, b, nsrc, rows, wts, init, o, os); break;
    default: break;
  }
}

// Output rows per block of the 3 x 3 kernel: RB * NB accumulators, the 9
// broadcast weights and a source vector in the 32 registers of AVX-512
// (RB = 4 with 4 blocks along a row, 6 with 2), fewer for the 16 of AVX2.
// Each accumulator takes 9 dependent FMAs per source; with 8 of them (4
// rows x 2 blocks) the 4-cycle FMA latency still showed (1610 cycles for a
// 56 x 56 plane against 1.0e3 of FMA throughput).
template <typename T, int B>
inline int rows3x3(int64_t Q) {
  const int64_t nb = (Q + B - 1) / B;
  if (B * sizeof(T) < 64) return 2;
  return nb >= 3 ? 4 : 6;
}

template <typename T, int B>
inline void correlate3x3_rows_n(
    int n, const DirectGeom& g, int64_t nsrc, const T* const* rows, const T* wts, T init,
    T* o, int64_t os) {
  switch (n) {
    case 6: return correlate3x3_rows<6, T, B>(g, nsrc, rows, wts, init, o, os);
    case 5: return correlate3x3_rows<5, T, B>(g, nsrc, rows, wts, init, o, os);
    case 4: return correlate3x3_rows<4, T, B>(g, nsrc, rows, wts, init, o, os);
    case 3: return correlate3x3_rows<3, T, B>(g, nsrc, rows, wts, init, o, os);
    case 2: return correlate3x3_rows<2, T, B>(g, nsrc, rows, wts, init, o, os);
    default: return correlate3x3_rows<1, T, B>(g, nsrc, rows, wts, init, o, os);
  }
}

// True when correlate_ring takes the 3 x 3 kernel (after normalizing
// negative dilations).
inline bool is3x3_unit(const DirectGeom& g) {
  return g.R == 3 && g.S == 3 && g.st_h == 1 && g.st_w == 1 &&
         (g.dil_h == 1 || g.dil_h == -1);
}

// Grad input's flipped taps (dilations < 0) as positive dilations over the
// same rows and columns: g is rewritten, and the weights of m kernels
// (R x S each) are returned flipped to match (in `flipped`), or unchanged.
template <typename T>
const T* positive_dilations(DirectGeom& g, const T* wts, int64_t m, std::vector<T>& flipped) {
  if (g.dil_h >= 0 && g.dil_w >= 0) return wts;
  flipped.resize(m * g.R * g.S);
  for (int64_t k = 0; k < m; ++k)
    for (int64_t r = 0; r < g.R; ++r)
      for (int64_t t = 0; t < g.S; ++t)
        flipped[(k * g.R + r) * g.S + t] =
            wts[(k * g.R + (g.dil_h < 0 ? g.R - 1 - r : r)) * g.S +
                (g.dil_w < 0 ? g.S - 1 - t : t)];
  if (g.dil_h < 0) {
    g.rb += (g.R - 1) * g.dil_h;
    g.dil_h = -g.dil_h;
  }
  if (g.dil_w < 0) {
    g.cb += (g.S - 1) * g.dil_w;
    g.dil_w = -g.dil_w;
  }
  return flipped.data();
}

// The correlations of a group straight from the tensors: each padded source
// row is built once, when the first output row needs it, in a ring of
// ring_span rows per source (ring: nsrc * ring_span * Wp elements, a few
// KiB that stay in L1), instead of a padded copy of every whole plane
// before the first output. src: nsrc planes of H x W; dst: nout planes of
// P x Q; output o correlates all sources with wts[o] (nsrc x R x S), plus
// init[o] when init is given. Grad input's flipped taps (dilations < 0)
// are taken as positive dilations over the same rows and columns with the
// weights flipped, so one kernel serves both passes.
template <typename T, int B>
void correlate_ring(
    const DirectGeom& g0, const PadGeom& pg, const Planes<const T>& src, int64_t nsrc,
    int64_t H, int64_t W, int64_t nout, const T* wts0, const T* init,
    const Planes<T>& dst, T* ring) {
  DirectGeom g = g0;
  const int64_t RS = g.R * g.S, nrow = nsrc * g.R;
  thread_local std::vector<T> flipped;  // grad input: once per thread, not per plane
  const T* wts = positive_dilations(g, wts0, nout * nsrc, flipped);
  const int64_t span = ring_span(g);
  int64_t tag[kMaxRingSpan];
  for (int64_t i = 0; i < span; ++i) tag[i] = -1;
  // The ring slot of padded row i, built on first use.
  auto row = [&](int64_t c, int64_t i) -> const T* {
    const int64_t slot = i & (span - 1);
    T* d = ring + (c * span + slot) * g.Wp;
    if (tag[slot] != i) {
      for (int64_t cc = 0; cc < nsrc; ++cc)
        pad_row(src.data + cc * src.ps, src.rs, int64_t(1), H, W, pg, i,
                ring + (cc * span + slot) * g.Wp);
      tag[slot] = i;
    }
    return d + g.cb;
  };
  const T* rows[kMaxRows];
  if (is3x3_unit(g) && g.Q >= B) {
    const int rb3 = rows3x3<T, B>(g.Q);
    for (int64_t p0 = 0; p0 < g.P; p0 += rb3) {
      const int n = static_cast<int>(g.P - p0 < rb3 ? g.P - p0 : rb3);
      for (int j = 0; j < n + 2; ++j)
        for (int64_t c = 0; c < nsrc; ++c) rows[c * (n + 2) + j] = row(c, p0 + g.rb + j);
      for (int64_t o = 0; o < nout; ++o)
        correlate3x3_rows_n<T, B>(n, g, nsrc, rows, wts + o * RS * nsrc,
                                  init ? init[o] : T(0),
                                  dst.data + o * dst.ps + p0 * dst.rs, dst.rs);
    }
    return;
  }
  const int rb = row_block<B>(g.Q);
  for (int64_t p0 = 0; p0 < g.P; p0 += rb) {
    const int n = static_cast<int>(g.P - p0 < rb ? g.P - p0 : rb);
    for (int k = 0; k < n; ++k)
      for (int64_t r = 0; r < g.R; ++r)
        for (int64_t c = 0; c < nsrc; ++c)
          rows[k * nrow + c * g.R + r] = row(c, (p0 + k) * g.st_h + g.rb + r * g.dil_h);
    for (int64_t o = 0; o < nout; ++o)
      correlate_rows_n<T, B>(n, g, nsrc, rows, wts + o * RS * nsrc, init ? init[o] : T(0),
                             dst.data + o * dst.ps + p0 * dst.rs, dst.rs);
  }
}

// Vector instances (direct_rows_vec.cpp); isa: 1 = AVX2 + FMA, 2 = AVX-512F.
// The AVX-512 float instance takes correlate3x3_avx512 where it applies.
void correlate_ring_vec(int isa, const DirectGeom& g, const PadGeom& pg,
                        const Planes<const float>& src, int64_t nsrc, int64_t H, int64_t W,
                        int64_t nout, const float* wts, const float* init,
                        const Planes<float>& dst, float* ring);
void correlate_ring_vec(int isa, const DirectGeom& g, const PadGeom& pg,
                        const Planes<const double>& src, int64_t nsrc, int64_t H, int64_t W,
                        int64_t nout, const double* wts, const double* init,
                        const Planes<double>& dst, double* ring);

// direct_3x3_avx512.cpp: correlate_ring for float on AVX-512 when
// use_3x3_avx512 holds for the geometry with positive dilations (the source
// planes read in place, padding masked out of the loads). False, having
// done nothing, where the padding is wider than a block.
constexpr int64_t kMax3x3Blocks = 32;  // rows up to 512 wide
inline bool use_3x3_avx512(const DirectGeom& g) {
  return is3x3_unit(g) && g.dil_h == 1 && g.Q >= 16 && g.Q <= 16 * kMax3x3Blocks &&
         g.dil_w > 0;
}
bool correlate3x3_avx512(
    const DirectGeom& g, const PadGeom& pg, const Planes<const float>& src, int64_t nsrc,
    int64_t H, int64_t W, int64_t nout, const float* wts, const float* init,
    const Planes<float>& dst);

// Grad weight of one group for float on AVX-512 (direct_3x3_avx512.cpp),
// when use_3x3_avx512 holds: out[(k*Cg + c)*9 + r*3 + s] summed over the N
// images, x and dy read in place (unit column stride). False, having done
// nothing, where the padding is wider than a block.
struct ImageStrides {
  int64_t n, c, h;  // image, channel and row strides
};
bool dot3x3_avx512(
    const DirectGeom& g, const PadGeom& pg, const float* x, const ImageStrides& xs,
    int64_t H, int64_t W, const float* dy, const ImageStrides& ys, int64_t N, int64_t Cg,
    int64_t Kg, float* out);

}  // namespace conv_ext::cpu
